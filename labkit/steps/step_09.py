"""Step 09, background tasks: enqueue the summary and answer 202, then poll for its result.

Master: solutions/09_background_tasks.ipynb. In the notebook:

    from labkit.steps.step_09 import q1, q2

Both checks judge from outside: they serve the learner's view on a real server, read its HTTP
answers, the task table (rows they insert or that the view enqueued for a document they made)
and the mock LLM's counters. A task worker may be running meanwhile (the notebook starts one),
so nothing here depends on a task staying unrun, and the checks leave no runnable task behind.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

from labkit.exercises import Exercise, Incorrect

TASK_PATH = "labproject.ai.tasks.summarise_document"
# 09.1: the LLM answers this slowly during the check, so a view that waits for the summary
# answers after it; one that only enqueues answers in milliseconds (a busy machine is given
# most of LATENCY_S). One that waits for a worker, with none running, gets no answer at all.
LATENCY_S = 2.0
WAITED_S = 0.9 * LATENCY_S
ANSWER_TIMEOUT_S = 6.0
CHUNKS = 3


def _json(response: Any) -> dict[str, Any] | None:
    try:
        data = json.loads(response.text)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _failed_request(response: Any, what: str, log: list[str], numbered: Any) -> Incorrect:
    """The Incorrect for a 403 or 500 answer, naming the usual cause."""
    text = " ".join(log)
    if response.status_code == 403:
        reason = "CSRF middleware refused the POST: mark the view `@csrf_exempt` (an API view)."
    elif "SynchronousOnlyOperation" in text:
        reason = (
            "A synchronous database call ran inside `async def`: with the database backend, "
            "`.enqueue()` and `.get_result()` write and read rows, so await `.aenqueue()`, "
            "`.aget_result()` and the async ORM instead."
        )
    elif "TaskResultDoesNotExist" in text:
        reason = (
            "`aget_result()` raised TaskResultDoesNotExist for an id no task has: catch it "
            "(`from django.tasks.exceptions import TaskResultDoesNotExist`) and answer 404."
        )
    elif "has not finished" in text:
        reason = (
            "`result.return_value` raises ValueError until the task has succeeded: look at "
            "`result.status` first."
        )
    else:
        reason = "What the server logged:"
    return Incorrect(
        f"{what} answered {response.status_code}. {reason}",
        evidence=numbered(log) or response.text[:300],
    )


class StartSummary(Exercise):
    id = "09.1"
    title = "Enqueue the summary and answer 202"
    hints = [
        "The view should not summarise anything: it puts a task in the queue and answers at "
        "once. `await summarise_document.aenqueue(doc_id)` returns a TaskResult whose `.id` "
        "the client polls with.",
        "Answer `JsonResponse({...}, status=202)` (202 Accepted: the work is not done yet) "
        'with the id under "task_id"; answer 404 for a document that does not exist, before '
        "enqueueing anything (`await Document.objects.filter(pk=doc_id).aexists()`).",
        "Inside `async def` use the async forms: `.aenqueue()`, not `.enqueue()` (the database "
        "backend writes a row). Do not wait for the result in the request: no `acall()`, no "
        "polling loop; that is the client's job.",
    ]
    wrong_answers = {
        "runs the summary inside the request": """
@csrf_exempt
async def start_summary(request, doc_id):
    if not await Document.objects.filter(pk=doc_id).aexists():
        return JsonResponse({"error": "no such document"}, status=404)
    summary = await summarise_document.acall(doc_id)
    return JsonResponse(summary)
""",
        "waits for the worker inside the request": """
@csrf_exempt
async def start_summary(request, doc_id):
    if not await Document.objects.filter(pk=doc_id).aexists():
        return JsonResponse({"error": "no such document"}, status=404)
    result = await summarise_document.aenqueue(doc_id)
    while not result.is_finished:
        await asyncio.sleep(0.1)
        await result.arefresh()
    return JsonResponse({"task_id": result.id, "summary": result.return_value})
""",
        "summarises in the request, then answers 202": """
@csrf_exempt
async def start_summary(request, doc_id):
    if not await Document.objects.filter(pk=doc_id).aexists():
        return JsonResponse({"error": "no such document"}, status=404)
    await summarise_document.acall(doc_id)
    result = await summarise_document.aenqueue(doc_id)
    return JsonResponse({"task_id": result.id, "status": result.status}, status=202)
""",
        "sync enqueue() inside async def": """
@csrf_exempt
async def start_summary(request, doc_id):
    if not await Document.objects.filter(pk=doc_id).aexists():
        return JsonResponse({"error": "no such document"}, status=404)
    result = summarise_document.enqueue(doc_id)
    return JsonResponse({"task_id": result.id, "status": result.status}, status=202)
""",
        "200 without the task id": """
@csrf_exempt
async def start_summary(request, doc_id):
    if not await Document.objects.filter(pk=doc_id).aexists():
        return JsonResponse({"error": "no such document"}, status=404)
    await summarise_document.aenqueue(doc_id)
    return JsonResponse({"status": "queued"})
""",
        "enqueues for a document that does not exist": """
@csrf_exempt
async def start_summary(request, doc_id):
    result = await summarise_document.aenqueue(doc_id)
    return JsonResponse({"task_id": result.id, "status": result.status}, status=202)
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, start_summary) -> str:
        from labkit.steps.probes import ServedView, lab_mock, mock_settings
        from labproject.ai.models import Chunk, Document

        tag = f"check 09.1 {secrets.token_hex(4)}"
        document = await Document.objects.acreate(title=tag)
        await Chunk.objects.abulk_create(
            Chunk(document=document, position=i, text=f"{tag} part {i}.") for i in range(CHUNKS)
        )
        doc_id = document.pk
        missing = doc_id + 100_000
        llm = lab_mock()
        try:
            with mock_settings(llm, latency_s=LATENCY_S, rpm=0, tpm=0, faults={}, fault=None):
                async with ServedView(
                    start_summary, route="summary_start", timeout_s=ANSWER_TIMEOUT_S
                ) as served:
                    task_id, answered_s = await self._judge_start(served, doc_id, llm)
                    await self._judge_missing(served, missing)
            row = await self._task_row(task_id)
        finally:
            await _discard_unrun(doc_id, missing)
            await document.adelete()
        self._judge_row(row, task_id, doc_id)
        return (
            f"POST answered 202 in {answered_s * 1000:.0f} ms with the LLM set to "
            f"{LATENCY_S:g} s, with a task id whose row in the task table runs "
            f"`summarise_document({doc_id})`; an unknown document got 404 and no task."
        )

    @staticmethod
    async def _judge_start(served: Any, doc_id: int, llm: Any) -> tuple[str, float]:
        import httpx2

        from labkit.steps.probes import numbered

        path = f"/api/documents/{doc_id}/summarise/"
        calls_before = llm.stats()["requests_total"]
        started = time.perf_counter()
        try:
            response = await served.post(path)
        except httpx2.TimeoutException:
            raise Incorrect(
                f"POST {path} got no answer within {ANSWER_TIMEOUT_S:g} s. The view waits for "
                "the task inside the request, and no worker ran it during the check: the "
                "request must only enqueue and answer 202; the client polls for the result."
            ) from None
        answered_s = time.perf_counter() - started
        calls = llm.stats()["requests_total"] - calls_before
        if response.status_code in (403, 500):
            raise _failed_request(response, f"POST {path}", served.log, numbered)
        if response.status_code != 202:
            waited = (
                f" It took {answered_s:.2f} s, and the LLM answered {calls} call(s) meanwhile: "
                "the request waited for the summary."
                if answered_s >= WAITED_S
                else ""
            )
            raise Incorrect(
                f"POST {path} answered {response.status_code}, expected 202 Accepted: the "
                f"work is queued, not done.{waited}",
                evidence=response.text[:300],
            )
        if answered_s >= WAITED_S:
            raise Incorrect(
                f"The 202 took {answered_s:.2f} s with the LLM set to answer in {LATENCY_S:g} "
                "s: the view waited for the summary before answering. Only enqueue.",
            )
        data = _json(response)
        task_id = data.get("task_id") if data else None
        if not isinstance(task_id, str) or not task_id:
            raise Incorrect(
                'The 202 has no "task_id": without it the client cannot poll for the '
                'summary. Answer `{"task_id": result.id, ...}`.',
                evidence=response.text[:300],
            )
        return task_id, answered_s

    @staticmethod
    async def _judge_missing(served: Any, missing: int) -> None:
        from labkit.steps.probes import numbered
        from labproject.ai.tasks import summarise_document

        path = f"/api/documents/{missing}/summarise/"
        response = await served.post(path)
        queued = await _rows_for(missing).acount()
        if response.status_code != 404 or queued:
            raise Incorrect(
                f"POST {path} (no such document) answered {response.status_code} and queued "
                f"{queued} task(s); expected 404 and none: a task for a missing document only "
                f"fails later in the worker. Check the document exists before "
                f"`{summarise_document.name}.aenqueue(...)`.",
                evidence=numbered(served.log) or response.text[:300],
            )

    @staticmethod
    async def _task_row(task_id: str) -> Any:
        from django.core.exceptions import ValidationError
        from django_tasks_db.models import DBTaskResult

        try:
            return await DBTaskResult.objects.filter(pk=task_id).afirst()
        except ValidationError:
            return None

    @staticmethod
    def _judge_row(row: Any, task_id: str, doc_id: int) -> None:
        if row is None:
            raise Incorrect(
                f'"task_id" is {task_id[:60]!r}, but the task table has no such task: answer '
                "the `.id` of the TaskResult that `aenqueue()` returned."
            )
        arguments = row.args_kwargs
        wanted = ({"args": [doc_id], "kwargs": {}}, {"args": [], "kwargs": {"doc_id": doc_id}})
        if row.task_path != TASK_PATH or arguments not in wanted:
            raise Incorrect(
                f"The task behind that id is `{row.task_path}` with {arguments}; expected "
                f"`summarise_document({doc_id})` for the document in the URL.",
            )


class SummaryResult(Exercise):
    id = "09.2"
    title = "Poll for the summary"
    hints = [
        "`await summarise_document.aget_result(task_id)` reads the task's row; its `.status` "
        "is READY, RUNNING, SUCCESSFUL or FAILED.",
        "`.return_value` raises ValueError until the task succeeded: include it only when "
        "`result.status == TaskResultStatus.SUCCESSFUL`. For FAILED, say so (the error's "
        "class is in `result.errors[-1].exception_class_path`).",
        "An id no task has raises `TaskResultDoesNotExist` "
        "(`from django.tasks.exceptions import TaskResultDoesNotExist`): answer 404.",
    ]
    wrong_answers = {
        "sync get_result() inside async def": """
async def summary_result(request, task_id):
    try:
        result = summarise_document.get_result(task_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": "no such task"}, status=404)
    body = {"task_id": result.id, "status": result.status}
    if result.status == TaskResultStatus.SUCCESSFUL:
        body["summary"] = result.return_value
    return JsonResponse(body)
""",
        "return_value before the task finished": """
async def summary_result(request, task_id):
    try:
        result = await summarise_document.aget_result(task_id)
    except TaskResultDoesNotExist:
        return JsonResponse({"error": "no such task"}, status=404)
    return JsonResponse(
        {"task_id": result.id, "status": result.status, "summary": result.return_value}
    )
""",
        "no 404 for an unknown task": """
async def summary_result(request, task_id):
    result = await summarise_document.aget_result(task_id)
    body = {"task_id": result.id, "status": result.status}
    if result.status == TaskResultStatus.SUCCESSFUL:
        body["summary"] = result.return_value
    return JsonResponse(body)
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, summary_result) -> str:
        import uuid

        from django_tasks_db.models import DBTaskResult

        from labkit.steps.probes import ServedView

        nonce = secrets.token_hex(6)
        rows = await _insert_results(nonce)
        try:
            async with ServedView(summary_result, route="task_result") as served:
                for status, row in rows.items():
                    await self._judge_known(served, status, str(row.pk), nonce)
                await self._judge_unknown(served, str(uuid.uuid4()), expect=(404,))
                await self._judge_unknown(served, "not-a-task-id", expect=(400, 404))
        finally:
            await DBTaskResult.objects.filter(pk__in=[r.pk for r in rows.values()]).adelete()
        return (
            "Three tasks the check put in the table answered 200 with their status (READY, "
            "SUCCESSFUL with its summary, FAILED); an unknown id and a malformed one got 404."
        )

    @staticmethod
    async def _judge_known(served: Any, status: str, task_id: str, nonce: str) -> None:
        from labkit.steps.probes import numbered

        path = f"/api/tasks/{task_id}/"
        response = await served.request("GET", path)
        what = f"GET {path} (a {status} task)"
        if response.status_code in (403, 500):
            raise _failed_request(response, what, served.log, numbered)
        data = _json(response)
        if response.status_code != 200 or data is None:
            raise Incorrect(
                f"{what} answered {response.status_code}, expected 200 with JSON.",
                evidence=response.text[:300],
            )
        if data.get("status") != status:
            raise Incorrect(
                f'{what}: "status" is {data.get("status")!r}, expected {status!r} (the '
                "TaskResult's `.status`).",
                evidence=response.text[:300],
            )
        has_reply = nonce in response.text
        if status == "SUCCESSFUL" and not has_reply:
            raise Incorrect(
                f"{what}: the summary the task returned is not in the answer: include "
                '`result.return_value` (e.g. under "summary").',
                evidence=response.text[:300],
            )
        if status != "SUCCESSFUL" and has_reply:
            raise Incorrect(f"{what}: it shows a summary for a task that has none.")

    @staticmethod
    async def _judge_unknown(served: Any, task_id: str, *, expect: tuple[int, ...]) -> None:
        from labkit.steps.probes import numbered

        path = f"/api/tasks/{task_id}/"
        response = await served.request("GET", path)
        if response.status_code not in expect:
            what = f"GET {path} (no such task)"
            if response.status_code == 500:
                raise _failed_request(response, what, served.log, numbered)
            raise Incorrect(
                f"{what} answered {response.status_code}, expected 404.",
                evidence=response.text[:300],
            )


def _rows_for(doc_id: int) -> Any:
    """Task rows of `summarise_document` for document `doc_id`, positional or by keyword."""
    from django.db.models import Q
    from django_tasks_db.models import DBTaskResult

    return DBTaskResult.objects.filter(
        Q(args_kwargs__args__0=doc_id) | Q(args_kwargs__kwargs__doc_id=doc_id),
        task_path=TASK_PATH,
    )


async def _discard_unrun(*doc_ids: int) -> None:
    """Delete the check's tasks no worker has claimed; claimed ones fail on the missing document."""
    from django.tasks import TaskResultStatus

    for doc_id in doc_ids:
        await _rows_for(doc_id).filter(status=TaskResultStatus.READY).adelete()


async def _insert_results(nonce: str) -> dict[str, Any]:
    """A deferred READY task (no worker takes it), a SUCCESSFUL one and a FAILED one."""
    from datetime import timedelta

    from django.tasks import TaskResultStatus
    from django.utils import timezone
    from django_tasks_db.models import DBTaskResult

    now = timezone.now()
    finished = {
        "task_path": TASK_PATH,
        "args_kwargs": {"args": [0], "kwargs": {}},
        "backend_name": "default",
        "queue_name": "default",
        "run_after": now,
        "started_at": now,
        "finished_at": now,
        "worker_ids": ["check-09.2"],
        "exception_class_path": "",
        "traceback": "",
    }

    async def insert(status: str, **fields: Any) -> Any:
        return await DBTaskResult.objects.acreate(status=status, **{**finished, **fields})

    reply = {"document": 0, "reply": f"summary {nonce}", "usage": {}, "call": 0}
    ready = await insert(
        TaskResultStatus.READY,
        run_after=now + timedelta(days=1),
        started_at=None,
        finished_at=None,
        worker_ids=[],
    )
    done = await insert(TaskResultStatus.SUCCESSFUL, return_value=reply)
    failed = await insert(
        TaskResultStatus.FAILED,
        exception_class_path="openai.APITimeoutError",
        traceback="openai.APITimeoutError: Request timed out.",
    )
    return {"READY": ready, "SUCCESSFUL": done, "FAILED": failed}


q1 = StartSummary()
q2 = SummaryResult()
