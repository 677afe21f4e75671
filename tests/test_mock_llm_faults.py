"""Rate limits and injected faults as the official SDK meets them over TCP."""

from __future__ import annotations

import asyncio
import time

import httpx2
import openai
import pytest

from labkit.mock_llm import MockLLM

USER = [{"role": "user", "content": "Is this call going to fail?"}]


@pytest.fixture(scope="module")
def llm():
    with MockLLM(preset="instant") as server:
        yield server


@pytest.fixture(autouse=True)
def fresh(llm):
    llm.reset(config=True)
    yield
    assert "Traceback" not in llm.stderr_text(), llm.stderr_text()


class Seen:
    """An httpx2 response hook that records every status the client received."""

    def __init__(self) -> None:
        self.statuses: list[int] = []

    def __call__(self, response: httpx2.Response) -> None:
        self.statuses.append(response.status_code)


def client(llm, seen=None, **options):
    hooks = {"response": [seen]} if seen else {}
    return openai.OpenAI(
        base_url=llm.base_url,
        api_key="sk-test",
        http_client=openai.DefaultHttpxClient(event_hooks=hooks),
        _strict_response_validation=True,
        **options,
    )


def test_sdk_retries_429_after_retry_after_and_succeeds(llm):
    llm.configure(rpm=2, rate_window_s=1)  # one request every 0.5 s, bursts of 2
    seen = Seen()
    started = time.perf_counter()
    with client(llm, seen) as sdk:  # default policy: max_retries=2
        for _ in range(4):
            assert sdk.chat.completions.create(model="mock-gpt", messages=USER).choices
    elapsed = time.perf_counter() - started
    refused = seen.statuses.count(429)
    assert refused >= 2  # calls 3 and 4 each met the limit
    assert seen.statuses.count(200) == 4
    assert elapsed >= 0.8  # it waited as told, twice ~0.5 s
    stats = llm.stats()
    assert stats["rate_limited_total"] == refused
    assert stats["requests_total"] == len(seen.statuses)
    assert stats["statuses"] == {"200": 4, "429": refused}


def test_without_retries_a_429_is_a_rate_limit_error_with_openai_headers(llm):
    llm.configure(rpm=1, rate_window_s=30)
    with client(llm, max_retries=0) as sdk:
        sdk.chat.completions.create(model="mock-gpt", messages=USER)
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(model="mock-gpt", messages=USER)
    error = refused.value
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    headers = error.response.headers
    assert 25 <= int(headers["retry-after"]) <= 30
    assert 25_000 <= int(headers["retry-after-ms"]) <= 30_000
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert headers["x-ratelimit-reset-requests"].endswith("s")
    assert llm.stats()["rate_limited_total"] == 1


def test_token_limit_and_a_request_too_large_to_ever_fit(llm):
    llm.configure(tpm=100, rate_window_s=60, reply_tokens=50)  # each call costs 60-70 tokens
    with client(llm, max_retries=0) as sdk:
        sdk.chat.completions.create(model="mock-gpt", messages=USER)
        with pytest.raises(openai.RateLimitError) as refused:
            sdk.chat.completions.create(model="mock-gpt", messages=USER)
    assert refused.value.type == "tokens"
    assert refused.value.response.headers["x-ratelimit-limit-tokens"] == "100"
    llm.configure(tpm=20)
    seen = Seen()
    with client(llm, seen) as sdk:  # default retries, but x-should-retry: false stops them
        with pytest.raises(openai.RateLimitError, match="Request too large"):
            sdk.chat.completions.create(model="mock-gpt", messages=USER)
    assert seen.statuses == [429]


def test_server_errors_are_retried_then_raised_and_counted(llm):
    llm.configure(faults={"503": 1.0})
    seen = Seen()
    with client(llm, seen) as sdk, pytest.raises(openai.InternalServerError) as failed:
        sdk.with_options(max_retries=1).chat.completions.create(model="mock-gpt", messages=USER)
    assert failed.value.status_code == 503
    assert seen.statuses == [503, 503]
    stats = llm.stats()
    assert stats["faults"] == {"503": 2} and stats["errors_total"] == 2
    assert stats["models"]["mock-gpt"]["errors"] == 2


def test_fault_rates_hold_and_counters_match_the_client(llm):
    llm.configure(faults={"500": 0.3}, seed=1)
    with httpx2.Client(base_url=llm.url) as raw:
        statuses = [
            raw.post(
                "/v1/chat/completions", json={"model": "mock-gpt", "messages": USER}
            ).status_code
            for _ in range(60)
        ]
    assert 6 <= statuses.count(500) <= 32  # 18 expected; a 5-sigma band
    assert llm.stats()["faults"] == {"500": statuses.count(500)}


def test_a_hang_trips_the_client_timeout_and_is_cancelled(llm):
    with client(llm, max_retries=0, timeout=0.4) as sdk:
        started = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            sdk.chat.completions.create(
                model="mock-gpt", messages=USER, extra_headers={"x-mock-fault": "hang"}
            )
        assert time.perf_counter() - started < 2
    deadline = time.perf_counter() + 1
    while llm.stats()["in_flight"] and time.perf_counter() < deadline:
        time.sleep(0.02)
    stats = llm.stats()
    assert stats["in_flight"] == 0 and stats["cancelled_total"] == 1


@pytest.mark.parametrize("stream", [False, True])
def test_a_cut_body_is_a_connection_error(llm, stream):
    llm.configure(fault="cut")
    with client(llm, max_retries=0) as sdk, pytest.raises(openai.APIConnectionError):
        response = sdk.chat.completions.create(model="mock-gpt", messages=USER, stream=stream)
        if stream:
            chunks = []
            for chunk in response:
                chunks.append(chunk)
            pytest.fail(f"the stream ended cleanly after {len(chunks)} chunks")
    assert llm.stats()["faults"] == {"cut": 1}


def test_a_cut_stream_delivers_half_the_reply_first(llm):
    with httpx2.Client(base_url=llm.url) as raw:
        body = {"model": "mock-gpt", "messages": USER, "stream": True}
        whole = raw.post("/v1/chat/completions", json=body).text
        received = []
        with pytest.raises(httpx2.RemoteProtocolError):
            with raw.stream(
                "POST", "/v1/chat/completions", json=body, headers={"x-mock-fault": "cut"}
            ) as response:
                for text in response.iter_text():
                    received.append(text)
    events, cut = whole.count("data: "), "".join(received).count("data: ")
    assert 2 <= cut < events - 2


@pytest.mark.parametrize("stream", [False, True])
def test_malformed_json_cannot_be_parsed(llm, stream):
    with client(llm, max_retries=0) as sdk, pytest.raises(ValueError):  # JSONDecodeError
        response = sdk.chat.completions.create(
            model="mock-gpt",
            messages=USER,
            stream=stream,
            extra_body={"mock": {"fault": "malformed"}},
        )
        if stream:
            for _chunk in response:
                pass
    stats = llm.stats()
    assert stats["faults"] == {"malformed": 1} and stats["errors_total"] == 1


def test_async_client_sees_the_same_faults_and_none_overrides_the_rates(llm):
    llm.configure(faults={"503": 1.0})

    async def main():
        async with openai.AsyncOpenAI(
            base_url=llm.base_url, api_key="sk-test", max_retries=0
        ) as sdk:
            with pytest.raises(openai.InternalServerError):
                await sdk.chat.completions.create(
                    model="mock-gpt", messages=USER, extra_headers={"x-mock-fault": "500"}
                )
            ok = await sdk.chat.completions.create(
                model="mock-gpt", messages=USER, extra_headers={"x-mock-fault": "none"}
            )
            return ok

    assert asyncio.run(main()).choices[0].message.content
    assert llm.stats()["faults"] == {"500": 1}  # the forced one; "none" beat the 503 rate
