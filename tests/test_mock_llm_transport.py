"""The in-process seam: the official SDK against MockLLMTransport, no server at all."""

from __future__ import annotations

import asyncio
import time

import httpx2
import openai
import pytest

from labkit.mock_llm import MockLLMTransport

USER = [{"role": "user", "content": "What does an async view buy us?"}]


def async_client(transport, **options):
    return openai.AsyncOpenAI(
        api_key="sk-test",
        http_client=openai.DefaultAsyncHttpxClient(transport=transport),
        _strict_response_validation=True,
        **options,
    )


def sync_client(transport, **options):
    return openai.OpenAI(
        api_key="sk-test",
        http_client=openai.DefaultHttpxClient(transport=transport),
        _strict_response_validation=True,
        **options,
    )


def test_async_sdk_streamed_and_not_agree():
    transport = MockLLMTransport()

    async def main():
        async with async_client(transport) as client:
            whole = await client.chat.completions.create(model="mock-gpt", messages=USER)
            stream = await client.chat.completions.create(
                model="mock-gpt", messages=USER, stream=True, stream_options={"include_usage": True}
            )
            parts, usage = [], None
            async for chunk in stream:
                if chunk.choices:
                    parts.append(chunk.choices[0].delta.content or "")
                else:
                    usage = chunk.usage
            return whole, "".join(parts), usage

    whole, streamed, usage = asyncio.run(main())
    assert whole.choices[0].message.content == streamed
    assert usage == whole.usage
    stats = transport.stats()
    assert stats["requests_total"] == 2 and stats["streams_total"] == 1
    assert stats["tokens_total"] == 2 * whole.usage.total_tokens
    assert stats["connections_total"] == 0  # no TCP in process


def test_sync_sdk_works_even_inside_a_running_event_loop():
    transport = MockLLMTransport()

    async def cell():  # a notebook cell: sync code while the kernel's loop runs
        with sync_client(transport) as client:
            whole = client.chat.completions.create(model="mock-gpt", messages=USER)
            stream = client.chat.completions.create(model="mock-gpt", messages=USER, stream=True)
            text = "".join(chunk.choices[0].delta.content or "" for chunk in stream)
        return whole.choices[0].message.content, text

    whole, streamed = asyncio.run(cell())
    assert whole == streamed and whole.startswith("Mock reply to")


def test_the_same_latency_model_applies_in_process():
    transport = MockLLMTransport(latency_s=0.3)
    with sync_client(transport) as client:
        started = time.perf_counter()
        client.chat.completions.create(model="mock-gpt", messages=USER)
        slow = time.perf_counter() - started
        transport.configure(preset="instant")
        started = time.perf_counter()
        client.chat.completions.create(model="mock-gpt", messages=USER)
        fast = time.perf_counter() - started
    assert 0.3 <= slow < 1.5
    assert fast < slow / 3


def test_stream_timing_has_a_first_token_time_and_a_per_token_time():
    transport = MockLLMTransport(ttft_s=0.3, per_token_s=0.02, reply_tokens=20)

    async def main():
        async with async_client(transport) as client:
            started = time.perf_counter()
            stream = await client.chat.completions.create(
                model="mock-gpt", messages=USER, stream=True, max_tokens=20
            )
            arrivals = []
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    arrivals.append(time.perf_counter() - started)
            return arrivals

    arrivals = asyncio.run(main())
    assert len(arrivals) == 20
    assert 0.3 <= arrivals[0] < 0.3 + 0.25
    # 19 more tokens at 20 ms each: ~0.38 s of spread after the first one.
    assert 0.3 <= arrivals[-1] - arrivals[0] < 0.38 * 2.5


def test_client_timeouts_fire_and_cancel_the_call():
    transport = MockLLMTransport()

    async def main():
        async with async_client(transport, max_retries=0, timeout=0.3) as client:
            with pytest.raises(openai.APITimeoutError):
                await client.chat.completions.create(
                    model="mock-gpt", messages=USER, extra_headers={"x-mock-fault": "hang"}
                )

    started = time.perf_counter()
    asyncio.run(main())
    assert time.perf_counter() - started < 2
    stats = transport.stats()
    assert stats["in_flight"] == 0 and stats["cancelled_total"] == 1
    assert stats["faults"] == {"hang": 1}


def test_cut_and_malformed_faults_surface_as_client_errors():
    transport = MockLLMTransport()

    async def main():
        async with async_client(transport, max_retries=0) as client:
            stream = await client.chat.completions.create(
                model="mock-gpt", messages=USER, stream=True, extra_body={"mock": {"fault": "cut"}}
            )
            received = []
            with pytest.raises(openai.APIConnectionError):
                async for chunk in stream:
                    received.append(chunk)
            assert received  # the cut comes half way, not before the first chunk
            with pytest.raises(ValueError):  # json.JSONDecodeError
                await client.chat.completions.create(
                    model="mock-gpt", messages=USER, extra_body={"mock": {"fault": "malformed"}}
                )

    asyncio.run(main())
    assert transport.stats()["errors_total"] == 2


def test_plain_httpx2_client_and_admin_helpers():
    transport = MockLLMTransport()
    with httpx2.Client(transport=transport, base_url="http://mock") as client:
        assert client.get("/_mock/health").json()["status"] == "ok"
        transport.configure(rpm=1, rate_window_s=60)
        assert client.post("/v1/chat/completions", json={"model": "mock-gpt", "messages": USER})
        refused = client.post("/v1/chat/completions", json={"model": "mock-gpt", "messages": USER})
        assert refused.status_code == 429
        assert transport.stats()["rate_limited_total"] == 1
        assert transport.reset()["requests_total"] == 0
        assert transport.config()["rpm"] == 1
        transport.reset(config=True)
        assert transport.config()["rpm"] is None


def test_respx_route_serves_a_plain_httpx_client():
    """respx sees only plain httpx clients (the seed's way); the same mock answers there."""
    import httpx
    import respx

    transport = MockLLMTransport()

    async def main():
        with respx.mock(assert_all_called=True) as router:
            route = router.route(host="mock.local").mock(side_effect=transport.handle_httpx)
            async with httpx.AsyncClient() as http:
                client = openai.AsyncOpenAI(
                    base_url="http://mock.local/v1",
                    api_key="sk-test",
                    http_client=http,
                    max_retries=0,
                    _strict_response_validation=True,
                )
                whole = await client.chat.completions.create(model="mock-gpt", messages=USER)
                stream = await client.chat.completions.create(
                    model="mock-gpt", messages=USER, stream=True
                )
                text = "".join([c.choices[0].delta.content or "" async for c in stream])
                with pytest.raises(openai.APITimeoutError):
                    await client.with_options(timeout=0.3).chat.completions.create(
                        model="mock-gpt", messages=USER, extra_headers={"x-mock-fault": "hang"}
                    )
            return whole.choices[0].message.content, text, route.call_count

    whole, streamed, calls = asyncio.run(main())
    assert whole == streamed
    assert calls == 3
    assert transport.stats()["requests_total"] == 3
    assert transport.stats()["cancelled_total"] == 1
