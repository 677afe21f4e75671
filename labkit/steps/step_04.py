"""Step 04, queries: the context for the LLM in one or two queries, and connections given back.

Master: solutions/04_queries.ipynb. In the notebook:

    from labkit.steps.step_04 import q1, q2, summary_burst

The database instruments the notebook uses (`labkit.databases`) come from `labkit`'s face.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import Any

from labkit.exercises import Exercise, Incorrect, expect_queries

__all__ = ["expected_context", "expected_labels", "q1", "q2", "q3", "summary_burst"]

# 04.1: documents made at check time (chunk counts), and the query budget (prefetch_related
# needs 2). Their chunks are inserted out of position order, so ids and positions disagree.
FRESH_CHUNKS = (7, 3)
MAX_QUERIES = 2
# 04.2: concurrent requests, the LLM's answer time, and how many connections may stay held
# while the requests wait on the LLM (a view that keeps its connection holds one each).
CONCURRENT = 10
LATENCY_S = 0.6
MAX_HELD = 2
SAMPLE_S = 0.02


async def expected_context(doc_id: int) -> str:
    """The summary prompt of document `doc_id`, as the starter view builds it (one query)."""
    from labproject.ai.models import Chunk
    from labproject.ai.views import SUMMARY_INSTRUCTION

    rows = Chunk.objects.filter(document_id=doc_id).values_list(
        "document__title", "position", "text"
    )
    lines = [f"[{title} §{position}] {text}" async for title, position, text in rows]
    return f"{SUMMARY_INSTRUCTION}\n\n" + "\n".join(lines)


async def fresh_documents(sizes: tuple[int, ...]) -> list[int]:
    """Documents no answer has seen, their chunks inserted in a shuffled position order."""
    import random
    import secrets

    from labproject.ai.models import Chunk, Document

    tag = secrets.token_hex(3)
    made = await Document.objects.abulk_create(
        [Document(title=f"Check 04.1 {tag}-{i}") for i in range(len(sizes))]
    )
    for i, (document, n) in enumerate(zip(made, sizes, strict=True)):
        order = list(range(n))
        while n > 1 and order == sorted(order):
            random.shuffle(order)
        # One insert per chunk, in that order: ids grow in insertion order, not by position.
        for position in order:
            await Chunk.objects.acreate(
                document=document, position=position, text=f"note {tag}-{i}.{position}"
            )
    return [d.id for d in made]


async def delete_documents(ids: list[int]) -> None:
    from labproject.ai.models import Document

    await Document.objects.filter(id__in=ids).adelete()


def _same_lines_reordered(got: str, want: str) -> bool:
    return got != want and sorted(got.splitlines()) == sorted(want.splitlines())


def _first_difference(got: str, want: str) -> str:
    pairs = zip(got.splitlines(), want.splitlines(), strict=False)
    for i, (mine, theirs) in enumerate(pairs, start=1):
        if mine != theirs:
            return f"line {i}, yours:\n  {mine[:120]}\nexpected:\n  {theirs[:120]}"
    return (
        f"yours has {len(got.splitlines())} lines, expected {len(want.splitlines())}; "
        f"the first of them match"
    )


@dataclass
class SummaryBurst:
    """`n` summary requests sent at once: answers, LLM calls in flight, DB connections held."""

    n: int
    statuses: list[int]
    bodies: list[str]
    elapsed_s: float
    llm_peak: int  # most LLM calls in flight at once (the mock's count)
    db_peak: int  # most Django connections open at once, beyond those open before
    db_held: int  # connections open while the most LLM calls were in flight
    db_opened: int

    @property
    def ok(self) -> int:
        return self.statuses.count(200)

    def __str__(self) -> str:
        return (
            f"{self.n} concurrent requests, {self.ok} answered 200 in {self.elapsed_s:.2f} s; "
            f"at most {self.llm_peak} LLM calls in flight at once, and while they waited "
            f"{self.db_held} database connections were held (peak {self.db_peak}, "
            f"{self.db_opened} opened in all)"
        )


async def summary_burst(url: str, n: int, *, llm: Any) -> SummaryBurst:
    """GET `n` documents' summaries from `url` at once, watching the LLM and the connections.

    The mock is polled while the requests run: the connections open at the moment the most
    LLM calls are in flight are the ones held across the LLM call.

        run = await summary_burst(server.url, 20, llm=llm)
    """
    import httpx2

    from labkit.steps.dbside import connections_seen

    llm.reset()
    limits = httpx2.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx2.AsyncClient(base_url=url, timeout=120, limits=limits) as http:
        with connections_seen() as held:
            started = time.perf_counter()
            task = asyncio.ensure_future(
                asyncio.gather(
                    *(http.get(f"/api/documents/{i % 40 + 1}/summary/") for i in range(n))
                )
            )
            best, held_then = 0, 0
            while not task.done():
                in_flight = (await asyncio.to_thread(llm.stats))["in_flight"]
                now = held.now()
                if in_flight > best:
                    best, held_then = in_flight, now
                elif in_flight == best and in_flight:
                    held_then = max(held_then, now)
                await asyncio.sleep(SAMPLE_S)
            responses = await task
            elapsed = time.perf_counter() - started
    return SummaryBurst(
        n=n,
        statuses=[r.status_code for r in responses],
        bodies=[r.text for r in responses],
        elapsed_s=elapsed,
        llm_peak=max(llm.stats()["in_flight_peak"], best),
        db_peak=held.peak,
        db_held=held_then,
        db_opened=held.opened,
    )


class LoadContext(Exercise):
    """04.1: the summary prompt of a document, in at most two queries.

    A correct answer, for documents made at check time whose chunks were inserted out of
    position order: the starter's exact text, lines in position order (not id order), in at
    most MAX_QUERIES queries whatever the number of chunks; the same text when asked again or
    for several documents at once (it is a pure read); no sync ORM inside `async def`.
    Evidence: the text compared with the database's own rendering, and the queries the
    database saw (labkit.steps.dbside).
    """

    id = "04.1"
    database_evidence = True
    title = "The LLM's context in at most two queries"
    hints = [
        "Fetch the chunks together with their document's title in the same query: "
        '`Chunk.objects.filter(document_id=doc_id)` plus `select_related("document")`, or '
        '`values_list("document__title", "position", "text")`.',
        "Read it with `async for` (a plain `for` over a queryset raises "
        "SynchronousOnlyOperation in `async def`): `[... async for chunk in queryset]`.",
        'Then build the text as the starter does: `f"{SUMMARY_INSTRUCTION}\\n\\n" + '
        '"\\n".join(lines)`, one line `f"[{title} §{position}] {text}"` per chunk, in '
        'position order (the model\'s default ordering; `order_by("id")` is insertion order).',
    ]
    wrong_answers = {
        "chunks in id order, not position order": """
async def load_context(doc_id: int) -> str:
    rows = (
        Chunk.objects.filter(document_id=doc_id)
        .order_by("id")
        .values_list("document__title", "position", "text")
    )
    lines = [f"[{title} §{position}] {text}" async for title, position, text in rows]
    return f"{SUMMARY_INSTRUCTION}\\n\\n" + "\\n".join(lines)
""",
        "select_related, ordered by primary key": """
async def load_context(doc_id: int) -> str:
    chunks = Chunk.objects.filter(document_id=doc_id).select_related("document").order_by("pk")
    lines = [f"[{c.document.title} §{c.position}] {c.text}" async for c in chunks]
    return f"{SUMMARY_INSTRUCTION}\\n\\n" + "\\n".join(lines)
""",
        "a query per chunk for its document": """
async def load_context(doc_id: int) -> str:
    lines = []
    async for chunk in Chunk.objects.filter(document_id=doc_id):
        document = await Document.objects.aget(pk=chunk.document_id)
        lines.append(f"[{document.title} §{chunk.position}] {chunk.text}")
    return f"{SUMMARY_INSTRUCTION}\\n\\n" + "\\n".join(lines)
""",
        "a lazy foreign key in the f-string": """
async def load_context(doc_id: int) -> str:
    lines = [
        f"[{chunk.document.title} §{chunk.position}] {chunk.text}"
        async for chunk in Chunk.objects.filter(document_id=doc_id)
    ]
    return f"{SUMMARY_INSTRUCTION}\\n\\n" + "\\n".join(lines)
""",
        "prefetch, then filter the prefetched manager": """
async def load_context(doc_id: int) -> str:
    document = await Document.objects.prefetch_related("chunks").aget(pk=doc_id)
    lines = [
        f"[{document.title} §{chunk.position}] {chunk.text}"
        async for chunk in document.chunks.order_by("position")
    ]
    return f"{SUMMARY_INSTRUCTION}\\n\\n" + "\\n".join(lines)
""",
        "the tutorial's prompt: chunk texts only": """
async def load_context(doc_id: int) -> str:
    document = await Document.objects.prefetch_related("chunks").aget(id=doc_id)
    chunks = [chunk.text for chunk in document.chunks.all()]
    return f"Summarize: {' '.join(chunks)}"
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, load_context) -> str:
        from labkit.steps.dbside import queries_seen
        from labkit.steps.subject import is_async

        if not is_async(load_context):
            raise Incorrect(
                "`load_context` is a plain `def`: an async view awaits it, so declare it "
                "`async def` and use the async ORM (`async for`, `aget`)."
            )
        ids = await fresh_documents(FRESH_CHUNKS)
        try:
            counts = []
            for doc_id, n_chunks in zip(ids, FRESH_CHUNKS, strict=True):
                want = await expected_context(doc_id)
                async with queries_seen(f"load_context({doc_id})") as log:
                    got = await self._call(load_context, doc_id)
                self._judge_text(got, want, doc_id, n_chunks)
                expect_queries(log, at_most=MAX_QUERIES)
                counts.append(log.n_queries)
            together = await asyncio.gather(*(self._call(load_context, d) for d in ids))
            for doc_id, got in zip(ids, together, strict=True):
                if got != await expected_context(doc_id):
                    raise Incorrect(
                        f"Called for {len(ids)} documents at once, `load_context({doc_id})` "
                        "returned other text than when called alone: the calls shared "
                        "something (a module-level list or variable). Keep each call's lines "
                        "in a local variable.",
                        evidence=_first_difference(str(got), await expected_context(doc_id)),
                    )
            again = await self._call(load_context, ids[0])
            if again != await expected_context(ids[0]):
                raise Incorrect(
                    f"`load_context({ids[0]})` asked a second time returned other text than the "
                    "first time (expected the same prompt: nothing changed in the database). "
                    "Is something kept between calls (a module-level list, a cache)?",
                    evidence=_first_difference(str(again), await expected_context(ids[0])),
                )
        finally:
            await delete_documents(ids)
        shown = ", ".join(f"{n} chunks: {q}" for n, q in zip(FRESH_CHUNKS, counts, strict=True))
        return (
            f"The right prompt for {len(ids)} new documents whose chunks were inserted out of "
            f"order, in {max(counts)} {'query' if max(counts) == 1 else 'queries'} per document "
            f"({shown}; at most {MAX_QUERIES} allowed), whatever the number of chunks."
        )

    @staticmethod
    def _judge_text(got: Any, want: str, doc_id: int, n_chunks: int) -> None:
        if not isinstance(got, str):
            shown = got.get("__type__") if isinstance(got, dict) else type(got).__name__
            raise Incorrect(
                f"`load_context({doc_id})` returned {shown}, expected the prompt text (a str)."
            )
        if _same_lines_reordered(got, want):
            raise Incorrect(
                f"`load_context({doc_id})` has the right lines in the wrong order. The check "
                f"made document {doc_id} with {n_chunks} chunks inserted out of position order: "
                "yours follows the order the rows were inserted (their ids), the prompt needs "
                'position order. Drop `order_by("id")`/`order_by("pk")` (Chunk\'s default '
                'ordering is by position) or write `order_by("position")`. First difference:',
                evidence=_first_difference(got, want),
            )
        if got != want:
            raise Incorrect(
                f"`load_context({doc_id})` returned other text than the summary prompt "
                "the starter builds (the instruction, a blank line, then one "
                "`[title §position] text` line per chunk, in position order). First difference:",
                evidence=_first_difference(got, want),
            )

    @staticmethod
    async def _call(load_context, doc_id: int) -> Any:
        from labkit.steps.subject import Raised, call

        try:
            return await call(load_context, doc_id)
        except Raised as error:
            if error.type_name != "SynchronousOnlyOperation":
                raise Incorrect(
                    f"`load_context({doc_id})` raised {error}: expected the prompt text of "
                    "that document (the check made it, with its chunks, just before)."
                ) from None
            raise Incorrect(
                "SynchronousOnlyOperation: a query ran synchronously inside `async def`. "
                "Reading a foreign key that was not loaded (`chunk.document.title`) runs one, "
                "and so do a plain `for` over a queryset and `list(queryset)`. Load the title "
                'with the chunks (`select_related("document")` or `values_list('
                '"document__title", ...)`) and iterate with `async for`.',
                evidence=str(error),
            ) from None


class ReleaseBeforeLLM(Exercise):
    """04.2: the summary view gives its database connection back before awaiting the LLM.

    A correct answer: 200 with a reply for one request and for CONCURRENT requests at once;
    while those wait on the LLM (the mock's in-flight count at its peak), at most MAX_HELD
    database connections are open; and the LLM calls run side by side (in-flight peak at
    least half the burst). Evidence: the check's HTTP answers, the mock's in-flight counts,
    and the connections the database saw (labkit.steps.dbside).
    """

    id = "04.2"
    database_evidence = True
    title = "Give the connection back before awaiting the LLM"
    hints = [
        "Under ASGI the request's queries run in a thread of its own, whose connection stays "
        "open until the request ends: across the whole LLM call.",
        "Load the prompt first (`await load_context(doc_id)`), then close that thread's "
        "connections: `await sync_to_async(close_old_connections)()`; the next query (the "
        "AICall row) opens a connection again, for a few milliseconds.",
        "`connection.close()` called straight from `async def` raises "
        "SynchronousOnlyOperation; `sync_to_async` runs it in the request's own thread, where "
        "its connection lives.",
    ]
    wrong_answers = {
        "holds the connection across the LLM call": """
@csrf_exempt
async def summary(request, doc_id):
    prompt = await load_context(doc_id)
    record = CallRecord(endpoint="summary", prompt=prompt)
    completion = await get_client().chat.completions.create(
        model=settings.LLM_MODEL, messages=messages_for(prompt)
    )
    record.succeeded(completion)
    await AICall.objects.acreate(**record.fields())
    return record.response(document=doc_id)
""",
        "releases before its queries": """
@csrf_exempt
async def summary(request, doc_id):
    await sync_to_async(close_old_connections)()
    prompt = await load_context(doc_id)
    record = CallRecord(endpoint="summary", prompt=prompt)
    completion = await get_client().chat.completions.create(
        model=settings.LLM_MODEL, messages=messages_for(prompt)
    )
    record.succeeded(completion)
    await AICall.objects.acreate(**record.fields())
    return record.response(document=doc_id)
""",
        "connection.close() from async code": """
@csrf_exempt
async def summary(request, doc_id):
    prompt = await load_context(doc_id)
    connection.close()
    record = CallRecord(endpoint="summary", prompt=prompt)
    completion = await get_client().chat.completions.create(
        model=settings.LLM_MODEL, messages=messages_for(prompt)
    )
    record.succeeded(completion)
    await AICall.objects.acreate(**record.fields())
    return record.response(document=doc_id)
""",
        "the sync ORM in the async view": """
@csrf_exempt
async def summary(request, doc_id):
    prompt = await load_context(doc_id)
    await sync_to_async(close_old_connections)()
    record = CallRecord(endpoint="summary", prompt=prompt)
    completion = await get_client().chat.completions.create(
        model=settings.LLM_MODEL, messages=messages_for(prompt)
    )
    record.succeeded(completion)
    AICall.objects.create(**record.fields())
    return record.response(document=doc_id)
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, summary) -> str:
        from labkit.steps.probes import ServedView, lab_mock, mock_settings, numbered
        from labkit.steps.subject import is_async

        if not is_async(summary):
            raise Incorrect(
                "`summary` is a plain `def` view: under ASGI it runs in a thread, and that "
                "thread (and its connection) is held for the whole LLM call. Declare it "
                "`async def`."
            )
        llm = lab_mock()
        with mock_settings(
            llm, latency_s=LATENCY_S, outlier_rate=0, rpm=0, tpm=0, faults={}, fault=None
        ):
            async with ServedView(summary, route="summary") as served:
                # One request first, so the server's event loop has its LLM client and pool.
                first = await served.request("GET", "/api/documents/1/summary/")
                self._judge_status([first.status_code], [first.text], served.log, numbered)
                await asyncio.sleep(0.1)  # let the first request's end close its connection
                run = await summary_burst(served.server.url, CONCURRENT, llm=llm)
                self._judge_status(run.statuses, run.bodies, served.log, numbered)
        measured = f"LLM latency {LATENCY_S:g} s; {run}"
        if run.db_held > MAX_HELD:
            raise Incorrect(
                f"{run.db_held} database connections stayed open while {run.llm_peak} requests "
                f"waited on the LLM: each request kept the connection its queries opened. "
                f"Expected at most {MAX_HELD}. With a pool of a few connections, those requests "
                "would queue for the pool, not for the LLM. Close the connection after the "
                "queries and before the LLM call.",
                evidence=f"measured: {measured}",
            )
        if run.llm_peak < CONCURRENT // 2:
            raise Incorrect(
                f"Only {run.llm_peak} of {CONCURRENT} LLM calls were ever in flight at once: "
                "something made the requests wait for each other.",
                evidence=f"measured: {measured}",
            )
        return f"{measured}."

    @staticmethod
    def _judge_status(statuses: list[int], bodies: list[str], log: list[str], numbered) -> None:
        failed = [i for i, status in enumerate(statuses) if status != 200]
        if failed:
            counts = ", ".join(f"{statuses.count(s)} × {s}" for s in sorted(set(statuses)))
            raise Incorrect(
                f"GET /api/documents/<id>/summary/ answered {counts}, expected 200. What the "
                "server logged:",
                evidence=numbered(log) or bodies[failed[0]][:300],
            )
        for body in bodies:
            try:
                reply = json.loads(body).get("reply")
            except (ValueError, AttributeError):
                reply = None
            if not isinstance(reply, str) or not reply:
                raise Incorrect(
                    'The answer has no "reply": return `record.response(document=doc_id)`.',
                    evidence=body[:300],
                )


q1 = LoadContext()
q2 = ReleaseBeforeLLM()


# 04.3: documents made fresh at check time, their chunks inserted out of order (so insertion
# order is not the answer), and the query budget whatever the number of documents.
FRESH_CHUNKS = (4, 7, 3)
PEERS_BUDGET = 2


def _fresh_documents(tag: str) -> list[int]:
    """Create documents with FRESH_CHUNKS chunks each, rows interleaved and out of order."""
    from labproject.ai.models import Chunk, Document

    documents = [
        Document.objects.create(title=f"Fetch check {tag} · {k}")
        for k in range(1, len(FRESH_CHUNKS) + 1)
    ]
    rows = [
        Chunk(document=document, position=position, text=f"{tag} {document.pk}.{position}")
        for document, n in zip(documents, FRESH_CHUNKS, strict=True)
        for position in range(1, n + 1)
    ]
    # Last document first, every document's chunks backwards: row ids follow neither order.
    Chunk.objects.bulk_create(sorted(rows, key=lambda c: (-c.document.pk, -c.position)))
    return [document.pk for document in documents]


def _queries(n: int) -> str:
    return f"{n} {'query' if n == 1 else 'queries'}"


def expected_labels(doc_ids: list[int]) -> list[str]:
    """`"<title> §<position>"` for each chunk of `doc_ids`, by document, then position."""
    from labproject.ai.models import Chunk

    rows = (
        Chunk.objects.filter(document_id__in=doc_ids)
        .order_by("document_id", "position")
        .values_list("document__title", "position")
    )
    return [f"{title} §{position}" for title, position in rows]


class FetchLabels(Exercise):
    id = "04.3"
    database_evidence = True
    title = "Chunk labels for many documents with a fetch mode"
    hints = [
        "Start from the chunks of all the documents at once: "
        "`Chunk.objects.filter(document_id__in=doc_ids)`. Reading `chunk.document.title` in a "
        "loop then costs one query per chunk (the default mode, `models.FETCH_ONE`).",
        "`.fetch_mode(models.FETCH_PEERS)` on that queryset: the first `chunk.document` read "
        "fetches the documents of every chunk the query returned, in one more query.",
        "A fetch mode set on `Document` queries does not reach `document.chunks.all()`: a "
        "related manager's own query runs once per document. And `FETCH_RAISE` forbids the "
        "lazy read instead of batching it.",
    ]
    wrong_answers = {
        "the default mode: a query per chunk": """
def chunk_labels(doc_ids: list[int]) -> list[str]:
    chunks = Chunk.objects.filter(document_id__in=doc_ids)
    return [f"{chunk.document.title} §{chunk.position}" for chunk in chunks]
""",
        "the fetch mode on the documents, a chunk query each": """
def chunk_labels(doc_ids: list[int]) -> list[str]:
    documents = Document.objects.filter(pk__in=doc_ids).fetch_mode(models.FETCH_PEERS)
    return [f"{d.title} §{chunk.position}" for d in documents for chunk in d.chunks.all()]
""",
        "the raise mode, nothing loaded": """
def chunk_labels(doc_ids: list[int]) -> list[str]:
    chunks = Chunk.objects.filter(document_id__in=doc_ids).fetch_mode(models.FETCH_RAISE)
    return [f"{chunk.document.title} §{chunk.position}" for chunk in chunks]
""",
        "peers, in insertion order": """
def chunk_labels(doc_ids: list[int]) -> list[str]:
    chunks = Chunk.objects.filter(document_id__in=doc_ids).order_by("id")
    return [
        f"{chunk.document.title} §{chunk.position}"
        for chunk in chunks.fetch_mode(models.FETCH_PEERS)
    ]
""",
    }

    def prepare(self) -> None:
        from labkit.steps.probes import require_django

        require_django()

    async def evaluate(self, chunk_labels) -> str:
        import secrets

        from asgiref.sync import sync_to_async

        from labkit.steps.subject import kind_of
        from labproject.ai.models import Document

        kind = kind_of(chunk_labels)
        if kind != "function":
            raise Incorrect(
                f"`chunk_labels` is an {kind}, expected a plain `def`. A fetch mode acts when "
                "a sync attribute read fetches; in `async def` that read raises "
                "SynchronousOnlyOperation instead."
                if kind == "async function"
                else f"`chunk_labels` is a {kind}, expected a plain `def` function."
            )
        # Documents made now, in the database the learner's code reads: nothing to hard-code.
        ids = await sync_to_async(_fresh_documents)(secrets.token_hex(3))
        try:
            # One document, then all of them: a count that grows with the documents is N+1.
            counts = [await self._judge(chunk_labels, subset) for subset in (ids[:1], ids)]
        finally:
            await Document.objects.filter(pk__in=ids).adelete()
        return (
            f"The right labels for {len(ids)} fresh documents ({sum(FRESH_CHUNKS)} chunks, "
            f"inserted out of order) in {_queries(counts[-1])}, and {counts[0]} for one of "
            f"them (at most {PEERS_BUDGET} allowed), whatever the number of documents."
        )

    async def _judge(self, chunk_labels, doc_ids: list[int]) -> int:
        from asgiref.sync import sync_to_async

        from labkit.steps.dbside import queries_seen

        want = await sync_to_async(expected_labels)(doc_ids)
        async with queries_seen(f"chunk_labels({doc_ids})") as log:
            got = await self._call(chunk_labels, list(doc_ids))
        if got != want:
            shown = json.dumps(got)[:300] if isinstance(got, list) else repr(got)[:300]
            raise Incorrect(
                f"`chunk_labels({doc_ids})` returned other labels than expected: one "
                '`"<title> §<position>"` per chunk of those documents, ordered by document, '
                "then position (the chunks were inserted in another order).",
                evidence=f"yours:    {shown}\nexpected: {json.dumps(want)[:300]}",
            )
        expect_queries(log, at_most=PEERS_BUDGET)
        return log.n_queries

    @staticmethod
    async def _call(chunk_labels, doc_ids: list[int]) -> Any:
        from labkit.steps.subject import Raised, call

        try:
            return await call(chunk_labels, doc_ids)
        except Raised as error:
            if error.type_name == "FieldFetchBlocked":
                raise Incorrect(
                    "FieldFetchBlocked: the raise mode forbids the lazy `chunk.document` read "
                    "it met. It is a guard for tests, not a way to load: load the documents "
                    '(`select_related("document")`) or let the reads batch (`FETCH_PEERS`).',
                    evidence=str(error),
                ) from None
            raise


q3 = FetchLabels()
