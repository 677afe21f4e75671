"""The mock's bodies validate against OpenAI's published schemas (excerpts kept in tests/data)."""

from __future__ import annotations

import functools
import importlib.util
import json
from pathlib import Path

import httpx2
import pytest
from jsonschema import Draft202012Validator

from labkit.mock_llm import MockLLM, MockLLMTransport

DATA = Path(__file__).parent / "data"
EXCERPT = DATA / "openai_chat_schemas.json"
RESPONSES_EXCERPT = DATA / "openai_responses_schemas.json"
USER = [{"role": "user", "content": "Explain connection pooling."}]
# The schema of each stream event the mock sends on /v1/responses, by its `type`.
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
}


def load_extractor():
    spec = importlib.util.spec_from_file_location("extract", DATA / "extract_openai_schemas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def validators(path):
    document = json.loads(path.read_text(encoding="utf-8"))

    @functools.cache  # building one takes a while with the Responses excerpt's 300 schemas
    def validator(name):
        return Draft202012Validator({**document, "$ref": f"#/$defs/{name}"})

    return validator


@pytest.fixture(scope="module")
def schemas():
    return validators(EXCERPT)


@pytest.fixture(scope="module")
def responses_schemas():
    return validators(RESPONSES_EXCERPT)


def assert_valid(validator, instance):
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]
    assert not problems, problems


def test_excerpts_match_the_spec_they_came_from():
    extractor = load_extractor()
    assert set(extractor.EXCERPTS) == {EXCERPT.name, RESPONSES_EXCERPT.name}
    if not extractor.DEFAULT_SPEC.exists():
        pytest.skip(f"OpenAI's spec is not beside this clone ({extractor.DEFAULT_SPEC})")
    spec = extractor.load_spec(extractor.DEFAULT_SPEC)
    for name, roots in extractor.EXCERPTS.items():
        fresh = extractor.render(extractor.extract(spec, roots))
        assert fresh == (DATA / name).read_text(encoding="utf-8"), (
            f"tests/data/{name} is stale: run tests/data/extract_openai_schemas.py"
        )


def test_the_responses_excerpt_covers_the_endpoint():
    document = json.loads(RESPONSES_EXCERPT.read_text(encoding="utf-8"))
    assert {"CreateResponse", "Response", "ResponseStreamEvent", "ErrorResponse"} <= set(
        document["roots"]
    )
    assert set(EVENT_SCHEMAS.values()) <= set(document["$defs"])


def test_excerpt_allows_null_where_the_spec_says_nullable():
    extractor = load_extractor()
    converted = extractor.convert({"type": "string", "nullable": True, "description": "x"})
    assert converted == {"anyOf": [{"type": "string"}, {"type": "null"}]}
    properties = extractor.convert({"properties": {"description": {"type": "string"}}})
    assert "description" in properties["properties"]  # a property may be called description


def test_the_validator_rejects_a_wrong_chunk(schemas):
    """Guard against a schema that accepts anything."""
    chunk = {
        "id": "c",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "m",
        "choices": [{"index": 0, "delta": {}, "finish_reason": None}],
    }
    assert_valid(schemas("CreateChatCompletionStreamResponse"), chunk)
    chunk["choices"][0]["finish_reason"] = "done"
    assert list(schemas("CreateChatCompletionStreamResponse").iter_errors(chunk))
    del chunk["choices"][0]["delta"]
    chunk["choices"][0]["finish_reason"] = None
    assert list(schemas("CreateChatCompletionStreamResponse").iter_errors(chunk))


def test_the_validator_rejects_a_wrong_responses_event(responses_schemas):
    """Guard against a schema that accepts anything."""
    event = {
        "type": "response.output_text.delta",
        "item_id": "msg_1",
        "output_index": 0,
        "content_index": 0,
        "delta": "Hi",
        "logprobs": [],
        "sequence_number": 4,
    }
    for name in ("ResponseTextDeltaEvent", "ResponseStreamEvent"):
        assert_valid(responses_schemas(name), event)
        assert list(responses_schemas(name).iter_errors({**event, "delta": None}))
        assert list(responses_schemas(name).iter_errors({**event, "type": "response.delta"}))
    no_usage = {"object": "response", "id": "r", "created_at": 1, "output": [], "usage": None}
    assert list(responses_schemas("Response").iter_errors(no_usage))


def sse_events(text):
    return [block.removeprefix("data: ") for block in text.split("\n\n") if block]


def check_all_bodies(client, schemas):
    completion = client.post("/v1/chat/completions", json={"model": "mock-gpt", "messages": USER})
    assert completion.status_code == 200
    assert_valid(schemas("CreateChatCompletionResponse"), completion.json())

    for include_usage in (False, True):
        body = {"model": "mock-gpt", "messages": USER, "stream": True, "max_tokens": 7}
        if include_usage:
            body["stream_options"] = {"include_usage": True}
        events = sse_events(client.post("/v1/chat/completions", json=body).text)
        assert events[-1] == "[DONE]"
        chunks = [json.loads(event) for event in events[:-1]]
        for chunk in chunks:
            assert_valid(schemas("CreateChatCompletionStreamResponse"), chunk)
        assert chunks[-2 if include_usage else -1]["choices"][0]["finish_reason"] == "length"
        assert (chunks[-1].get("usage") is not None) == include_usage

    models = client.get("/v1/models").json()
    assert_valid(schemas("ListModelsResponse"), models)
    assert_valid(schemas("Model"), client.get("/v1/models/mock-gpt").json())

    bad_requests = [
        client.post("/v1/chat/completions", content=b"{nope"),
        client.post("/v1/chat/completions", json={"model": "mock-gpt"}),
        client.post("/v1/chat/completions", json={"model": "nope", "messages": USER}),
        client.get("/v1/chat/completions"),
        client.get("/v2/everything"),
        client.post(
            "/v1/chat/completions",
            json={"model": "mock-gpt", "messages": USER},
            headers={"x-mock-fault": "503"},
        ),
    ]
    for response in bad_requests:
        assert response.status_code >= 400
        assert_valid(schemas("ErrorResponse"), response.json())


def responses_events(text):
    """The (event name, data) pairs of a Responses stream."""
    pairs = []
    for block in text.split("\n\n"):
        if block:
            name, data = block.split("\n")
            pairs.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return pairs


def check_responses_bodies(client, schemas):
    requests = [
        {"model": "mock-gpt", "input": "Explain connection pooling."},
        {"model": "mock-gpt", "input": USER, "instructions": "Be brief.", "max_output_tokens": 16},
    ]
    for body in requests:
        assert_valid(schemas("CreateResponse"), body)  # what the tests send is a real request
        whole = client.post("/v1/responses", json=body)
        assert whole.status_code == 200
        assert_valid(schemas("Response"), whole.json())
        streamed = client.post("/v1/responses", json={**body, "stream": True})
        kinds = set()
        for name, event in responses_events(streamed.text):
            assert name == event["type"]
            kinds.add(name)
            assert_valid(schemas(EVENT_SCHEMAS[name]), event)
            if name != "response.output_text.delta":  # the union is slow: check one delta
                assert_valid(schemas("ResponseStreamEvent"), event)
        final = "response.incomplete" if "max_output_tokens" in body else "response.completed"
        assert kinds == set(EVENT_SCHEMAS) - (
            {"response.incomplete", "response.completed"} - {final}
        )

    bad_requests = [
        client.post("/v1/responses", content=b"{nope"),
        client.post("/v1/responses", json={"model": "mock-gpt"}),
        client.post("/v1/responses", json={"model": "nope", "input": "x"}),
        client.post("/v1/responses", json={"model": "mock-gpt", "input": "x"},
                    headers={"x-mock-fault": "500"}),
    ]  # fmt: skip
    for response in bad_requests:
        assert response.status_code >= 400
        assert_valid(schemas("ErrorResponse"), response.json())


def test_in_process_bodies_validate(schemas, responses_schemas):
    with httpx2.Client(transport=MockLLMTransport(), base_url="http://mock") as client:
        check_all_bodies(client, schemas)
        check_responses_bodies(client, responses_schemas)


def test_server_bodies_validate(schemas, responses_schemas):
    with MockLLM(preset="instant") as llm, httpx2.Client(base_url=llm.url) as client:
        check_all_bodies(client, schemas)
        check_responses_bodies(client, responses_schemas)
