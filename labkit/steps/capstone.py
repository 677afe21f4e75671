"""The capstone's instruments (step 08): one summary endpoint measured against its budget.

The checks of step 08 and its notebook measure with the same functions, so the numbers a
learner sees before and after are the ones the grader judges:

    report = await budget(summary, label="yours")    # every measurement below, as one table
    async with served(summary) as s:                  # the view behind /api/documents/<id>/summary/
        doc, = await fresh_documents(1)
        response, log = await one_summary(s, doc)     # log: the request's queries (track_requests)

Every measurement serves the view on a fresh in-kernel uvicorn and asks about documents made
for the occasion (deleted afterwards), so no cache, the learner's or Django's, has seen them.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

ROUTE = "summary"
PATH = "/api/documents/{id}/summary/"
MAX_READS = 2  # SELECTs per summary: the document and its chunks
BURST = 20  # identical requests sent at once
MAX_UPSTREAM = 2  # LLM calls those may cost: one, plus a race at the very start
OTHER_MODEL = "gpt-4o-mini"
P95_RATIO = 3.0  # p95 under load at most this many times the LLM's latency
CHUNKS = 6  # per fresh document, positions 0..5
# Planted at the start of chunk 0, so the mock LLM (which echoes the first words of the user
# message) cites them: 2 and 5 exist, 9 does not in a fresh document but does in the corpus.
PLANTED = (2, 5, 9)
FAULT_TIMEOUT_S = 1.0  # the client's budget while the LLM hangs
# LLM calls one request may make while the LLM fails, with the SDK's retries off: the call,
# and at most one retry of the view's own. Five quick retries hammer a provider that is down.
MAX_FAULT_CALLS = 2
_MARKER = re.compile(r"\[§(\d+)\]")


def cited_positions(text: str) -> list[int]:
    """The chunk positions a text cites as [§n], in order, each once."""
    return list(dict.fromkeys(int(n) for n in _MARKER.findall(text or "")))


# -- documents no cache has seen ---------------------------------------------------------------


@dataclass(frozen=True)
class Doc:
    """A document made for one measurement: its id, title and chunk ids by position."""

    id: int
    title: str
    chunks: dict[int, int]


async def fresh_documents(n: int, *, chunks: int = CHUNKS) -> list[Doc]:
    """Create `n` documents with unique text (so unique prompts), ids contiguous if possible."""
    from labproject.ai.models import Chunk, Document

    tag = secrets.token_hex(3)
    made = await Document.objects.abulk_create(
        [Document(title=f"Budget {tag}-{i}") for i in range(n)]
    )
    rows = [
        Chunk(document=document, position=p, text=_text(tag, i, p))
        for i, document in enumerate(made)
        for p in range(chunks)
    ]
    await Chunk.objects.abulk_create(rows)
    found: dict[int, dict[int, int]] = {}
    async for chunk_id, document_id, position in Chunk.objects.filter(
        document__in=made
    ).values_list("id", "document_id", "position"):
        found.setdefault(document_id, {})[position] = chunk_id
    return [Doc(d.id, d.title, found[d.id]) for d in made]


def _text(tag: str, i: int, p: int) -> str:
    planted = " ".join(f"[§{n}]" for n in PLANTED) + " " if p == 0 else ""
    return f"{planted}Note {tag}-{i}.{p}: the event loop waits on the upstream call."


async def delete_documents(docs: Sequence[Doc]) -> None:
    from labproject.ai.models import Document

    await Document.objects.filter(id__in=[d.id for d in docs]).adelete()


# -- the view, served for real -----------------------------------------------------------------


@dataclass
class Served:
    """A view behind the summary route: its URL, an HTTP client, and Django's log."""

    url: str
    http: Any
    log: list[str]
    view: Any = None  # the ServedView (labkit.steps.probes) that serves it

    async def get(self, doc_id: int, **params: str) -> Any:
        path = PATH.format(id=doc_id)
        if self.view is None:
            return await self.http.get(path, params=params or None)
        return await self.view.request("GET", path, params=params or None)


@asynccontextmanager
async def served(view: Callable[..., Any]) -> AsyncIterator[Served]:
    """Serve `view` behind /api/documents/<id>/summary/ on a fresh uvicorn, for real.

    What Django logs about failed requests lands in `log`, one line each, instead of
    tracebacks in the cell. The view may be the kernel's or a grading sandbox's.
    """
    from labkit.steps.probes import ServedView

    async with ServedView(view, route=ROUTE) as server:
        yield Served(server.server.url, server.http, server.log, server)


async def one_summary(s: Served, doc: Doc, **params: str) -> tuple[Any, Any]:
    """GET one summary; return the response and the queries the database saw meanwhile."""
    from labkit.steps.dbside import queries_seen

    async with queries_seen(f"summary of document {doc.id}") as log:
        response = await s.get(doc.id, **params)
    return response, log


def reads(log: Any) -> list[str]:
    """The SELECTs of a QueryLog (the AICall row a view writes is not context loading)."""
    return [sql for sql in log.sql if sql.lstrip().upper().startswith("SELECT")]


def json_of(response: Any) -> dict[str, Any] | None:
    try:
        data = response.json()
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


async def citation_problems(data: dict[str, Any], doc: Doc) -> list[str]:
    """What is wrong with the reply's citations for `doc`; empty when they are right."""
    from labproject.ai.models import Chunk

    cited = cited_positions(str(data.get("reply", "")))
    if not cited:
        return [
            "The reply holds no [§n] marker, so nothing can be checked. The mock LLM echoes "
            "the first words of the user message: start that message with the numbered "
            "chunks, `[§n] ...` one per line, as the skeleton does."
        ]
    citations = data.get("citations")
    if not isinstance(citations, list) or not all(
        isinstance(c, dict) and type(c.get("n")) is int and type(c.get("chunk_id")) is int
        for c in citations
    ):
        return [
            'The JSON needs "citations": a list of {"n": <position>, "chunk_id": <id>}; '
            f"got {str(citations)[:120]}."
        ]
    problems = []
    ids = {c["chunk_id"] for c in citations}
    owners = {
        chunk_id: (document_id, position, title)
        async for chunk_id, document_id, position, title in Chunk.objects.filter(
            id__in=ids
        ).values_list("id", "document_id", "position", "document__title")
    }
    for c in citations:
        owner = owners.get(c["chunk_id"])
        if owner is None:
            problems.append(f"[§{c['n']}] → chunk {c['chunk_id']}, which does not exist")
        elif owner[0] != doc.id:
            problems.append(
                f"[§{c['n']}] → chunk {c['chunk_id']}, position {owner[1]} of document "
                f"{owner[0]} «{owner[2]}», not of document {doc.id}"
            )
        elif owner[1] != c["n"]:
            problems.append(f"[§{c['n']}] → chunk {c['chunk_id']}, which is at position {owner[1]}")
    expected = [n for n in cited if n in doc.chunks]
    listed = [c["n"] for c in citations]
    missing = [n for n in expected if n not in listed]
    extra = sorted({n for n in listed if n not in expected})
    if missing:
        problems.append(f'the reply cites {_marks(missing)} but "citations" leaves it out')
    if extra:
        problems.append(
            f'"citations" lists {_marks(extra)}, which the reply does not cite from this '
            "document (a marker past the document's last chunk names nothing: drop it)"
        )
    return problems


def _marks(ns: Sequence[int]) -> str:
    return ", ".join(f"[§{n}]" for n in ns)


# -- LLM faults --------------------------------------------------------------------------------


@dataclass(frozen=True)
class FaultResult:
    """What the endpoint answered while the mock LLM misbehaved in one way."""

    fault: str
    expected: tuple[int, ...]
    status: int
    retry_after: str | None
    error_code: str | None
    logged: int  # failed AICall rows the request added
    problem: str  # empty when the answer meets the spec
    calls: int = 0  # LLM calls the request made (the mock's count)


# name, mock settings, statuses that are right. 500/503: the provider is down for a moment,
# so 503 with Retry-After (or 502); a body that is not JSON, or a cut, is a bad gateway.
FAULTS: tuple[tuple[str, dict[str, Any], tuple[int, ...]], ...] = (
    ("timeout (LLM hangs)", {"fault": "hang", "hang_s": 4 * FAULT_TIMEOUT_S}, (504,)),
    ("429 rate limit", {"rpm": 1}, (429,)),
    ("500 from the LLM", {"fault": "500"}, (503, 502)),
    ("503 from the LLM", {"fault": "503"}, (503, 502)),
    ("malformed JSON body", {"fault": "malformed"}, (502,)),
    ("connection cut", {"fault": "cut"}, (502,)),
)


async def fault_matrix(view: Callable[..., Any], llm: Any) -> list[FaultResult]:
    """Ask `view` for a summary once per fault in FAULTS, with retries off and a short timeout."""
    from django.test import override_settings

    from labkit.steps.probes import mock_settings

    docs = await fresh_documents(len(FAULTS) + 1, chunks=2)
    results = []
    try:
        # The view's per-loop client is made on the fresh server's loop, so it takes these.
        with override_settings(LLM_TIMEOUT_S=FAULT_TIMEOUT_S, LLM_MAX_RETRIES=0):
            async with served(view) as s:
                for (name, changes, expected), doc in zip(FAULTS, docs, strict=False):
                    # A quick answer otherwise: only the fault may decide the outcome.
                    with mock_settings(llm, latency_s=FAULT_TIMEOUT_S / 10, **changes):
                        before = await _last_call_id()
                        calls = llm.stats()["requests_total"]
                        response = await s.get(doc.id)
                        if response.status_code == 200 and "rpm" in changes:
                            calls = llm.stats()["requests_total"]  # the first used the quota
                            response = await s.get(docs[-1].id)
                        calls = llm.stats()["requests_total"] - calls
                        logged = await _failed_since(before)
                    results.append(_judge_fault(name, expected, response, logged, s.log, calls))
    finally:
        await delete_documents(docs)
    return results


async def _last_call_id() -> int:
    from django.db.models import Max

    from labproject.ai.models import AICall

    return (await AICall.objects.aaggregate(last=Max("id")))["last"] or 0


async def _failed_since(last_id: int) -> int:
    from labproject.ai.models import AICall

    return await AICall.objects.filter(id__gt=last_id, ok=False).acount()


def _judge_fault(
    name: str, expected: tuple[int, ...], response: Any, logged: int, log: list[str], calls: int
) -> FaultResult:
    status = response.status_code
    retry_after = response.headers.get("retry-after")
    data = json_of(response)
    error = data.get("error") if data else None
    code = error.get("code") if isinstance(error, dict) else None
    want = " or ".join(map(str, expected))
    if status == 500:
        problem = "answered 500 (a server error)" + (f": {log[-1]}" if log else "")
    elif status not in expected:
        problem = f"answered {status}, expected {want}"
    elif code is None:
        problem = 'the body is not the API\'s JSON error {"error": {"code", "message"}}'
    elif status in (429, 503) and not retry_after:
        problem = f"{status} without a Retry-After header"
    elif logged < 1:
        problem = "no failed AICall row was logged"
    else:
        problem = ""
    if calls > MAX_FAULT_CALLS:
        # Judged whatever the answer: retrying without back-off is wrong even if it ends well.
        problem = (
            f"{calls} LLM calls for one request, expected at most {MAX_FAULT_CALLS} (retries "
            "at once, without back-off)" + (f"; also {problem}" if problem else "")
        )
    return FaultResult(name, expected, status, retry_after, code, logged, problem, calls)


def fault_table(results: Sequence[FaultResult]) -> str:
    """The fault results as a plain text table, for evidence."""
    lines = [
        f"{'fault':22} {'expected':9} {'got':4} {'Retry-After':12} {'logged':7} {'calls':6} verdict"
    ]
    for r in results:
        want = "/".join(map(str, r.expected))
        lines.append(
            f"{r.fault:22} {want:9} {r.status:<4} {r.retry_after or '-':12} {r.logged:<7} "
            f"{r.calls:<6} {r.problem or 'ok'}"
        )
    return "\n".join(lines)


# -- repeated prompts and load -----------------------------------------------------------------


@dataclass
class BurstResult:
    """`n` identical requests sent at once: statuses, replies, and LLM calls they cost."""

    n: int
    statuses: list[int]
    replies: list[str]
    upstream: int
    elapsed_s: float
    log: list[str] = field(default_factory=list)

    def status_line(self) -> str:
        counts: dict[int, int] = {}
        for status in self.statuses:
            counts[status] = counts.get(status, 0) + 1
        return ", ".join(f"{n} × {status}" for status, n in sorted(counts.items()))


async def identical_burst(
    s: Served, doc: Doc, llm: Any, n: int = BURST, **params: str
) -> BurstResult:
    """Send `n` identical summary requests at once; count the LLM calls at the mock."""
    before, logged = llm.stats()["requests_total"], len(s.log)
    started = time.perf_counter()
    responses = await asyncio.gather(*(s.get(doc.id, **params) for _ in range(n)))
    elapsed = time.perf_counter() - started
    replies = [str((json_of(r) or {}).get("reply", "")) for r in responses]
    return BurstResult(
        n,
        [r.status_code for r in responses],
        replies,
        llm.stats()["requests_total"] - before,
        elapsed,
        s.log[logged:],
    )


async def load(
    s: Served,
    docs: Sequence[Doc],
    *,
    arrival_rate: float,
    duration_s: float,
    latency_s: float,
    label: str,
    progress: bool = False,
) -> Any:
    """An open-loop load over `docs` in turn: each arrival asks for the next document."""
    from labkit.exercises import CheckError
    from labkit.load import Scenario, arun_load

    ids = sorted(d.id for d in docs)
    if ids != list(range(ids[0], ids[0] + len(ids))):
        raise CheckError("The documents made for the load did not get consecutive ids; re-run.")
    scenario = Scenario(
        "summary", "GET", PATH, ids=(ids[0], ids[-1]), label="/api/documents/[id]/summary/"
    )
    return await arun_load(
        s.url,
        scenario=scenario,
        mode="open",
        arrival_rate=arrival_rate,
        duration_s=duration_s,
        latency_s=latency_s,
        server="uvicorn in the kernel",
        label=label,
        progress=progress,
    )


# -- the whole budget, for the notebook --------------------------------------------------------


@dataclass
class Budget:
    """One view measured against every line of the capstone's budget."""

    label: str
    latency_s: float
    status: int
    read_sql: list[str]
    citations: list[str]  # problems; empty when right
    burst: BurstResult
    other_model: str  # the problem; empty when the second model got its own answer
    result: Any  # LoadResult of the open-loop run
    load_calls: int  # LLM calls the load cost
    load_documents: int  # distinct documents it asked about
    faults: list[FaultResult]

    @property
    def n_reads(self) -> int:
        return len(self.read_sql)

    @property
    def p95_limit_ms(self) -> float:
        return P95_RATIO * self.latency_s * 1000

    def lines(self) -> list[tuple[str, bool]]:
        """(what was measured, whether it meets the budget), in the order of the spec."""
        r = self.result
        p95 = r.p95_ms or 0.0
        bad_faults = [f.fault for f in self.faults if f.problem]
        return [
            (f"{self.n_reads} reads", self.status == 200 and self.n_reads <= MAX_READS),
            (
                "right" if not self.citations else self.citations[0][:80],
                self.status == 200 and not self.citations,
            ),
            (
                f"{self.burst.upstream} call{'' if self.burst.upstream == 1 else 's'} "
                f"({self.burst.elapsed_s:.1f} s)",
                self.burst.upstream <= MAX_UPSTREAM and set(self.burst.statuses) == {200},
            ),
            ("own answer" if not self.other_model else self.other_model[:80], not self.other_model),
            (
                f"p95 {p95:.0f} ms, {r.error_rate:.0%} errors; {r.requests} requests, "
                f"{self.load_calls} LLM calls",
                r.requests > 0 and p95 <= self.p95_limit_ms and r.error_rate == 0,
            ),
            (
                f"{len(self.faults) - len(bad_faults)} of {len(self.faults)} mapped"
                + (f" (not: {', '.join(bad_faults)})" if bad_faults else ""),
                not bad_faults,
            ),
        ]


BUDGET_ROWS = (
    ("reads per summary", f"≤ {MAX_READS}"),
    ("citations", "this document's chunks, as cited"),
    (f"LLM calls for {BURST} identical requests", f"≤ {MAX_UPSTREAM}"),
    (f"`?model={OTHER_MODEL}` afterwards", "its own answer"),
    ("p95 under open-loop load", f"≤ {P95_RATIO:g} × latency_s, 0 errors"),
    ("LLM faults", "504 / 429 / 503 / 502, JSON, logged"),
)


def budget_table(*budgets: Budget) -> str:
    """Markdown: one row per budget line, one column per measured view (✅ / ❌)."""
    head = "| budget | limit | " + " | ".join(b.label for b in budgets) + " |"
    rule = "|---|---|" + "---|" * len(budgets)
    rows = []
    for i, (name, limit) in enumerate(BUDGET_ROWS):
        cells = []
        for b in budgets:
            text, ok = b.lines()[i]
            cells.append(f"{'✅' if ok else '❌'} {text.replace('|', '/')}")
        rows.append(f"| {name} | {limit} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows])


async def budget(
    view: Callable[..., Any],
    *,
    label: str,
    latency_s: float = 0.5,
    duration_s: float = 4,
    arrival_rate: float = 20.0,
    progress: bool = True,
) -> Budget:
    """Measure `view` against every line of the budget, as the checks of step 08 do.

    report = await budget(summary, label="yours", latency_s=s.latency_s)
    """
    from labkit.steps.probes import lab_mock, mock_settings

    llm = lab_mock()
    # Each load arrival asks for the next document: about two requests per document.
    n_load = max(10, round(arrival_rate * duration_s / 2))
    docs = await fresh_documents(2 + n_load)
    quiet = {"outlier_rate": 0, "rpm": 0, "tpm": 0, "faults": {}, "fault": None}
    try:
        with mock_settings(llm, latency_s=latency_s, **quiet):
            async with served(view) as s:
                response, log = await one_summary(s, docs[0])
                data = json_of(response) or {}
                citations = await citation_problems(data, docs[0]) if data else ["no JSON"]
                burst = await identical_burst(s, docs[1], llm)
                calls_before = llm.stats()["requests_total"]
                other = await s.get(docs[1].id, model=OTHER_MODEL)
                other_calls = llm.stats()["requests_total"] - calls_before
                calls_before = llm.stats()["requests_total"]
                result = await load(
                    s,
                    docs[2:],
                    arrival_rate=arrival_rate,
                    duration_s=duration_s,
                    latency_s=latency_s,
                    label=label,
                    progress=progress,
                )
                load_calls = llm.stats()["requests_total"] - calls_before
            faults = await fault_matrix(view, llm)
    finally:
        await delete_documents(docs)
    return Budget(
        label=label,
        latency_s=latency_s,
        status=response.status_code,
        read_sql=reads(log),
        citations=citations if response.status_code == 200 else [f"HTTP {response.status_code}"],
        burst=burst,
        other_model=other_model_problem(other, other_calls),
        result=result,
        load_calls=load_calls,
        load_documents=n_load,
        faults=faults,
    )


def other_model_problem(response: Any, calls: int) -> str:
    """Why the answer for OTHER_MODEL is not its own; empty when it is.

    The mock's reply text can repeat across models (when the echo of the prompt fills the
    reply), so the evidence is the model the answer names and the LLM call it cost.
    """
    data = json_of(response) or {}
    if response.status_code != 200:
        return f"answered {response.status_code}"
    if data.get("model") != OTHER_MODEL:
        return f"answered by {data.get('model')!r}, not {OTHER_MODEL!r}"
    if calls < 1:
        return "was answered without calling the LLM: another model's cached answer"
    return ""
