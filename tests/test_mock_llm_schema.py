"""The mock's bodies validate against OpenAI's published schemas (an excerpt kept in tests/data)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import httpx2
import pytest
from jsonschema import Draft202012Validator

from labkit.mock_llm import MockLLM, MockLLMTransport

DATA = Path(__file__).parent / "data"
EXCERPT = DATA / "openai_chat_schemas.json"
USER = [{"role": "user", "content": "Explain connection pooling."}]


def load_extractor():
    spec = importlib.util.spec_from_file_location("extract", DATA / "extract_openai_schemas.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def schemas():
    document = json.loads(EXCERPT.read_text(encoding="utf-8"))

    def validator(name):
        return Draft202012Validator({**document, "$ref": f"#/$defs/{name}"})

    return validator


def assert_valid(validator, instance):
    problems = [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(instance)]
    assert not problems, problems


def test_excerpt_matches_the_spec_it_came_from():
    extractor = load_extractor()
    if not extractor.DEFAULT_SPEC.exists():
        pytest.skip(f"OpenAI's spec is not beside this clone ({extractor.DEFAULT_SPEC})")
    fresh = extractor.render(extractor.extract(extractor.load_spec(extractor.DEFAULT_SPEC)))
    assert fresh == EXCERPT.read_text(encoding="utf-8"), (
        "tests/data/openai_chat_schemas.json is stale: run tests/data/extract_openai_schemas.py"
    )


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


def test_in_process_bodies_validate(schemas):
    with httpx2.Client(transport=MockLLMTransport(), base_url="http://mock") as client:
        check_all_bodies(client, schemas)


def test_server_bodies_validate(schemas):
    with MockLLM(preset="instant") as llm, httpx2.Client(base_url=llm.url) as client:
        check_all_bodies(client, schemas)
