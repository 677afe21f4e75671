"""The mock's replies and token counts: deterministic, lossless, consistent."""

from __future__ import annotations

import pytest

from labkit.mock_llm.content import count_tokens, prompt_tokens, reply_for, tokenize

TEXTS = [
    "",
    "Hello, world!",
    "  leading and trailing spaces  ",
    "tabs\tand\nnewlines\r\n",
    "supercalifragilisticexpialidocious",
    "naïve café — déjà vu 😀 日本語",
    "x=1; y = [2, 3]  # code?",
]


@pytest.mark.parametrize("text", TEXTS)
def test_tokens_join_back_into_the_text(text):
    assert "".join(tokenize(text)) == text
    assert count_tokens(text) == len(tokenize(text))


def test_token_count_follows_words_and_punctuation():
    assert tokenize("Hello, world!") == ["Hello", ",", " world", "!"]
    # Long words are split into pieces of at most 8 letters, as BPE splits rare words.
    assert tokenize("supercalifragilistic") == ["supercal", "ifragili", "stic"]
    assert count_tokens("one two three four") == 4


def test_prompt_tokens_count_framing_and_every_part():
    one = [{"role": "user", "content": "Hello there"}]
    # 3 to prime the reply + 3 per message + role + content.
    assert prompt_tokens(one) == 3 + 3 + 1 + 2
    two = [{"role": "system", "content": "Be brief."}, *one]
    assert prompt_tokens(two) == prompt_tokens(one) + 3 + 1 + count_tokens("Be brief.")
    parts = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hello there"},
                {"type": "image_url", "image_url": {"url": "http://x/y.png"}},
            ],
        }
    ]
    assert prompt_tokens(parts) == prompt_tokens(one) + 85


MESSAGES = [{"role": "user", "content": "Summarize the document about connection pools."}]


def test_reply_is_deterministic_in_model_messages_and_seed():
    first = reply_for("mock-gpt", MESSAGES, seed=1)
    assert reply_for("mock-gpt", [dict(m) for m in MESSAGES], seed=1) == first
    others = [
        reply_for("gpt-4o-mini", MESSAGES, seed=1),
        reply_for("mock-gpt", MESSAGES, seed=2),
        reply_for("mock-gpt", [{"role": "user", "content": "Something else"}], seed=1),
    ]
    assert all(other.text != first.text for other in others)


def test_reply_quotes_the_prompt_and_counts_its_own_tokens():
    reply = reply_for("mock-gpt", MESSAGES)
    assert reply.text.startswith("Mock reply to “Summarize the document about connection pools.”")
    assert reply.completion_tokens == count_tokens(reply.text) == len(reply.tokens)
    assert reply.finish_reason == "stop"


def test_reply_length_follows_the_configured_range():
    lengths = [
        reply_for("mock-gpt", MESSAGES, seed=seed, length=(30, 40)).completion_tokens
        for seed in range(40)
    ]
    # Sentences are whole, so a reply may run up to one sentence past the target.
    assert 30 <= min(lengths) and max(lengths) <= 40 + 12
    assert len(set(lengths)) > 3


def test_max_tokens_caps_the_reply():
    full = reply_for("mock-gpt", MESSAGES)
    capped = reply_for("mock-gpt", MESSAGES, max_tokens=5)
    assert capped.completion_tokens == 5
    assert capped.finish_reason == "length"
    assert full.text.startswith(capped.text)
    roomy = reply_for("mock-gpt", MESSAGES, max_tokens=full.completion_tokens)
    assert roomy == full
