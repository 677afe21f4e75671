"""The capstone's instruments (labkit.steps.capstone) against small views defined here."""

from __future__ import annotations

import asyncio
import hashlib
import json
import weakref

import openai
import pytest
from django.conf import settings
from django.views.decorators.csrf import csrf_exempt

from labkit.singleflight import SingleFlight
from labkit.steps import capstone as c

pytestmark = pytest.mark.usefixtures("mock_llm")

_clients: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_answers: dict[str, object] = {}
_flights = SingleFlight()


def _client() -> openai.AsyncOpenAI:
    from labproject.ai.llm import client_options

    loop = asyncio.get_running_loop()
    if loop not in _clients:
        _clients[loop] = openai.AsyncOpenAI(**client_options())
    return _clients[loop]


async def _uncached(messages, *, model):
    return await _client().chat.completions.create(model=model, messages=messages)


async def _coalesced(messages, *, model):
    key = hashlib.sha256(json.dumps([model, messages]).encode()).hexdigest()
    if key in _answers:
        return _answers[key]

    async def call():
        _answers[key] = await _uncached(messages, model=model)
        return _answers[key]

    return await _flights.do(key, call)


def make_summary(complete, *, catch=Exception, any_document=False):
    """A summary view in the spec's shape; the options make it wrong in known ways."""
    from labproject.ai.api import error_response
    from labproject.ai.llm import CallRecord, failure_from, messages_for
    from labproject.ai.models import AICall, Chunk, Document

    @csrf_exempt
    async def summary(request, doc_id):
        try:
            document = await Document.objects.prefetch_related("chunks").aget(pk=doc_id)
        except Document.DoesNotExist:
            return error_response(404, "document_not_found", "no such document")
        model = request.GET.get("model") or settings.LLM_MODEL
        chunks = {chunk.position: chunk for chunk in document.chunks.all()}
        lines = [f"[§{n}] ({document.title}) {chunk.text}" for n, chunk in chunks.items()]
        record = CallRecord(endpoint="summary", prompt="\n".join(lines))
        try:
            completion = await complete(messages_for(record.prompt, system="Cite."), model=model)
        except catch as exc:
            failure = failure_from(exc)
            await AICall.objects.acreate(**record.failed(failure).fields())
            return failure.response()
        record.succeeded(completion)
        await AICall.objects.acreate(**record.fields())
        cited = c.cited_positions(record.reply)
        if any_document:
            found = Chunk.objects.filter(position__in=cited)
            citations = [{"n": ch.position, "chunk_id": ch.id} async for ch in found]
        else:
            citations = [{"n": n, "chunk_id": chunks[n].id} for n in cited if n in chunks]
        return record.response(document=doc_id, citations=citations)

    return summary


def test_cited_positions_in_order_each_once():
    assert c.cited_positions("a [§2] b [§10] [§2] [§x] [§3]") == [2, 10, 3]
    assert c.cited_positions("") == []


def _one(view) -> tuple[dict, list[str], list[str]]:
    async def run():
        (doc,) = await c.fresh_documents(1)
        try:
            async with c.served(view) as s:
                response, log = await c.one_summary(s, doc)
                data = response.json()
                return data, await c.citation_problems(data, doc), c.reads(log)
        finally:
            await c.delete_documents([doc])

    return asyncio.run(run())


def test_a_right_view_reads_twice_and_cites_its_own_chunks():
    data, problems, reads = _one(make_summary(_uncached))
    assert problems == [], data
    assert len(reads) == c.MAX_READS
    # The planted [§9] is past the fresh document's end: cited in the reply, dropped here.
    assert [x["n"] for x in data["citations"]] == [0, 2, 5]
    assert "[§9]" in data["reply"]


def test_citations_of_other_documents_are_named():
    data, problems, _ = _one(make_summary(_uncached, any_document=True))
    assert any("not of document" in p for p in problems), problems


@pytest.mark.slow
def test_fault_matrix_tells_mapped_faults_from_500s(mock_llm):
    right = asyncio.run(c.fault_matrix(make_summary(_uncached), mock_llm))
    assert [r.problem for r in right] == [""] * len(c.FAULTS), c.fault_table(right)
    assert [r.status for r in right] == [504, 429, 503, 503, 502, 502]
    narrow = asyncio.run(
        c.fault_matrix(make_summary(_uncached, catch=openai.OpenAIError), mock_llm)
    )
    broken = {r.fault: r.problem for r in narrow if r.problem}
    assert list(broken) == ["malformed JSON body"], c.fault_table(narrow)
    assert "500" in broken["malformed JSON body"]


def test_identical_burst_counts_upstream_calls(mock_llm):
    async def run(complete):
        (doc,) = await c.fresh_documents(1)
        try:
            async with c.served(make_summary(complete)) as s:
                return await c.identical_burst(s, doc, mock_llm, n=10)
        finally:
            await c.delete_documents([doc])

    uncached, coalesced = asyncio.run(run(_uncached)), asyncio.run(run(_coalesced))
    assert set(uncached.statuses) == set(coalesced.statuses) == {200}
    assert uncached.upstream == 10
    assert coalesced.upstream == 1


def test_budget_table_has_a_column_per_view():
    result = type("R", (), {"p95_ms": 600.0, "error_rate": 0.0, "requests": 70})()
    burst = c.BurstResult(20, [200] * 20, ["x"] * 20, upstream=1, elapsed_s=0.6)
    report = c.Budget(
        "yours", 0.5, 200, ["SELECT 1", "SELECT 2"], [], burst, "", result, 40, 40, []
    )
    table = c.budget_table(report, report)
    assert table.splitlines()[0] == "| budget | limit | yours | yours |"
    assert len(table.splitlines()) == 2 + len(c.BUDGET_ROWS)
    assert "❌" not in table
