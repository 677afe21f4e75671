"""The summary as background work: enqueue and answer 202 at once, then poll for the result.

    POST /api/documents/7/summarise/  ->  202 {"task_id": "…", "status": "READY", "poll": "…"}
    GET  /api/tasks/<task_id>/        ->  200 {"task_id": "…", "status": "RUNNING"}
    (later)                           ->  200 {… "status": "SUCCESSFUL", "summary": {…}}

A worker process (`python -m labproject db_worker`) runs the task; no request waits for the LLM.
"""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.tasks import TaskResultStatus
from django.tasks.exceptions import TaskResultDoesNotExist
from django.urls import reverse
from django.views.decorators.csrf import csrf_exempt

from labproject.ai.api import ApiError, error_response, require_method
from labproject.ai.models import Document
from labproject.ai.tasks import summarise_document


@csrf_exempt
async def start_summary(request: HttpRequest, doc_id: int) -> JsonResponse:
    """Enqueue a summary of document `doc_id` and answer 202 with the task's id."""
    try:
        require_method(request, "POST")
    except ApiError as error:
        return error.response()
    if not await Document.objects.filter(pk=doc_id).aexists():
        return error_response(404, "document_not_found", f"there is no document {doc_id}.")
    result = await summarise_document.aenqueue(doc_id)
    poll = reverse("task_result", kwargs={"task_id": result.id})
    response = JsonResponse(
        {"task_id": result.id, "status": result.status, "poll": poll}, status=202
    )
    response["Location"] = poll
    return response


async def summary_result(request: HttpRequest, task_id: str) -> JsonResponse:
    """Answer where task `task_id` stands, with the summary once it succeeded."""
    try:
        require_method(request, "GET")
        result = await summarise_document.aget_result(task_id)
    except ApiError as error:
        return error.response()
    except TaskResultDoesNotExist:
        return error_response(404, "task_not_found", f"there is no task {task_id[:64]}.")
    body: dict = {"task_id": result.id, "status": result.status}
    if result.status == TaskResultStatus.SUCCESSFUL:
        body["summary"] = result.return_value
    elif result.status == TaskResultStatus.FAILED:
        body["error"] = result.errors[-1].exception_class_path if result.errors else "unknown"
    return JsonResponse(body)
