"""A locked mock (the grader's): admin calls need its token, replies are salted, no per-call
settings — so a sandboxed notebook can neither read nor reset its counters, nor produce a
reply without calling it."""

from __future__ import annotations

import urllib.error
import urllib.request

import openai
import pytest

from labkit.mock_llm import MockLLM, reply_for

HI = [{"role": "user", "content": "Hi"}]


@pytest.fixture(scope="module")
def locked():
    with MockLLM(preset="instant", admin_token="t0ken-for-tests", reply_salt="salt-1") as llm:
        yield llm


def test_admin_calls_need_the_token(locked):
    for path in ("/_mock/stats", "/_mock/config"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(locked.url + path, timeout=5)
        assert refused.value.code == 403
        refused.value.close()
    assert "requests_total" in locked.stats()  # the owner's client sends the token


def test_replies_are_salted_so_they_cannot_be_computed_offline(locked):
    with openai.OpenAI(base_url=locked.base_url, api_key="any", max_retries=0) as client:
        got = client.chat.completions.create(model="mock-gpt", messages=HI)
        again = client.chat.completions.create(model="mock-gpt", messages=HI)
    assert got.choices[0].message.content != reply_for("mock-gpt", HI).text
    assert again.choices[0].message.content == got.choices[0].message.content


def test_per_call_settings_are_refused(locked):
    with openai.OpenAI(base_url=locked.base_url, api_key="any", max_retries=0) as client:
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(
                model="mock-gpt", messages=HI, extra_headers={"x-mock-latency": "0"}
            )
        with pytest.raises(openai.PermissionDeniedError):
            client.chat.completions.create(
                model="mock-gpt", messages=HI, extra_body={"mock": {"latency_s": 0}}
            )


def test_an_unlocked_mock_is_unchanged():
    with MockLLM(preset="instant") as llm:
        with openai.OpenAI(base_url=llm.base_url, api_key="any", max_retries=0) as client:
            got = client.chat.completions.create(model="mock-gpt", messages=HI)
        assert got.choices[0].message.content == reply_for("mock-gpt", HI).text
        with urllib.request.urlopen(llm.url + "/_mock/stats", timeout=5) as answer:
            assert answer.status == 200
