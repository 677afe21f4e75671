"""POST /v1/responses over TCP: the official SDK parses it strictly; limits, faults and errors."""

from __future__ import annotations

import asyncio
import json
import time

import httpx2
import openai
import pytest

from labkit.mock_llm import MockLLM

PROMPT = "Why does a sync view block?"
INSTRUCTIONS = "Answer in one paragraph."
SECRET = "sk-do-not-leak-51c0de"
DELTA = "response.output_text.delta"
OPENING = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
]
CLOSING = ["response.output_text.done", "response.content_part.done", "response.output_item.done"]


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
    options = {"api_key": SECRET, **options}
    return openai.OpenAI(base_url=llm.base_url, _strict_response_validation=True, **options)


def async_client(llm, **options):
    return openai.AsyncOpenAI(
        base_url=llm.base_url, api_key=SECRET, _strict_response_validation=True, **options
    )


def assert_event_sequence(events, final):
    """OpenAI's order: four opening events, one delta per token, three `.done`s, the end."""
    kinds = [event.type for event in events]
    deltas = [event for event in events if event.type == DELTA]
    assert kinds == [*OPENING, *[DELTA] * len(deltas), *CLOSING, final], kinds
    assert [event.sequence_number for event in events] == list(range(len(events)))
    item_id = events[2].item.id
    assert {event.item_id for event in deltas} == {item_id}
    assert events[0].response.status == "in_progress" and events[0].response.usage is None
    text = "".join(event.delta for event in deltas)
    assert events[-4].text == text == events[-1].response.output_text
    assert len(deltas) == events[-1].response.usage.output_tokens
    return events[-1].response


def test_sync_sdk_streamed_and_not(llm):
    with sync_client(llm) as client:
        whole = client.responses.create(model="mock-gpt", input=PROMPT, instructions=INSTRUCTIONS)
        events = list(
            client.responses.create(
                model="mock-gpt", input=PROMPT, instructions=INSTRUCTIONS, stream=True
            )
        )
    assert whole.object == "response" and whole.status == "completed"
    assert whole.output_text.startswith("Mock reply to")
    assert whole.instructions == INSTRUCTIONS and whole.incomplete_details is None
    usage = whole.usage
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    final = assert_event_sequence(events, "response.completed")
    assert final.output_text == whole.output_text and final.usage == usage
    stats = llm.stats()
    assert stats["endpoints"] == {"/v1/responses": 2} and stats["streams_total"] == 1
    assert stats["completion_tokens_total"] == 2 * usage.output_tokens


def test_async_sdk_streamed_and_not_stops_at_max_output_tokens(llm):
    async def main():
        async with async_client(llm) as client:
            whole = await client.responses.create(
                model="gpt-4o-mini", input=PROMPT, max_output_tokens=16
            )
            stream = await client.responses.create(
                model="gpt-4o-mini", input=PROMPT, max_output_tokens=16, stream=True
            )
            return whole, [event async for event in stream]

    whole, events = asyncio.run(main())
    assert whole.status == "incomplete" and whole.model == "gpt-4o-mini"
    assert whole.incomplete_details.reason == "max_output_tokens"
    assert whole.usage.output_tokens == 16 and whole.max_output_tokens == 16
    final = assert_event_sequence(events, "response.incomplete")
    assert final.output_text == whole.output_text
    assert final.output[0].status == "incomplete"
    assert llm.stats()["models"]["gpt-4o-mini"] == {
        "requests": 2,
        "errors": 0,
        "prompt_tokens": 2 * whole.usage.input_tokens,
        "completion_tokens": 32,
    }


def test_the_sdk_stream_helper_assembles_the_final_response(llm):
    with sync_client(llm) as client:
        with client.responses.stream(model="mock-gpt", input=PROMPT) as stream:
            text = "".join(event.delta for event in stream if event.type == DELTA)
            final = stream.get_final_response()
    assert final.output_text == text and final.status == "completed"


def test_one_prompt_gets_the_same_reply_and_tokens_from_both_apis(llm):
    messages = [{"role": "system", "content": INSTRUCTIONS}, {"role": "user", "content": PROMPT}]
    with sync_client(llm) as client:
        chat = client.chat.completions.create(model="mock-gpt", messages=messages)
        response = client.responses.create(
            model="mock-gpt", input=PROMPT, instructions=INSTRUCTIONS
        )
        listed = client.responses.create(model="mock-gpt", input=messages)
    assert response.output_text == chat.choices[0].message.content == listed.output_text
    assert response.usage.input_tokens == chat.usage.prompt_tokens
    assert response.usage.output_tokens == chat.usage.completion_tokens
    assert llm.stats()["endpoints"] == {"/v1/chat/completions": 1, "/v1/responses": 2}


def test_stream_body_ends_with_its_last_event_so_connections_are_reused(llm, raw):
    body = {"model": "mock-gpt", "input": PROMPT, "stream": True}
    response = raw.post("/v1/responses", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    blocks = response.text.split("\n\n")
    assert blocks[-1] == "" and blocks[-2].startswith("event: response.completed\ndata: {")
    assert "[DONE]" not in response.text

    async def three_streams():
        async with async_client(llm) as client:
            for _ in range(3):
                async for _event in await client.responses.create(**body):
                    pass

    llm.reset()
    asyncio.run(three_streams())
    assert llm.stats()["connections_total"] == 1


def test_the_latency_model_and_per_call_overrides_apply(llm):
    llm.configure(latency_s=0.4)
    with sync_client(llm) as client:
        client.models.list()  # warm the connection
        started = time.perf_counter()
        client.responses.create(model="mock-gpt", input=PROMPT)
        slow = time.perf_counter() - started
        started = time.perf_counter()
        client.responses.create(
            model="mock-gpt", input=PROMPT, extra_headers={"x-mock-latency": "instant"}
        )
        fast = time.perf_counter() - started
    assert slow >= 0.4 and fast < slow / 2, (slow, fast)


USER_ITEM = {"role": "user", "content": PROMPT}
BAD_INPUT = [
    # (what, body, status, code, param)
    ("unparseable body", b'{"model": ', 400, None, None),
    ("empty body", b"", 400, None, None),
    ("body an array", [1], 400, "invalid_type", "body"),
    ("missing model", {"input": PROMPT}, 400, "missing_required_parameter", "model"),
    ("missing input", {"model": "mock-gpt"}, 400, "missing_required_parameter", "input"),
    ("input a number", {"model": "mock-gpt", "input": 3}, 400, "invalid_type", "input"),
    ("empty input", {"model": "mock-gpt", "input": []}, 400, "invalid_value", "input"),
    ("item not an object", {"model": "mock-gpt", "input": ["hi"]}, 400, "invalid_type",
     "input[0]"),
    ("bad role", {"model": "mock-gpt", "input": [{"role": "tool", "content": "x"}]}, 400,
     "invalid_value", "input[0].role"),
    ("content a number", {"model": "mock-gpt", "input": [{"role": "user", "content": 5}]},
     400, "invalid_type", "input[0].content"),
    ("max_output_tokens below 16", {"model": "mock-gpt", "input": PROMPT,
     "max_output_tokens": 15}, 400, "integer_below_min_value", "max_output_tokens"),
    ("stream not a boolean", {"model": "mock-gpt", "input": PROMPT, "stream": "yes"}, 400,
     "invalid_type", "stream"),
    ("stream_options without stream", {"model": "mock-gpt", "input": PROMPT,
     "stream_options": {"include_obfuscation": False}}, 400, "invalid_value", "stream_options"),
    ("a previous response", {"model": "mock-gpt", "input": PROMPT,
     "previous_response_id": "resp_1"}, 400, "previous_response_not_found",
     "previous_response_id"),
    ("bad per-call setting", {"model": "mock-gpt", "input": PROMPT, "mock": {"rpm": 1}}, 400,
     "invalid_value", "mock"),
    ("unknown model", {"model": "gpt-17", "input": [USER_ITEM]}, 404, "model_not_found",
     "model"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("what", "body", "status", "code", "param"), BAD_INPUT, ids=[case[0] for case in BAD_INPUT]
)
def test_bad_input_gets_an_openai_shaped_error(raw, what, body, status, code, param):
    content = body if isinstance(body, bytes) else json.dumps(body)
    response = raw.post("/v1/responses", content=content)
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert (error["code"], error["param"]) == (code, param)
    assert error["message"] and SECRET not in response.text


def test_wrong_method_is_405(raw):
    response = raw.get("/v1/responses")
    assert response.status_code == 405 and response.headers["allow"] == "POST"


def test_an_api_key_setting_makes_other_keys_a_401(llm, raw):
    llm.configure(api_key=SECRET)
    assert "api_key" not in llm.config()  # write-only: never shown
    with sync_client(llm, api_key="sk-wrong", max_retries=0) as client:
        with pytest.raises(openai.AuthenticationError) as wrong:
            client.responses.create(model="mock-gpt", input=PROMPT)
    assert wrong.value.status_code == 401 and wrong.value.code == "invalid_api_key"
    with httpx2.Client(base_url=llm.url) as keyless:
        missing = keyless.post("/v1/chat/completions", json={"model": "m", "messages": []})
    assert missing.status_code == 401 and "didn't provide an API key" in missing.text
    assert set(missing.json()["error"]) == {"message", "type", "param", "code"}
    assert raw.post("/v1/responses", json={"model": "mock-gpt", "input": PROMPT}).is_success
    assert SECRET not in json.dumps(llm.stats()) + llm.stderr_text()
    assert llm.stats()["statuses"] == {"200": 1, "401": 2}


def test_a_429_carries_retry_after_and_the_sdk_raises_rate_limit_error(llm):
    llm.configure(rpm=1, rate_window_s=30)
    with sync_client(llm, max_retries=0) as client:
        client.responses.create(model="mock-gpt", input=PROMPT)
        with pytest.raises(openai.RateLimitError) as refused:
            client.responses.create(model="mock-gpt", input=PROMPT, stream=True)
    error = refused.value
    assert error.code == "rate_limit_exceeded" and error.type == "requests"
    assert 25 <= int(error.response.headers["retry-after"]) <= 30
    assert llm.stats()["rate_limited_total"] == 1


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize(
    ("fault", "raised"),
    [
        ("500", openai.InternalServerError),
        ("503", openai.InternalServerError),
        ("cut", openai.APIConnectionError),
        ("malformed", ValueError),  # JSONDecodeError
        ("hang", openai.APITimeoutError),
    ],
)
def test_faults_reach_the_sdk_as_they_do_for_chat(llm, fault, raised, stream):
    with sync_client(llm, max_retries=0, timeout=0.5) as client, pytest.raises(raised):
        response = client.responses.create(
            model="mock-gpt", input=PROMPT, stream=stream, extra_headers={"x-mock-fault": fault}
        )
        if stream:
            events = list(response)
            pytest.fail(f"the stream ended cleanly after {len(events)} events")
    deadline = time.perf_counter() + 1
    while llm.stats()["in_flight"] and time.perf_counter() < deadline:
        time.sleep(0.02)
    stats = llm.stats()
    assert stats["faults"] == {fault: 1} and stats["errors_total"] == 1
    assert stats["in_flight"] == 0 and stats["endpoints"] == {"/v1/responses": 1}
