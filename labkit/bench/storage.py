"""Reads that stand between a request and its LLM call: cache hits and a document's context.

No web server here: each read runs alone, many times, so its own cost shows, with the same
code paths a view would take (Django's cache backends; the async ORM, queries counted by
`labkit.queries` in whatever thread they run).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import time
from collections.abc import Callable
from typing import Any

from labkit.bench.plan import Plan
from labkit.bench.report import row, section

CACHE_READS = 2000
QUERY_REPEATS = 30


def cache_hits(plan: Plan, mock: Any) -> dict[str, Any]:
    """p50/p99 of a cache hit, sync `get` and async `aget`, on LocMem and on a real Redis."""
    from django.core.cache.backends.locmem import LocMemCache
    from django.core.cache.backends.redis import RedisCache

    from labkit.services import ServiceError, ensure_service, release_services

    backends: dict[str, Any] = {"locmem": LocMemCache("labkit-bench", {})}
    notes, skipped = [], None
    reason = io.StringIO()
    try:
        with contextlib.redirect_stdout(reason):
            redis = ensure_service("redis")
    except ServiceError as error:  # LAB_REQUIRE_SERVICES=1: say so, but measure the rest
        redis, skipped = None, f"redis: {error}"
    if redis is not None:
        backends["redis"] = RedisCache(redis.url, {})
        notes.append(f"{redis.version} at {redis.masked_url} (labkit.services.ensure_service).")
    elif skipped is None:
        why = reason.getvalue().strip().split(": this section falls back")[0]
        skipped = f"redis: {why or 'not available'}"
    rows = []
    try:
        for name, cache in backends.items():
            rows += _cache_rows(name, cache)
            cache.close()
    finally:
        release_services()  # stops Redis only if ensure_service() started it here
    notes.append(
        f"{CACHE_READS} reads of one key holding a ~1 KB reply, one after another (users 1); "
        "aget is Django's sync_to_async wrapper around get, run from one event loop."
    )
    columns = ["name", "users", "reads", "misses", "p50_ms", "p99_ms", "duration_s"]
    return section(
        "cache hits",
        "Latency of a cache hit: Django's LocMem and Redis backends, sync and async.",
        columns, rows, notes=notes, skipped=skipped,
    )  # fmt: skip


def _cache_rows(name: str, cache: Any) -> list[dict[str, Any]]:
    from labkit.load import latency_percentiles

    key = "labkit-bench:reply"
    value = {"reply": "lorem ipsum " * 80, "model": "mock-gpt", "usage": {"completion_tokens": 60}}
    cache.set(key, value, 300)

    def sync_reads() -> tuple[list[float], int]:
        return _timed(lambda: cache.get(key), CACHE_READS)

    async def async_reads() -> tuple[list[float], int]:
        times, misses = [], 0
        for _ in range(CACHE_READS):
            started = time.perf_counter()
            got = await cache.aget(key)
            times.append((time.perf_counter() - started) * 1000)
            misses += got is None
        return times, misses

    rows = []
    for op, read in (("get", sync_reads), ("aget", lambda: asyncio.run(async_reads()))):
        started = time.perf_counter()
        times, misses = read()
        percentiles = latency_percentiles(times)
        rows.append(row(
            f"{name} {op}", users=1, latency_s=None, workers=None,
            duration_s=time.perf_counter() - started, reads=len(times), misses=misses,
            p50_ms=round(percentiles["p50_ms"], 4), p99_ms=round(percentiles["p99_ms"], 4),
        ))  # fmt: skip
    cache.delete(key)
    return rows


def _timed(read: Callable[[], Any], count: int) -> tuple[list[float], int]:
    times, misses = [], 0
    for _ in range(count):
        started = time.perf_counter()
        got = read()
        times.append((time.perf_counter() - started) * 1000)
        misses += got is None
    return times, misses


def document_queries(plan: Plan, mock: Any) -> dict[str, Any]:
    """Queries to build one document's prompt context: N+1, prefetch_related, values_list."""
    return asyncio.run(_document_queries())


def _n_plus_one(doc_id: int) -> list[str]:
    """The starter view's loop: chunk.document is loaded again for every chunk."""
    from labproject.ai.models import Chunk, Document

    document = Document.objects.get(pk=doc_id)
    return [
        f"[{chunk.document.title} §{chunk.position}] {chunk.text}"
        for chunk in Chunk.objects.filter(document=document)
    ]


async def _prefetched(doc_id: int) -> list[str]:
    from labproject.ai.models import Document

    document = await Document.objects.prefetch_related("chunks").aget(pk=doc_id)
    return [f"[{document.title} §{c.position}] {c.text}" for c in document.chunks.all()]


async def _values(doc_id: int) -> list[str]:
    from labproject.ai.models import Chunk

    rows = Chunk.objects.filter(document_id=doc_id).values_list(
        "document__title", "position", "text"
    )
    return [f"[{title} §{position}] {text}" async for title, position, text in rows]


async def _document_queries() -> dict[str, Any]:
    from asgiref.sync import sync_to_async
    from django.db.models import Count

    from labkit.load import latency_percentiles
    from labkit.queries import count_queries
    from labproject.ai.models import Document

    document = await Document.objects.annotate(n=Count("chunks")).filter(n__gt=0).afirst()
    if document is None:
        return section("document queries", "", [], [], skipped="no document has chunks")
    ways = {
        "n+1 (starter loop)": sync_to_async(_n_plus_one),
        "prefetch_related().aget()": _prefetched,
        "values_list()": _values,
    }
    rows = []
    for name, load in ways.items():
        times, n_queries, lines = [], set(), 0
        started = time.perf_counter()
        for _ in range(QUERY_REPEATS):
            began = time.perf_counter()
            async with count_queries(name) as log:
                lines = len(await load(document.pk))
            times.append((time.perf_counter() - began) * 1000)
            n_queries.add(log.n_queries)
        percentiles = latency_percentiles(times)
        rows.append(row(
            name, users=1, latency_s=None, workers=None,
            duration_s=time.perf_counter() - started, chunks=document.n, lines=lines,
            n_queries=max(n_queries), loads=QUERY_REPEATS,
            p50_ms=round(percentiles["p50_ms"], 3), p95_ms=round(percentiles["p95_ms"], 3),
        ))  # fmt: skip
    notes = [
        f"document {document.pk} ({document.n} chunks), loaded {QUERY_REPEATS} times each "
        "way from one event loop; n_queries counted by labkit.queries.count_queries (async-safe: "
        "it follows the queries into sync_to_async's threads).",
    ]
    columns = ["name", "users", "chunks", "lines", "n_queries", "loads", "p50_ms", "p95_ms"]
    return section(
        "document queries",
        "Queries to load a document's context before and after: N+1 vs prefetch vs values_list.",
        columns, rows, notes=notes,
    )  # fmt: skip
