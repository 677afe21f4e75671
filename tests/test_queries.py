"""The async-safe query counter: N+1 vs prefetch vs values_list, in awaited code and threads."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async

from labkit.queries import count_queries

pytestmark = pytest.mark.usefixtures("django_db")


async def context_n_plus_one(doc_id: int) -> list[str]:
    from labproject.ai.models import Chunk, Document

    document = await Document.objects.aget(pk=doc_id)
    return [
        f"{(await Chunk.objects.select_related(None).aget(pk=chunk.pk)).text}"
        async for chunk in document.chunks.all()[:5]
    ]


async def context_prefetch(doc_id: int) -> list[str]:
    from labproject.ai.models import Document

    document = await Document.objects.prefetch_related("chunks").aget(pk=doc_id)
    return [chunk.text for chunk in document.chunks.all()]


async def context_values_list(doc_id: int) -> list[str]:
    from labproject.ai.models import Chunk

    return [
        text
        async for text in Chunk.objects.filter(document_id=doc_id).values_list("text", flat=True)
    ]


def test_counts_awaited_code_in_worker_threads():
    async def scenario():
        with count_queries() as n_plus_one:
            await context_n_plus_one(1)
        async with count_queries() as prefetch:
            texts = await context_prefetch(1)
        with count_queries() as flat:
            flat_texts = await context_values_list(1)
        return n_plus_one, prefetch, flat, texts, flat_texts

    n_plus_one, prefetch, flat, texts, flat_texts = asyncio.run(scenario())
    assert n_plus_one.n_queries == 1 + 1 + 5
    assert prefetch.n_queries == 2
    assert flat.n_queries == 1
    assert texts == flat_texts and len(texts) == 20
    assert "MainThread" not in n_plus_one.threads  # the async ORM ran in a worker thread
    assert 'FROM "ai_chunk"' in prefetch.sql[1]


def test_concurrent_tasks_are_counted_separately():
    async def one(doc_id, fn):
        with count_queries() as log:
            await fn(doc_id)
        return log

    async def scenario():
        return await asyncio.gather(one(1, context_n_plus_one), one(2, context_values_list))

    slow, fast = asyncio.run(scenario())
    assert (slow.n_queries, fast.n_queries) == (7, 1)


def test_nested_logs_both_see_inner_queries_and_outside_is_not_counted():
    from labproject.ai.models import Document

    Document.objects.count()  # outside any log
    with count_queries() as outer:
        Document.objects.count()
        with count_queries() as inner:
            asyncio.run(sync_to_async(Document.objects.count)())
    assert (outer.n_queries, inner.n_queries) == (2, 1)


def test_report_numbers_the_sql():
    with count_queries("demo") as log:
        asyncio.run(context_prefetch(3))
    text = str(log)
    assert text.startswith("2 queries (demo):\n1. SELECT")
    assert "\n2. SELECT" in text
    assert "= 3" in text  # parameters are shown, not placeholders
