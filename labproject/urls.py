"""URLs of the lab project. API routes go through the registry so notebooks can swap views."""

from __future__ import annotations

from django.http import HttpRequest, JsonResponse
from django.urls import path

from labproject.ai import background, views
from labproject.ai.api import error_response
from labproject.routes import route


def healthz(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    route("api/chat/", views.chat, name="chat"),
    route("api/documents/<int:doc_id>/summary/", views.document_summary, name="summary"),
    route("api/documents/<int:doc_id>/summarise/", background.start_summary, name="summary_start"),
    route("api/tasks/<str:task_id>/", background.summary_result, name="task_result"),
]


# The project is a JSON API: Django's own error pages are HTML, which an API client cannot
# read. These answer in the API's error shape instead (used when DEBUG is off).
def bad_request(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(400, "bad_request", "the request could not be understood.")


def forbidden(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(403, "forbidden", "this request is not allowed.")


def not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return error_response(404, "not_found", f"there is nothing at {request.path[:200]}.")


def server_error(request: HttpRequest) -> JsonResponse:
    return error_response(500, "server_error", "the server failed; the error is logged.")


handler400 = bad_request
handler403 = forbidden
handler404 = not_found
handler500 = server_error
