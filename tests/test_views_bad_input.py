"""The starter views answer bad input with a specific JSON 4xx and log nothing."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.usefixtures("mock_llm")

CHAT = "/api/chat/"


def _client():
    from django.test import Client

    return Client()


def _calls() -> int:
    from labproject.ai.models import AICall

    return AICall.objects.count()


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        ("{not json", "application/json", 400, "invalid_json"),
        (b"\xff\xfe", "application/json", 400, "invalid_json"),
        ("[1, 2]", "application/json", 400, "invalid_json"),
        ("{}", "application/json", 400, "missing_prompt"),
        ('{"prompt": ""}', "application/json", 400, "empty_prompt"),
        ('{"prompt": "   "}', "application/json", 400, "empty_prompt"),
        ('{"prompt": 42}', "application/json", 400, "invalid_prompt"),
        ('{"prompt": null}', "application/json", 400, "invalid_prompt"),
        ('{"prompt": ["a"]}', "application/json", 400, "invalid_prompt"),
        (json.dumps({"prompt": "x" * 8001}), "application/json", 413, "prompt_too_long"),
        ("prompt=hello", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        ('{"prompt": "hi"}', "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_chat_rejects_bad_body(body, content_type, status, code):
    before = _calls()
    response = _client().post(CHAT, data=body, content_type=content_type)
    assert response.status_code == status, response.content
    assert response["Content-Type"] == "application/json"
    assert response.json()["error"]["code"] == code
    assert _calls() == before


@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_chat_wrong_method_is_405_with_allow(method):
    before = _calls()
    response = getattr(_client(), method)(CHAT)
    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert _calls() == before


def test_summary_unknown_document_is_404():
    before = _calls()
    response = _client().get("/api/documents/999999/summary/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "document_not_found"
    assert _calls() == before


def test_summary_wrong_method_is_405():
    before = _calls()
    response = _client().post(
        "/api/documents/1/summary/", data="{}", content_type="application/json"
    )
    assert response.status_code == 405
    assert response["Allow"] == "GET"
    assert _calls() == before


def test_non_integer_document_id_is_404():
    assert _client().get("/api/documents/abc/summary/").status_code == 404


def test_chat_success_logs_one_call():
    before = _calls()
    response = _client().post(
        CHAT, data={"prompt": "Explain async Django"}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["reply"]
    assert body["usage"]["completion_tokens"] > 0
    assert _calls() == before + 1
    from labproject.ai.models import AICall

    call = AICall.objects.first()
    assert call.ok and call.prompt == "Explain async Django" and call.reply == body["reply"]
    assert call.prompt_tokens > 0 and call.latency_ms > 0


def test_summary_success_cites_sections():
    before = _calls()
    response = _client().get("/api/documents/1/summary/")
    assert response.status_code == 200, response.content
    assert response.json()["document"] == 1
    assert _calls() == before + 1
    from labproject.ai.models import AICall

    assert "§20" in AICall.objects.first().prompt


def test_llm_down_is_502_and_logged_as_failure(settings_override):
    before = _calls()
    with settings_override(LLM_BASE_URL="http://127.0.0.1:9/v1", LLM_MAX_RETRIES=0):
        response = _client().post(CHAT, data={"prompt": "hi"}, content_type="application/json")
    assert response.status_code == 502
    assert response.json()["error"]["code"] == "llm_unreachable"
    from labproject.ai.models import AICall

    assert _calls() == before + 1
    assert not AICall.objects.first().ok


@pytest.fixture
def settings_override():
    from django.test import override_settings

    return override_settings
