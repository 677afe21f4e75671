"""The recommended async setup keeps Django's protections while skipping thread hops."""

from __future__ import annotations

import httpx
import pytest
from django.http import JsonResponse

from labkit.servers import ASGIServer

pytestmark = pytest.mark.usefixtures("mock_llm")


@pytest.fixture(scope="module")
def server():
    from labkit import reference
    from labproject import routes

    with routes.override("chat", reference.chat), ASGIServer(reference.asgi_application()) as s:
        yield s


def test_reference_chat_answers_and_logs(server):
    from labproject.ai.models import AICall

    before = AICall.objects.count()
    response = httpx.post(f"{server.url}/api/chat/", json={"prompt": "hello"})
    assert response.status_code == 200, response.text
    assert response.json()["reply"]
    assert AICall.objects.count() == before + 1
    assert response.headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware ran


def test_csrf_still_enforced_for_views_not_exempted(server):
    from labproject import routes

    async def not_exempt(request):
        return JsonResponse({"ok": True})

    with routes.override("chat", not_exempt):
        response = httpx.post(f"{server.url}/api/chat/", json={"prompt": "hello"})
    assert response.status_code == 403


def test_append_slash_still_redirects(server):
    response = httpx.get(f"{server.url}/api/documents/1/summary")
    assert response.status_code == 301
    assert response.headers["location"].endswith("/api/documents/1/summary/")


def test_inline_middleware_runs_no_hook_in_a_thread():
    import asyncio
    import threading

    from django.middleware.security import SecurityMiddleware

    from labkit.reference import InlineSecurityMiddleware

    seen = []

    class Probe(InlineSecurityMiddleware):
        def process_request(self, request):
            seen.append(threading.current_thread().name)

    async def get_response(request):
        return JsonResponse({})

    from django.test import RequestFactory

    asyncio.run(Probe(get_response)(RequestFactory().get("/")))
    assert seen == [threading.main_thread().name]
    assert issubclass(InlineSecurityMiddleware, SecurityMiddleware)


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_complete_logs_tokens_and_maps_faults_through_either_api(api):
    import asyncio

    from labkit.reference import LLMFailed, complete
    from labproject.ai.llm import CallRecord, messages_for
    from labproject.ai.models import AICall

    messages = messages_for("hello through both APIs", "Be brief.")

    async def main():
        record = await complete(CallRecord(endpoint=api, prompt="hello"), messages, api=api)
        malformed = {"mock": {"fault": "malformed"}}
        with pytest.raises(LLMFailed) as failed:
            await complete(
                CallRecord(endpoint=api, prompt="x"), messages, api=api, extra_body=malformed
            )
        rows = [row async for row in AICall.objects.filter(endpoint=api).order_by("-id")[:2]]
        return record, failed.value.failure, rows

    record, failure, (bad, good) = asyncio.run(main())
    assert record.reply.startswith("Mock reply") and record.completion_tokens > 0
    assert (good.prompt_tokens, good.completion_tokens) == (
        record.prompt_tokens,
        record.completion_tokens,
    )
    assert good.ok and good.reply == record.reply
    assert (failure.status, failure.code) == (502, "llm_bad_response")
    assert not bad.ok and bad.error.startswith("llm_bad_response")
