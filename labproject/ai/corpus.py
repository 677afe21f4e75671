"""A deterministic corpus of documents and chunks, generated (nothing is downloaded)."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass

DOCUMENTS = 40
CHUNKS_PER_DOCUMENT = 20
SEED = 2026

_SUBJECTS = [
    "The event loop",
    "A sync worker",
    "The connection pool",
    "An async view",
    "The ORM",
    "A cached reply",
    "The LLM provider",
    "A streaming response",
    "The load generator",
    "A database connection",
    "The rate limiter",
    "An ASGI server",
    "A thread pool",
]
_VERBS = [
    "waits on",
    "hands back",
    "reuses",
    "measures",
    "blocks",
    "caches",
    "retries",
    "streams",
    "counts",
    "shares",
    "cancels",
    "queues",
    "limits",
]
_OBJECTS = [
    "the upstream call",
    "a TCP connection",
    "the request",
    "a token budget",
    "the prompt",
    "a chunk of context",
    "the response body",
    "the worker thread",
    "a query",
    "the p95 latency",
    "an idle socket",
    "the cost per call",
    "a timeout",
]
_TOPICS = [
    "Async views",
    "Connection pooling",
    "Query planning",
    "Response caching",
    "Load testing",
    "Streaming",
    "Timeouts",
    "Cancellation",
    "Rate limits",
    "Cost tracking",
]


@dataclass(frozen=True)
class DocumentSpec:
    title: str
    chunks: tuple[str, ...]


def generate(
    documents: int = DOCUMENTS, chunks: int = CHUNKS_PER_DOCUMENT, seed: int = SEED
) -> Iterator[DocumentSpec]:
    """Yield the same documents for the same arguments, on every machine."""
    rng = random.Random(seed)
    for number in range(1, documents + 1):
        topic = _TOPICS[(number - 1) % len(_TOPICS)]
        title = f"{topic}, note {number}"
        yield DocumentSpec(title, tuple(_paragraph(rng) for _ in range(chunks)))


def _paragraph(rng: random.Random) -> str:
    sentences = [
        f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}."
        for _ in range(rng.randint(2, 4))
    ]
    return " ".join(sentences)
