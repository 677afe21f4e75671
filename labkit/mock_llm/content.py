"""What the mock says: a deterministic reply for each request, and a token count for any text.

The tokenizer is an approximation of OpenAI's BPE, good enough for budgets and rate limits: a
token is a run of up to 8 letters or digits, or one punctuation mark, with the whitespace in
front of it. It is lossless (the tokens of a text join back into the text), so a streamed reply
is exactly its tokens, one per chunk, and streamed and non-streamed usage agree by construction.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

_TOKEN = re.compile(r"\s*(?:\w{1,8}|[^\w\s])|\s+")

# OpenAI's cookbook counts 3 tokens of framing per chat message and 3 more to prime the reply.
TOKENS_PER_MESSAGE = 3
TOKENS_PER_NAME = 1
TOKENS_REPLY_PRIMING = 3
# A non-text part (image, audio, file) costs a flat amount, like a low-detail image does.
TOKENS_PER_MEDIA_PART = 85

_SUBJECTS = (
    "The view", "An async view", "The event loop", "Each worker", "The connection pool",
    "A cached answer", "The database", "This request", "The upstream model", "Every thread",
    "A streamed reply", "The load test", "One shared client", "The ORM query", "The timeout",
)  # fmt: skip
_VERBS = (
    "waits for", "reuses", "returns", "streams", "measures", "serves", "awaits", "schedules",
    "caches", "retries", "cancels", "batches", "bounds", "logs", "shares",
)  # fmt: skip
_OBJECTS = (
    "the upstream call", "a pooled connection", "the next token", "the summary",
    "many requests", "the slow query", "a short answer", "the first byte", "its budget",
    "the reply", "each prompt", "the document", "a warm cache", "the rate limit", "the socket",
)  # fmt: skip
_ENDINGS = (
    ".", " quickly.", " without blocking.", " in parallel.", " once per prompt.", " under load.",
    " within the timeout.", " as tokens arrive.", " before the deadline.", " for every user.",
)  # fmt: skip


def tokenize(text: str) -> list[str]:
    """Split text into tokens that join back into exactly the same text."""
    return _TOKEN.findall(text)


def count_tokens(text: str) -> int:
    """Approximate how many tokens OpenAI's tokenizer would count in text."""
    return len(_TOKEN.findall(text))


def prompt_tokens(messages: Sequence[Mapping[str, Any]]) -> int:
    """Count the prompt tokens of validated chat messages, framing included."""
    total = TOKENS_REPLY_PRIMING
    for message in messages:
        total += TOKENS_PER_MESSAGE + count_tokens(str(message.get("role", "")))
        if message.get("name"):
            total += TOKENS_PER_NAME + count_tokens(str(message["name"]))
        total += _content_tokens(message.get("content"))
        for call in message.get("tool_calls") or ():
            function = call.get("function") if isinstance(call, Mapping) else None
            total += count_tokens(json.dumps(function, sort_keys=True, default=str))
    return total


def _content_tokens(content: object) -> int:
    if isinstance(content, str):
        return count_tokens(content)
    if isinstance(content, list):
        total = 0
        for part in content:
            text = part.get("text") if isinstance(part, Mapping) else None
            total += count_tokens(text) if isinstance(text, str) else TOKENS_PER_MEDIA_PART
        return total
    return 0


@dataclass(frozen=True)
class Reply:
    """The assistant's answer: its tokens and why it stopped (`stop` or `length`)."""

    tokens: tuple[str, ...]
    finish_reason: str

    @property
    def text(self) -> str:
        return "".join(self.tokens)

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)


def reply_for(
    model: str,
    messages: Sequence[Mapping[str, Any]],
    seed: int | None = None,
    max_tokens: int | None = None,
    length: tuple[int, int] = (20, 60),
) -> Reply:
    """Return the reply the mock gives: same model, messages and seed, same words.

    >>> reply_for("mock-gpt", [{"role": "user", "content": "Hi"}]).text[:18]
    'Mock reply to “Hi”'
    """
    # Keys are sorted so that equal requests hash equally whatever order their JSON came in.
    key = json.dumps([model, messages, seed], sort_keys=True, ensure_ascii=False, default=str)
    digest = hashlib.blake2b(key.encode(), digest_size=16).digest()
    excerpt = " ".join(_last_user_text(messages).split()[:8])
    if len(excerpt) > 60:
        excerpt = excerpt[:59] + "…"
    tokens = _full_reply(digest, excerpt, length)
    if max_tokens is not None and len(tokens) > max_tokens:
        return Reply(tokens[:max_tokens], "length")
    return Reply(tokens, "stop")


# Load tests send the same prompt thousands of times; generating its reply once keeps the
# mock's CPU cost per request low (DESIGN: it must sustain 150+ req/s on one core).
@lru_cache(maxsize=2048)
def _full_reply(digest: bytes, excerpt: str, length: tuple[int, int]) -> tuple[str, ...]:
    rng = random.Random(digest)
    target = rng.randint(*length)
    text = f"Mock reply to “{excerpt}”." if excerpt else "Mock reply."
    while count_tokens(text) < target:
        text += " " + _sentence(rng)
    return tuple(tokenize(text))


def _sentence(rng: random.Random) -> str:
    return (
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{rng.choice(_ENDINGS)}"
    )


def _last_user_text(messages: Sequence[Mapping[str, Any]]) -> str:
    for message in reversed(messages):
        if message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            texts = [p.get("text") for p in content if isinstance(p, Mapping)]
            return " ".join(t for t in texts if isinstance(t, str))
    return ""
