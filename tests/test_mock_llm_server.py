"""The mock over real TCP: the official SDK, bad input, admin calls, per-call overrides."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx2
import openai
import pytest

from labkit.mock_llm import MockLLM, MockLLMError

USER = [{"role": "user", "content": "Why does a sync view block?"}]
SECRET = "sk-do-not-leak-7f3a9c"


@pytest.fixture(scope="module")
def llm():
    with MockLLM(preset="instant") as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(llm):
    llm.reset(config=True)
    yield
    assert "Traceback" not in llm.stderr_text(), llm.stderr_text()


@pytest.fixture
def raw(llm):
    with httpx2.Client(base_url=llm.url, headers={"authorization": f"Bearer {SECRET}"}) as client:
        yield client


def sync_client(llm, **options):
    return openai.OpenAI(
        base_url=llm.base_url, api_key=SECRET, _strict_response_validation=True, **options
    )


def async_client(llm, **options):
    return openai.AsyncOpenAI(
        base_url=llm.base_url, api_key=SECRET, _strict_response_validation=True, **options
    )


def test_sync_sdk_streamed_and_not(llm):
    with sync_client(llm) as client:
        whole = client.chat.completions.create(model="mock-gpt", messages=USER, seed=3)
        chunks = list(
            client.chat.completions.create(
                model="mock-gpt",
                messages=USER,
                seed=3,
                stream=True,
                stream_options={"include_usage": True},
            )
        )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == whole.choices[0].message.content
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    # One content chunk per completion token: streamed and counted usage agree.
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) == whole.usage.completion_tokens


def test_async_sdk_streamed_and_not(llm):
    async def main():
        async with async_client(llm) as client:
            whole = await client.chat.completions.create(
                model="gpt-4o-mini", messages=USER, max_tokens=6
            )
            stream = await client.chat.completions.create(
                model="gpt-4o-mini", messages=USER, max_tokens=6, stream=True
            )
            chunks = [chunk async for chunk in stream]
            return whole, chunks

    whole, chunks = asyncio.run(main())
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage.completion_tokens == 6
    assert whole.model == "gpt-4o-mini"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == (
        whole.choices[0].message.content
    )
    assert chunks[-1].choices[0].finish_reason == "length"
    assert all(c.usage is None for c in chunks)  # no usage chunk unless asked for
    stats = llm.stats()
    assert stats["models"]["gpt-4o-mini"]["requests"] == 2
    assert stats["completion_tokens_total"] == 12


def test_stats_tell_the_sync_sdk_from_the_async_one(llm, raw):
    # The SDK's X-Stainless-Async header: how a check tells `OpenAI` in a thread from
    # `AsyncOpenAI` when concurrency alone cannot (each ASGI request has its own thread).
    with sync_client(llm) as client:
        client.chat.completions.create(model="mock-gpt", messages=USER)

    async def main():
        async with async_client(llm) as client:
            await client.chat.completions.create(model="mock-gpt", messages=USER)

    asyncio.run(main())
    raw.post("/v1/chat/completions", json={"model": "mock-gpt", "messages": USER})
    assert llm.stats()["sdk_async"] == {"absent": 1, "async:asyncio": 1, "false": 1}
    llm.reset()
    assert llm.stats()["sdk_async"] == {}


def test_streamed_body_ends_right_after_done_so_connections_are_reused(llm, raw):
    body = {"model": "mock-gpt", "messages": USER, "stream": True}
    response = raw.post("/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text.endswith("data: [DONE]\n\n")

    async def three_streams():
        async with async_client(llm) as client:
            for _ in range(3):
                stream = await client.chat.completions.create(
                    model="mock-gpt", messages=USER, stream=True
                )
                async for _chunk in stream:
                    pass

    llm.reset()
    started = time.perf_counter()
    asyncio.run(three_streams())
    # The SDK drains up to 0.1 s after [DONE] to keep the connection: an open-ended body
    # would cost that drain on every call and a new connection each time.
    assert llm.stats()["connections_total"] == 1
    assert time.perf_counter() - started < 0.3 + 0.5


def test_models_are_listed_and_retrieved(llm):
    with sync_client(llm) as client:
        names = [model.id for model in client.models.list()]
        assert "mock-gpt" in names and "gpt-4o-mini" in names
        assert client.models.retrieve("mock-gpt").owned_by == "mock-llm"
        with pytest.raises(openai.NotFoundError) as missing:
            client.models.retrieve("gpt-17")
        assert missing.value.code == "model_not_found"
    llm.configure(models=["only-this"])
    with sync_client(llm) as client:
        assert [model.id for model in client.models.list()] == ["only-this"]


def test_replies_are_deterministic_across_calls_and_clients(llm):
    def ask(**extra):
        with sync_client(llm) as client:
            reply = client.chat.completions.create(model="mock-gpt", messages=USER, **extra)
            return reply.choices[0].message.content

    assert ask() == ask()
    assert ask(seed=1) != ask(seed=2)


BAD_INPUT = [
    # (what, method, path, body, status, code, param)
    ("unknown model", "POST", "/v1/chat/completions", {"model": "gpt-17", "messages": USER},
     404, "model_not_found", "model"),
    ("missing messages", "POST", "/v1/chat/completions", {"model": "mock-gpt"},
     400, "missing_required_parameter", "messages"),
    ("missing model", "POST", "/v1/chat/completions", {"messages": USER},
     400, "missing_required_parameter", "model"),
    ("messages not a list", "POST", "/v1/chat/completions", {"model": "mock-gpt", "messages": "hi"},
     400, "invalid_type", "messages"),
    ("empty messages", "POST", "/v1/chat/completions", {"model": "mock-gpt", "messages": []},
     400, "invalid_value", "messages"),
    ("bad role", "POST", "/v1/chat/completions",
     {"model": "mock-gpt", "messages": [{"role": "robot", "content": "x"}]},
     400, "invalid_value", "messages[0].role"),
    ("content a number", "POST", "/v1/chat/completions",
     {"model": "mock-gpt", "messages": [{"role": "user", "content": 5}]},
     400, "invalid_type", "messages[0].content"),
    ("stream not a boolean", "POST", "/v1/chat/completions",
     {"model": "mock-gpt", "messages": USER, "stream": "yes"}, 400, "invalid_type", "stream"),
    ("max_tokens zero", "POST", "/v1/chat/completions",
     {"model": "mock-gpt", "messages": USER, "max_tokens": 0}, 400, "invalid_value", "max_tokens"),
    ("max_tokens a boolean", "POST", "/v1/chat/completions",
     {"model": "mock-gpt", "messages": USER, "max_tokens": True}, 400, "invalid_type",
     "max_tokens"),
    ("body an array", "POST", "/v1/chat/completions", [1, 2], 400, "invalid_type", "body"),
    ("unparseable body", "POST", "/v1/chat/completions", b'{"model": ', 400, None, None),
    ("empty body", "POST", "/v1/chat/completions", b"", 400, None, None),
    ("not utf-8", "POST", "/v1/chat/completions", b"\xff\xfe{", 400, None, None),
    ("body too large", "POST", "/v1/chat/completions", b"x" * (9 * 1024 * 1024),
     413, "too_large", None),
    ("bad per-call setting", "POST", "/v1/chat/completions",
     {"model": "mock-gpt", "messages": USER, "mock": {"rpm": 1}}, 400, "invalid_value", "mock"),
    ("wrong method", "GET", "/v1/chat/completions", None, 405, "method_not_allowed", None),
    ("wrong method on models", "DELETE", "/v1/models", None, 405, "method_not_allowed", None),
    ("unknown path", "POST", "/v1/completions/legacy", {}, 404, "unknown_url", None),
    ("unknown admin path", "GET", "/_mock/nothing", None, 404, "unknown_url", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "method", "path", "body", "status", "code", "param"),
    BAD_INPUT,
    ids=[case[0] for case in BAD_INPUT],
)
def test_bad_input_gets_an_openai_shaped_error(raw, what, method, path, body, status, code, param):
    content = body if isinstance(body, bytes) else None if body is None else json.dumps(body)
    response = raw.request(method, path, content=content)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["x-request-id"].startswith("req_")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert (error["code"], error["param"]) == (code, param)
    assert error["message"] and "Traceback" not in error["message"]
    assert SECRET not in response.text and SECRET not in str(response.headers)
    if status == 405:
        assert response.headers["allow"] in ("POST", "GET")


@pytest.mark.parametrize(
    ("headers", "param"),
    [({"x-mock-latency": "soonish"}, "x-mock-latency"), ({"x-mock-fault": "404"}, "mock")],
)
def test_bad_override_headers_are_refused(raw, headers, param):
    body = {"model": "mock-gpt", "messages": USER}
    response = raw.post("/v1/chat/completions", json=body, headers=headers)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("invalid_value", param)
    assert list(headers.values())[0] in error["message"]


def test_bad_input_is_counted_and_the_server_carries_on(llm, raw):
    raw.post("/v1/chat/completions", content=b"{")
    raw.post("/v1/chat/completions", json={"model": "nope", "messages": USER})
    # Not even HTTP: uvicorn answers 400 and the server keeps serving.
    with socket.create_connection(("127.0.0.1", llm.port), timeout=5) as sock:
        sock.sendall(b"THIS IS NOT HTTP\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400")
    assert raw.post("/v1/chat/completions", json={"model": "mock-gpt", "messages": USER})
    stats = llm.stats()
    assert stats["requests_total"] == 3
    assert stats["errors_total"] == 2
    assert stats["statuses"] == {"200": 1, "400": 1, "404": 1}


def test_error_bodies_surface_as_sdk_exceptions(llm):
    with sync_client(llm, max_retries=0) as client:
        with pytest.raises(openai.BadRequestError) as bad:
            client.chat.completions.create(model="mock-gpt", messages=[])
        assert bad.value.param == "messages"
        assert bad.value.request_id.startswith("req_")


def test_every_response_has_a_request_id(raw):
    responses = [
        raw.get("/v1/models"),
        raw.get("/_mock/stats"),
        raw.get("/_mock/health"),
        raw.post("/v1/chat/completions", json={"model": "mock-gpt", "messages": USER}),
        raw.get("/nowhere"),
    ]
    ids = {response.headers["x-request-id"] for response in responses}
    assert len(ids) == len(responses)


def test_admin_config_changes_latency_and_reset_restores_it(llm):
    assert llm.config()["preset"] == "instant"
    config = llm.configure(latency_s=0.4)
    assert config["latency_s"] == 0.4 and llm.config()["latency_s"] == 0.4
    with sync_client(llm) as client:
        started = time.perf_counter()
        client.chat.completions.create(model="mock-gpt", messages=USER)
        assert 0.4 <= time.perf_counter() - started < 1.5
        llm.reset(config=True)
        started = time.perf_counter()
        client.chat.completions.create(model="mock-gpt", messages=USER)
        assert time.perf_counter() - started < 0.2
    assert llm.config()["latency_s"] is None


def test_admin_config_refuses_bad_settings_with_reasons(llm):
    with pytest.raises(MockLLMError, match="unknown setting.*latencyy.*latency_s"):
        llm.configure(latencyy=1)
    with pytest.raises(MockLLMError, match="preset='warp' is not a preset"):
        llm.configure(preset="warp")
    assert llm.config()["preset"] == "instant"  # nothing half-applied


def test_reset_zeroes_totals_but_not_gauges(llm):
    with sync_client(llm) as client:
        client.chat.completions.create(model="mock-gpt", messages=USER)
        assert llm.stats()["requests_total"] == 1
        after = llm.reset()
        assert after["requests_total"] == 0 and after["tokens_total"] == 0
        assert after["connections_total"] == 0
        assert after["connections_open"] == 1  # the client's pooled connection is still there


@pytest.mark.parametrize(
    ("extra", "slow"),
    [
        ({"extra_headers": {"x-mock-latency": "0.4"}}, True),
        ({"extra_body": {"mock": {"latency_s": 0.4}}}, True),
        ({"extra_body": {"mock": {"ttft_s": 0.4, "per_token_s": 0}}}, True),
        ({}, False),
    ],
)
def test_per_call_latency_overrides(llm, extra, slow):
    with sync_client(llm) as client:
        client.models.list()  # warm the connection
        started = time.perf_counter()
        client.chat.completions.create(model="mock-gpt", messages=USER, **extra)
        elapsed = time.perf_counter() - started
    assert (elapsed >= 0.4) == slow, elapsed
    assert llm.config()["latency_s"] is None  # per call only


def test_a_per_call_preset_overrides_a_slow_server(llm):
    llm.configure(latency_s=0.5)
    with sync_client(llm) as client:
        client.models.list()
        started = time.perf_counter()
        client.chat.completions.create(
            model="mock-gpt", messages=USER, extra_headers={"x-mock-latency": "instant"}
        )
        assert time.perf_counter() - started < 0.25


def test_cancelled_call_leaves_in_flight(llm):
    llm.configure(latency_s=5)

    async def main():
        async with httpx2.AsyncClient(base_url=llm.url) as client:
            call = asyncio.ensure_future(
                client.post("/v1/chat/completions", json={"model": "mock-gpt", "messages": USER})
            )
            for _ in range(100):
                await asyncio.sleep(0.02)
                if llm.stats()["in_flight"] == 1:
                    break
            assert llm.stats()["in_flight"] == 1
            call.cancel()  # the client hangs up
            with pytest.raises(asyncio.CancelledError):
                await call
            hung_up = time.perf_counter()
            while llm.stats()["in_flight"] and time.perf_counter() - hung_up < 1:
                await asyncio.sleep(0.02)
            return time.perf_counter() - hung_up

    assert asyncio.run(main()) < 1
    stats = llm.stats()
    assert stats["in_flight"] == 0 and stats["cancelled_total"] == 1
    assert stats["in_flight_peak"] == 1 and stats["tokens_total"] == 0


def test_abandoned_stream_is_cancelled_too(llm):
    llm.configure(ttft_s=0, per_token_s=0.2)

    async def main():
        async with async_client(llm) as client:
            stream = await client.chat.completions.create(
                model="mock-gpt", messages=USER, stream=True
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    break
            await stream.close()
        deadline = time.perf_counter() + 1
        while llm.stats()["in_flight"] and time.perf_counter() < deadline:
            await asyncio.sleep(0.02)

    asyncio.run(main())
    stats = llm.stats()
    assert stats["in_flight"] == 0 and stats["cancelled_total"] == 1


def test_api_key_is_never_logged():
    with MockLLM(preset="instant", log_level="debug") as server:
        with httpx2.Client(
            base_url=server.url, headers={"authorization": f"Bearer {SECRET}"}
        ) as client:
            client.post("/v1/chat/completions", json={"model": "mock-gpt", "messages": USER})
            client.post("/v1/chat/completions", content=b"{")
        assert SECRET not in json.dumps(server.stats()) + json.dumps(server.config())
        log = server.stderr_text()
    assert "DEBUG" in log  # the most talkative level did log something
    assert SECRET not in log
