"""The route registry swaps the view behind a named route between requests."""

from __future__ import annotations

import pytest
from django.http import JsonResponse

pytestmark = pytest.mark.usefixtures("django_db")


def _get(path):
    from django.test import Client

    return Client().get(path)


def test_override_sync_then_async_view_and_restore():
    from labproject import routes
    from labproject.ai import views

    def sync_view(request, doc_id):
        return JsonResponse({"which": "sync", "doc": doc_id})

    async def async_view(request, doc_id):
        return JsonResponse({"which": "async", "doc": doc_id})

    with routes.override("summary", sync_view):
        assert _get("/api/documents/7/summary/").json() == {"which": "sync", "doc": 7}
        routes.use("summary", async_view)
        assert _get("/api/documents/8/summary/").json() == {"which": "async", "doc": 8}
    assert routes.current("summary") is views.document_summary


def test_reverse_and_names():
    from django.urls import reverse

    from labproject import routes

    assert reverse("summary", args=[3]) == "/api/documents/3/summary/"
    assert routes.names() == ["chat", "summary", "summary_start", "task_result"]


def test_unknown_route_and_non_callable_are_clear_errors():
    from labproject import routes

    with pytest.raises(KeyError, match="no route named 'chatt'.*chat, summary"):
        routes.use("chatt", lambda r: None)
    with pytest.raises(TypeError, match="expected a view function"):
        routes.use("chat", "not a view")


def test_reset_puts_every_default_back():
    from labproject import routes
    from labproject.ai import views

    routes.use("chat", lambda request: JsonResponse({}))
    routes.reset()
    assert routes.current("chat") is views.chat
