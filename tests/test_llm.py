"""The project's LLM helpers read both of OpenAI's APIs: chat completions and the Responses API."""

from __future__ import annotations

import openai
import pytest
from openai.types.responses import Response, ResponseError

from labproject.ai.llm import (
    CallRecord,
    ResponseFailed,
    failure_from,
    messages_for,
    raise_if_failed,
    token_counts,
)

PROMPT = "What does a pooled client save?"
SYSTEM = "Answer briefly."

pytestmark = pytest.mark.usefixtures("mock_llm")


@pytest.fixture
def client(mock_llm):
    mock_llm.reset(config=True)
    with openai.OpenAI(
        base_url=mock_llm.base_url, api_key="sk-test", max_retries=0, timeout=1.0
    ) as sdk:
        yield sdk


def test_a_response_fills_the_record_as_a_chat_completion_does(client):
    messages = messages_for(PROMPT, SYSTEM)
    chat = CallRecord(endpoint="chat", prompt=PROMPT).succeeded(
        client.chat.completions.create(model="mock-gpt", messages=messages)
    )
    whole = client.responses.create(model="mock-gpt", input=PROMPT, instructions=SYSTEM)
    response = CallRecord(endpoint="chat", prompt=PROMPT).succeeded(whole)
    assert response.reply == whole.output_text == chat.reply
    assert (response.prompt_tokens, response.completion_tokens) == (
        whole.usage.input_tokens,
        whole.usage.output_tokens,
    )
    assert (response.prompt_tokens, response.completion_tokens) == (
        chat.prompt_tokens,
        chat.completion_tokens,
    )
    assert response.prompt_tokens > 0 and response.completion_tokens > 0
    fields = response.fields()
    assert fields["model"] == "mock-gpt" and fields["ok"] and fields["reply"] == chat.reply


def test_a_streamed_response_is_recorded_from_its_last_event(client):
    events = list(client.responses.create(model="mock-gpt", input=PROMPT, stream=True))
    record = CallRecord(endpoint="stream", prompt=PROMPT).succeeded(events[-1].response)
    deltas = [event.delta for event in events if event.type == "response.output_text.delta"]
    assert record.reply == "".join(deltas)
    assert record.completion_tokens == len(deltas)


def test_token_counts_of_a_result_without_usage_are_zero():
    response = Response.model_construct(object="response", usage=None, model="m", output=[])
    assert token_counts(response) == (0, 0)


@pytest.mark.parametrize(
    ("fault", "status", "code"),
    [
        ("503", 503, "llm_unavailable"),
        ("500", 503, "llm_unavailable"),
        ("hang", 504, "llm_timeout"),
        ("cut", 502, "llm_unreachable"),
        ("malformed", 502, "llm_bad_response"),
    ],
)
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_faults_map_to_the_same_answers_whichever_api_raised_them(
    client, mock_llm, api, fault, status, code
):
    headers = {"x-mock-fault": fault}
    with pytest.raises(Exception) as raised:
        if api == "chat":
            client.chat.completions.create(
                model="mock-gpt", messages=messages_for(PROMPT), extra_headers=headers
            )
        else:
            client.responses.create(model="mock-gpt", input=PROMPT, extra_headers=headers)
    failure = failure_from(raised.value)
    assert (failure.status, failure.code) == (status, code), repr(raised.value)
    assert mock_llm.stats()["faults"] == {fault: 1}


def test_a_rate_limited_response_keeps_the_retry_after(client, mock_llm):
    mock_llm.configure(rpm=1, rate_window_s=30)
    client.responses.create(model="mock-gpt", input=PROMPT)
    with pytest.raises(openai.RateLimitError) as refused:
        client.responses.create(model="mock-gpt", input=PROMPT)
    failure = failure_from(refused.value)
    assert (failure.status, failure.code) == (429, "llm_rate_limited")
    assert 25 <= int(failure.retry_after) <= 30
    assert failure.response()["Retry-After"] == failure.retry_after


def test_a_response_that_failed_with_a_200_is_a_fault_too(client):
    ok = client.responses.create(model="mock-gpt", input=PROMPT)
    assert raise_if_failed(ok) is ok
    failed = ok.model_copy(
        update={"status": "failed", "error": ResponseError(code="server_error", message="boom")}
    )
    with pytest.raises(ResponseFailed) as raised:
        raise_if_failed(failed)
    failure = failure_from(raised.value)
    assert (failure.status, failure.code) == (502, "llm_failed")
    assert "server_error" in failure.message
    chat = client.chat.completions.create(model="mock-gpt", messages=messages_for(PROMPT))
    assert raise_if_failed(chat) is chat
