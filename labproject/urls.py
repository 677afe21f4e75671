"""URLs of the lab project. API routes go through the registry so notebooks can swap views."""

from __future__ import annotations

from django.http import JsonResponse
from django.urls import path

from labproject.ai import views
from labproject.routes import route


def healthz(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    route("api/chat/", views.chat, name="chat"),
    route("api/documents/<int:doc_id>/summary/", views.document_summary, name="summary"),
]
