"""Bad input and LLM faults get a specific JSON answer from every form of the API, never a 500.

The malformed-input half runs through Django's test clients (a real server adds nothing to
parsing); the LLM-fault half runs through real servers on loopback, since timeouts, cut
connections and retries only happen on real sockets.
"""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from django.test import override_settings

from tests.fixtures.api import FORMS, Tracebacks, calls_since, form_routes, last_call_id, serve_form

pytestmark = pytest.mark.usefixtures("mock_llm")

JSON = "application/json"
CHAT = "/api/chat/"
SUMMARY = "/api/documents/1/summary/"


def body(value: object) -> str:
    return json.dumps(value)


# (id, method, path, body, content type, status, error code)
MALFORMED = [
    ("json-syntax", "post", CHAT, "{not json", JSON, 400, "invalid_json"),
    ("json-utf8", "post", CHAT, b"\xff\xfe{", JSON, 400, "invalid_json"),
    ("json-blank-body", "post", CHAT, " ", JSON, 400, "invalid_json"),
    ("json-array", "post", CHAT, "[1, 2]", JSON, 400, "invalid_json"),
    ("json-string", "post", CHAT, '"hello"', JSON, 400, "invalid_json"),
    ("json-null", "post", CHAT, "null", JSON, 400, "invalid_json"),
    ("json-nan", "post", CHAT, "NaN", JSON, 400, "invalid_json"),
    ("json-nan-field", "post", CHAT, '{"prompt": "hi", "t": Infinity}', JSON, 400, "invalid_json"),
    ("json-deep", "post", CHAT, "[" * 100_000, JSON, 400, "invalid_json"),
    ("prompt-missing", "post", CHAT, "{}", JSON, 400, "missing_prompt"),
    ("prompt-misspelt", "post", CHAT, body({"promt": "hi"}), JSON, 400, "missing_prompt"),
    ("prompt-empty", "post", CHAT, body({"prompt": ""}), JSON, 400, "empty_prompt"),
    ("prompt-blank", "post", CHAT, body({"prompt": " \n\t"}), JSON, 400, "empty_prompt"),
    ("prompt-int", "post", CHAT, body({"prompt": 42}), JSON, 400, "invalid_prompt"),
    ("prompt-null", "post", CHAT, body({"prompt": None}), JSON, 400, "invalid_prompt"),
    ("prompt-bool", "post", CHAT, body({"prompt": True}), JSON, 400, "invalid_prompt"),
    ("prompt-list", "post", CHAT, body({"prompt": ["a"]}), JSON, 400, "invalid_prompt"),
    ("prompt-object", "post", CHAT, body({"prompt": {"a": 1}}), JSON, 400, "invalid_prompt"),
    ("prompt-nul", "post", CHAT, body({"prompt": "a\x00b"}), JSON, 400, "invalid_prompt"),
    ("prompt-surrogate", "post", CHAT, '{"prompt": "\\ud800"}', JSON, 400, "invalid_prompt"),
    ("prompt-huge", "post", CHAT, body({"prompt": "x" * 8001}), JSON, 413, "prompt_too_long"),
    ("body-huge", "post", CHAT, body({"prompt": "x" * 3_000_000}), JSON, 413, "body_too_large"),
    ("type-form", "post", CHAT, "prompt=hi", "application/x-www-form-urlencoded", 415,
     "unsupported_media_type"),
    ("type-text", "post", CHAT, body({"prompt": "hi"}), "text/plain", 415,
     "unsupported_media_type"),
    ("type-multipart", "post", CHAT, "--x--", "multipart/form-data; boundary=x", 415,
     "unsupported_media_type"),
    ("chat-get", "get", CHAT, None, None, 405, "method_not_allowed"),
    ("chat-put", "put", CHAT, body({"prompt": "hi"}), JSON, 405, "method_not_allowed"),
    ("chat-delete", "delete", CHAT, None, None, 405, "method_not_allowed"),
    ("chat-patch", "patch", CHAT, body({"prompt": "hi"}), JSON, 405, "method_not_allowed"),
    ("chat-options", "options", CHAT, None, None, 405, "method_not_allowed"),
    ("summary-post", "post", SUMMARY, "{}", JSON, 405, "method_not_allowed"),
    ("summary-unknown-id", "get", "/api/documents/999999/summary/", None, None, 404,
     "document_not_found"),
    ("summary-zero-id", "get", "/api/documents/0/summary/", None, None, 404,
     "document_not_found"),
    ("summary-huge-id", "get", f"/api/documents/{10**30}/summary/", None, None, 404,
     "document_not_found"),
    ("summary-text-id", "get", "/api/documents/abc/summary/", None, None, 404, "not_found"),
    ("summary-negative-id", "get", "/api/documents/-1/summary/", None, None, 404, "not_found"),
    ("path-injection", "get", "/api/documents/1%3BDROP%20TABLE%20ai_aicall/summary/", None, None,
     404, "not_found"),
    ("path-traversal", "get", "/api/../../etc/passwd", None, None, 404, "not_found"),
    ("unknown-url", "get", "/api/nothing/", None, None, 404, "not_found"),
]  # fmt: skip

# Prompts that look like attacks are still prompts: answered, stored verbatim, never executed.
INJECTIONS = [
    "'); DROP TABLE ai_aicall; --",
    "<script>alert(1)</script>",
    "{{ settings.SECRET_KEY }}",
    "${jndi:ldap://127.0.0.1/a}",
    "\u202eevil\u202c and emoji \U0001f600",
]


def _request(client, method: str, path: str, data: object, content_type: str | None, **extra):
    kwargs = {} if data is None else {"data": data, "content_type": content_type}
    return getattr(client, method)(path, **kwargs, **extra)


def _assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content[:300]
    assert response["Content-Type"] == JSON, response.content[:300]
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


@pytest.mark.parametrize("form", ["starter", "reference"])
@pytest.mark.parametrize(
    ("method", "path", "data", "content_type", "status", "code"),
    [pytest.param(*case[1:], id=case[0]) for case in MALFORMED],
)
def test_malformed_input_is_a_specific_json_4xx(form, method, path, data, content_type, status,
                                                code):  # fmt: skip
    mark = last_call_id()
    with form_routes(form):
        if form == "starter":
            from django.test import Client

            response = _request(Client(), method, path, data, content_type)
        else:
            from django.test import AsyncClient

            async def call():
                return await _request(AsyncClient(), method, path, data, content_type)

            response = asyncio.run(call())
    _assert_error(response, status, code)
    if status == 405:
        assert response["Allow"] in ("POST", "GET")
    assert calls_since(mark) == []  # nothing reached the LLM, nothing was logged


@pytest.mark.parametrize("form", ["starter", "reference"])
def test_foreign_host_header_is_a_json_400(form):
    from django.test import Client

    with form_routes(form):
        response = Client(HTTP_HOST="evil.example").post(CHAT, data={"prompt": "hi"},
                                                         content_type=JSON)  # fmt: skip
    _assert_error(response, 400, "bad_request")


@pytest.mark.parametrize("form", FORMS)
def test_injection_looking_prompts_are_answered_and_stored_verbatim(form):
    from django.test import Client

    mark = last_call_id()
    with form_routes(form):
        for prompt in INJECTIONS:
            response = Client().post(CHAT, data={"prompt": f"{prompt} {uuid.uuid4()}"},
                                     content_type=JSON)  # fmt: skip
            assert response.status_code == 200, response.content
    stored = [call.prompt.rsplit(" ", 1)[0] for call in calls_since(mark)]
    assert stored == INJECTIONS  # and the table they "dropped" is still there


# LLM faults, through real servers.
# (mock settings, status, API error code, with Retry-After)
FAULTS = {
    "timeout": ({"fault": "hang", "hang_s": 3}, 504, "llm_timeout", False),
    "rate-limited": ({"rpm": 1}, 429, "llm_rate_limited", True),
    "upstream-500": ({"fault": "500"}, 503, "llm_unavailable", True),
    "upstream-503": ({"fault": "503"}, 503, "llm_unavailable", True),
    "body-cut": ({"fault": "cut"}, 502, "llm_unreachable", False),
    "malformed-body": ({"fault": "malformed"}, 502, "llm_bad_response", False),
}


@pytest.fixture(scope="module", params=FORMS)
def server(request, mock_llm):
    with serve_form(request.param) as server:
        yield server


@pytest.fixture
def llm(mock_llm):
    mock_llm.reset(config=True)
    yield mock_llm
    mock_llm.reset(config=True)


def _use_up_rate_limit(llm) -> None:
    response = httpx.post(
        f"{llm.base_url}/chat/completions",
        json={"model": "mock-gpt", "messages": [{"role": "user", "content": "x"}]},
    )
    assert response.status_code == 200


def _call(server, endpoint: str) -> httpx.Response:
    if endpoint == "chat":
        return httpx.post(f"{server.url}{CHAT}", json={"prompt": f"fault {uuid.uuid4()}"},
                          timeout=20)  # fmt: skip
    return httpx.get(f"{server.url}{SUMMARY}", timeout=20)


@pytest.mark.parametrize("endpoint", ["chat", "summary"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_llm_fault_is_a_mapped_status_and_a_logged_failure(server, llm, fault, endpoint):
    changes, status, code, retry_after = FAULTS[fault]
    llm.configure(**changes)
    if fault == "rate-limited":
        _use_up_rate_limit(llm)
    mark = last_call_id()
    with Tracebacks() as tracebacks, override_settings(LLM_MAX_RETRIES=0, LLM_TIMEOUT_S=0.5):
        response = _call(server, endpoint)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == JSON
    assert response.json()["error"]["code"] == code
    assert ("retry-after" in response.headers) == retry_after
    if retry_after:
        assert int(response.headers["retry-after"]) >= 1
    [call] = calls_since(mark)
    assert not call.ok and call.error.startswith(f"{code}: ")
    assert call.endpoint == endpoint
    assert tracebacks.messages() == []


def test_llm_unreachable_is_502_and_logged(server, llm):
    mark = last_call_id()
    dead = "http://127.0.0.1:9/v1"  # the discard port: nothing listens there
    with Tracebacks() as tracebacks, override_settings(LLM_BASE_URL=dead, LLM_MAX_RETRIES=0):
        response = _call(server, "chat")
    assert response.status_code == 502, response.text
    assert response.json()["error"]["code"] == "llm_unreachable"
    [call] = calls_since(mark)
    assert not call.ok
    assert tracebacks.messages() == []


def test_503_beyond_the_retry_budget_is_retried_then_mapped(server, llm):
    llm.configure(fault="503")
    with override_settings(LLM_MAX_RETRIES=1):
        response = _call(server, "chat")
    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert llm.stats()["requests_total"] == 2  # the call and its one retry


def test_the_server_still_answers_after_every_fault(server, llm):
    response = _call(server, "chat")
    assert response.status_code == 200, response.text
    assert response.json()["reply"]


def test_the_cached_view_never_caches_a_fault(llm):
    from django.test import Client

    prompt = {"prompt": f"cache me {uuid.uuid4()}"}
    with form_routes("cached"), override_settings(LLM_MAX_RETRIES=0):
        llm.configure(fault="503")
        assert Client().post(CHAT, data=prompt, content_type=JSON).status_code == 503
        llm.configure(fault=None)
        answers = [Client().post(CHAT, data=prompt, content_type=JSON) for _ in range(2)]
    assert [a.status_code for a in answers] == [200, 200]
    assert [a.json()["cached"] for a in answers] == [False, True]
    assert llm.stats()["requests_total"] == 2  # the fault and one success: the hit is free


def test_the_cache_key_covers_model_params_system_prompt_and_version(monkeypatch):
    from labkit import reference

    base = {"model": "mock-gpt", "system": None, "params": {"temperature": 0}}
    key = reference.chat_cache_key("hi", **base)
    assert key == reference.chat_cache_key("hi", **base)
    variants = [
        reference.chat_cache_key("hi!", **base),
        reference.chat_cache_key("hi", **{**base, "model": "gpt-4o"}),
        reference.chat_cache_key("hi", **{**base, "system": "Be brief."}),
        reference.chat_cache_key("hi", **{**base, "params": {"temperature": 1}}),
    ]
    monkeypatch.setattr(reference, "CACHE_VERSION", reference.CACHE_VERSION + 1)
    variants.append(reference.chat_cache_key("hi", **base))
    assert len({key, *variants}) == 1 + len(variants)
