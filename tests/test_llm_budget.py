"""LAB_LLM_MAX_TOKENS: every LLM call of the project and the kit sends the reply budget."""

from __future__ import annotations

import asyncio
import json

import pytest
from django.test import RequestFactory, override_settings

BUDGET = 17  # above the Responses API's minimum (16), below the mock's forced reply length


@pytest.fixture
def long_replies(mock_llm):
    mock_llm.reset(config=True)
    mock_llm.configure(reply_tokens=[50, 50])
    yield mock_llm
    mock_llm.reset(config=True)


def _post(prompt: str):
    return RequestFactory().post(
        "/api/chat/", json.dumps({"prompt": prompt}), content_type="application/json"
    )


def test_without_a_budget_the_reply_is_the_mock_s_full_length(long_replies):
    from labproject.ai import views

    with override_settings(LLM_MAX_TOKENS=100):
        answer = json.loads(views.chat(_post("unbounded")).content)
    assert answer["usage"]["completion_tokens"] > 2 * BUDGET


def test_the_starter_view_sends_the_budget(long_replies):
    from labproject.ai import views

    with override_settings(LLM_MAX_TOKENS=BUDGET):
        answer = json.loads(views.chat(_post("budget of the starter view")).content)
    assert answer["usage"]["completion_tokens"] == BUDGET


@pytest.mark.parametrize("api", ["chat", "responses"])
def test_the_reference_code_sends_the_budget_through_either_api(long_replies, api):
    from labkit import reference
    from labproject.ai.llm import CallRecord, messages_for

    async def ask():
        record = CallRecord(endpoint="chat", prompt="budget")
        return await reference.complete(record, messages_for(f"budget via {api}"), api=api)

    with override_settings(LLM_MAX_TOKENS=BUDGET):
        record = asyncio.run(ask())
    assert record.completion_tokens == BUDGET
