"""Step 08's checks (labkit.steps.step_08) against views defined here, through `outcome`."""

from __future__ import annotations

import asyncio
import hashlib
import json

import pytest
from django.conf import settings
from django.views.decorators.csrf import csrf_exempt

from labkit.exercises import Status
from labkit.steps import capstone as c
from labkit.steps import step_08
from tests.step_checks import lab_mock  # noqa: F401 - a fixture
from tests.test_capstone import _coalesced as with_singleflight
from tests.test_capstone import _uncached as uncached
from tests.test_capstone import make_summary

pytestmark = [pytest.mark.usefixtures("lab_mock"), pytest.mark.slow]


def _key(model, messages) -> str:
    return hashlib.sha256(json.dumps([model, messages]).encode()).hexdigest()


def make_complete(*, keep_failed_entry: bool = False, remember_failure: bool = False):
    """A cached, single-flight `complete`; the options make it wrong in known ways."""
    answers: dict[str, object] = {}
    in_flight: dict[str, asyncio.Future] = {}
    failed: dict[str, Exception] = {}

    async def call(key, messages, model):
        try:
            answers[key] = await uncached(messages, model=model)
        except Exception as exc:
            if remember_failure:
                failed[key] = exc
            if not keep_failed_entry:
                in_flight.pop(key, None)
            raise
        in_flight.pop(key, None)
        return answers[key]

    async def complete(messages, *, model):
        key = _key(model, messages)
        if key in failed:
            raise failed[key]
        if key in answers:
            return answers[key]
        if key not in in_flight:
            in_flight[key] = asyncio.ensure_future(call(key, messages, model))
        return await asyncio.shield(in_flight[key])

    return complete


def _retrying(attempts: int):
    """A summary view that retries every LLM failure at once, `attempts` times in all."""
    from labproject.ai.api import error_response
    from labproject.ai.llm import CallRecord, failure_from, messages_for
    from labproject.ai.models import AICall, Document

    @csrf_exempt
    async def summary(request, doc_id):
        try:
            document = await Document.objects.prefetch_related("chunks").aget(pk=doc_id)
        except Document.DoesNotExist:
            return error_response(404, "document_not_found", "no such document")
        chunks = {chunk.position: chunk for chunk in document.chunks.all()}
        lines = [f"[§{n}] ({document.title}) {ch.text}" for n, ch in chunks.items()]
        record = CallRecord(endpoint="summary", prompt="\n".join(lines))
        model = request.GET.get("model") or settings.LLM_MODEL
        for attempt in range(attempts):
            try:
                completion = await uncached(messages_for(record.prompt), model=model)
                break
            except Exception as exc:
                if attempt < attempts - 1:
                    continue
                failure = failure_from(exc)
                await AICall.objects.acreate(**record.failed(failure).fields())
                return failure.response()
        record.succeeded(completion)
        await AICall.objects.acreate(**record.fields())
        cited = c.cited_positions(record.reply)
        citations = [{"n": n, "chunk_id": chunks[n].id} for n in cited if n in chunks]
        return record.response(document=doc_id, citations=citations)

    return summary


def test_the_endpoint_passes_08_1():
    outcome = step_08.q1.outcome({"summary": make_summary(uncached)}, log=False)
    assert outcome.status is Status.CORRECT, outcome.message + outcome.evidence
    assert "calls" in outcome.message  # the fault table has the upstream calls column


def test_retrying_every_fault_at_once_is_named():
    outcome = step_08.q1.outcome({"summary": _retrying(5)}, log=False)
    assert outcome.status is Status.INCORRECT
    assert f"at most {c.MAX_FAULT_CALLS} LLM calls each" in outcome.message
    assert "5 LLM calls for one request" in outcome.evidence


@pytest.fixture
def outcome_of(monkeypatch):
    """08.2's outcome for `complete`, behind the summary view of 08.1 built on it."""
    import sys

    def run(complete):
        namespace = vars(sys.modules["__main__"])  # where a kernel's cells define 08.1's view
        monkeypatch.setitem(namespace, "summary", make_summary(complete))
        return step_08.q2.outcome({"complete": complete}, log=False)

    return run


@pytest.mark.parametrize("complete", [make_complete(), with_singleflight])
def test_single_flights_that_forget_failures_pass_08_2(complete, outcome_of):
    outcome = outcome_of(complete)
    assert outcome.status is Status.CORRECT, outcome.message + outcome.evidence
    assert "nothing of the failure was kept" in outcome.message


@pytest.mark.parametrize(
    "options", [{"keep_failed_entry": True}, {"remember_failure": True}], ids=["entry", "stored"]
)
def test_a_kept_failure_is_named(options, outcome_of):
    outcome = outcome_of(make_complete(**options))
    assert outcome.status is Status.INCORRECT
    assert "the failure was kept" in outcome.message and "0 LLM calls" in outcome.message
    assert "single-flight entry" in outcome.message and "stored" in outcome.message


def test_over_budget_on_a_busy_machine_is_judged_against_the_kits_endpoint(outcome_of, monkeypatch):
    # A budget nobody meets stands for a machine too busy to meet the real one.
    monkeypatch.setattr(step_08, "P95_RATIO", 0.2)
    outcome = outcome_of(make_complete())
    assert outcome.status is Status.CORRECT, outcome.message + outcome.evidence
    assert "the kit's uncached endpoint under the same load" in outcome.message


def test_one_lock_for_every_prompt_misses_even_the_control(outcome_of, monkeypatch):
    lock, answers = asyncio.Lock(), {}

    async def locked(messages, *, model):
        key = _key(model, messages)
        async with lock:
            if key not in answers:
                answers[key] = await uncached(messages, model=model)
            return answers[key]

    monkeypatch.setattr(step_08, "P95_RATIO", 0.2)
    outcome = outcome_of(locked)
    assert outcome.status is Status.INCORRECT
    assert "one lock" in outcome.message
