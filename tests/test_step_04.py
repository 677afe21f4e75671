"""Step 04's checks (labkit.steps.step_04) against answers defined here, through `outcome`."""

from __future__ import annotations

import pytest

from labkit.exercises import Status
from labkit.steps import step_04
from tests.step_checks import lab_mock  # noqa: F401 - a fixture

pytestmark = pytest.mark.usefixtures("lab_mock")


def _rows(doc_id, order=None):
    from labproject.ai.models import Chunk

    rows = Chunk.objects.filter(document_id=doc_id)
    if order:
        rows = rows.order_by(order)
    return rows.values_list("document__title", "position", "text")


def _prompt(lines) -> str:
    from labproject.ai.views import SUMMARY_INSTRUCTION

    return f"{SUMMARY_INSTRUCTION}\n\n" + "\n".join(lines)


async def one_query(doc_id: int) -> str:
    return _prompt([f"[{t} §{p}] {x}" async for t, p, x in _rows(doc_id)])


async def explicit_position_order(doc_id: int) -> str:
    """Correct but different: select_related and an explicit order_by("position")."""
    from labproject.ai.models import Chunk

    chunks = Chunk.objects.filter(document_id=doc_id).select_related("document")
    lines = [
        f"[{c.document.title} §{c.position}] {c.text}" async for c in chunks.order_by("position")
    ]
    return _prompt(lines)


async def prefetched(doc_id: int) -> str:
    """Correct but different: two queries (prefetch_related)."""
    from labproject.ai.models import Document

    document = await Document.objects.prefetch_related("chunks").aget(pk=doc_id)
    return _prompt(f"[{document.title} §{c.position}] {c.text}" for c in document.chunks.all())


async def id_order(doc_id: int) -> str:
    return _prompt([f"[{t} §{p}] {x}" async for t, p, x in _rows(doc_id, "id")])


async def lazy_title(doc_id: int) -> str:
    from labproject.ai.models import Chunk

    rows = Chunk.objects.filter(document_id=doc_id)
    return _prompt([f"[{c.document.title} §{c.position}] {c.text}" async for c in rows])


@pytest.mark.parametrize("answer", [one_query, explicit_position_order, prefetched])
def test_right_answers_pass(answer):
    outcome = step_04.q1.outcome({"load_context": answer}, log=False)
    assert outcome.status is Status.CORRECT, outcome.message
    assert "inserted out of order" in outcome.message


def test_id_order_is_named_as_the_cause():
    outcome = step_04.q1.outcome({"load_context": id_order}, log=False)
    assert outcome.status is Status.INCORRECT
    assert "wrong order" in outcome.message and "position order" in outcome.message
    assert 'order_by("id")' in outcome.message


def test_a_lazy_foreign_key_is_named_as_a_sync_query():
    outcome = step_04.q1.outcome({"load_context": lazy_title}, log=False)
    assert outcome.status is Status.INCORRECT
    assert outcome.message.startswith("SynchronousOnlyOperation")


def test_fresh_documents_disagree_between_ids_and_positions():
    import asyncio

    from labproject.ai.models import Chunk

    async def run():
        ids = await step_04.fresh_documents((5,))
        try:
            return [
                p
                async for p in Chunk.objects.filter(document_id=ids[0])
                .order_by("id")
                .values_list("position", flat=True)
            ]
        finally:
            await step_04.delete_documents(ids)

    positions = asyncio.run(run())
    assert sorted(positions) == list(range(5)) and positions != sorted(positions)


_shared: list[str] = []


async def shared_lines(doc_id: int) -> str:
    """Keeps its lines in a module-level list: right alone, wrong for two calls at once."""
    import asyncio

    _shared.clear()
    rows = [f"[{t} §{p}] {x}" async for t, p, x in _rows(doc_id)]
    _shared.extend(rows)
    await asyncio.sleep(0.05)  # anything awaited here lets another call add its lines
    return _prompt(_shared)


def test_lines_shared_between_calls_are_named():
    outcome = step_04.q1.outcome({"load_context": shared_lines}, log=False)
    assert outcome.status is Status.INCORRECT
    assert "at once" in outcome.message and "module-level" in outcome.message
