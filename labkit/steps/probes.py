"""What the step checks share: the lab's mock, a view served for real, and the evidence.

    llm = lab_mock()                                   # CheckError if boot() has not run
    with mock_settings(llm, latency_s=0.3, rpm=0):     # restored afterwards
        async with ServedView(chat, route="chat") as served:
            first = await served.post("/api/chat/", json={"prompt": "hi"})
            burst = await served.burst(20, lambda i: {"json": {"prompt": f"hi {i}"}})
    expect_side_by_side(burst, single_s=0.5)           # Incorrect if they ran one by one

A view is served by an in-kernel uvicorn (`labkit.servers.ASGIServer`) behind a registry route,
so CSRF middleware, body parsing and the event loop behave as in production, unlike Django's
test client. Step modules import this inside `evaluate`, never at their top.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any

from labkit.exercises import CheckError, Incorrect

# Django reports a view's exception on `django.request` and a CSRF refusal on this logger.
_LOGGERS = ("django.request", "django.security.csrf")


def require_django() -> None:
    """Raise CheckError unless `boot()` has configured Django in this process."""
    from django.apps import apps

    if not apps.ready:
        raise CheckError("Run the setup cell (`lab = boot()`) first: Django is not configured.")


def lab_mock() -> Any:
    """The mock LLM the check measures at: the grader's own when grading, else `boot()`'s."""
    from labkit.boot import mock_llm
    from labkit.steps.subject import checker

    if checker() is not None:
        return checker().mock

    llm = mock_llm()
    if llm is None or not llm.running:
        raise CheckError(
            "This check measures calls at the lab's mock LLM, and none is running here. Run "
            "the setup cell (`lab = boot()`) first; if you set LAB_LLM_BASE_URL to your own "
            "endpoint, unset it for the checks."
        )
    return llm


@contextmanager
def mock_settings(llm: Any, **changes: Any) -> Iterator[None]:
    """Apply mock settings for the block, then put back the values they replaced."""
    config = llm.config()
    previous = {key: config[key] for key in changes}
    llm.configure(**changes)
    try:
        yield
    finally:
        llm.configure(**previous)


@contextmanager
def django_log() -> Iterator[list[str]]:
    """Collect what Django logs about failed requests, one line each, instead of printing it.

    A 500 gives "SynchronousOnlyOperation: You cannot call this from an async context - ...";
    a CSRF refusal "Forbidden (CSRF cookie not set.): /api/chat/".
    """
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.exc_info and record.exc_info[1] is not None:
                error = record.exc_info[1]
                lines.append(f"{type(error).__name__}: {error}"[:300])
            else:
                lines.append(record.getMessage()[:300])

    handler = Collect(level=logging.WARNING)
    saved = []
    for name in _LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.handlers[:], logger.propagate))
        # Only ours while the check runs: no traceback walls in the learner's cell.
        logger.handlers, logger.propagate = [handler], False
    try:
        yield lines
    finally:
        for logger, handlers, propagate in saved:
            logger.handlers, logger.propagate = handlers, propagate


@dataclass
class Burst:
    """`n` requests sent at once: their statuses and bodies, and how long they took together."""

    n: int
    statuses: list[int]
    bodies: list[str]
    elapsed_s: float
    log: list[str] = field(default_factory=list)

    def status_line(self) -> str:
        """E.g. "18 × 200, 2 × 500"."""
        counts = Counter(self.statuses)
        return ", ".join(f"{n} × {status}" for status, n in sorted(counts.items()))

    def failed(self) -> list[int]:
        return [i for i, status in enumerate(self.statuses) if status != 200]


# A view that does not block serves a burst in a small share of the serial time (measured
# 0.1-0.2 with a client built per request); a blocking one needs all of it.
SERIAL_SHARE = 0.4


def expect_side_by_side(burst: Burst, single_s: float, *, llm_peak: int | None = None) -> str:
    """Raise Incorrect if `burst` took about as long as its requests one after another.

    A view that blocks its event loop serves a burst one request at a time: n requests take
    about n times one. Timing the whole burst is robust where per-request spans are not:
    uvicorn starts every request's task at once, blocked or not, so server-side spans all
    overlap even when the views inside them ran one by one.
    """
    serial_s = burst.n * single_s
    calls = "call" if llm_peak == 1 else "calls"
    seen = "" if llm_peak is None else f"; the LLM saw at most {llm_peak} {calls} at once"
    measured = (
        f"{burst.n} concurrent requests took {burst.elapsed_s:.2f} s; one alone took "
        f"{single_s:.2f} s, so one after another they would take {serial_s:.1f} s{seen}"
    )
    # The LLM's count of calls in flight is exact where timings are noisy (a single request slowed
    # by a busy machine makes `serial_s` too generous): a loop blocked during the LLM call lets
    # the mock see one call at a time.
    one_at_a_time = llm_peak is not None and burst.n > 1 and llm_peak <= 1
    if one_at_a_time or burst.elapsed_s > SERIAL_SHARE * serial_s:
        raise Incorrect(
            f"{measured}. They ran one after another: something in your view blocks the "
            "event loop (a sync client, `time.sleep`, a sync library call)."
        )
    return f"{measured}. They ran side by side."


class ServedView:
    """Serve `view` behind registry route `route` on a fresh in-kernel uvicorn, for one check.

    The route's previous view comes back on exit, and the server stops.
    """

    def __init__(self, view: Callable[..., Any], *, route: str, timeout_s: float = 60.0) -> None:
        self.view = view
        self.route = route
        self.timeout_s = timeout_s
        self.log: list[str] = []
        self._stack = ExitStack()

    async def __aenter__(self) -> ServedView:
        from labkit.exercises.remote import Remote

        if isinstance(self.view, Remote):
            return await self._enter_remote(self.view)
        return await self._enter_local()

    async def _enter_remote(self, view: Any) -> ServedView:
        """Serve a sandbox's view: the route is set there, requests go over its socket."""
        import httpx2

        from labkit.grading.relay import relay_to
        from labkit.steps.subject import Raised, _unwrap

        self.channel = view.channel
        _unwrap(await self.channel.apost("serve", {"route": self.route, "name": view.name}))
        self.log = []
        # A real TCP port for anything the check starts (httpx clients, Locust): it relays to
        # the sandbox's socket, so the checker's requests reach the learner's view.
        self.server = relay_to(self.channel.path, name=f"check-{self.route}")
        self._stack.callback(self.server.stop)
        self.http = httpx2.AsyncClient(
            base_url=self.server.url,
            timeout=self.timeout_s,
            limits=httpx2.Limits(max_connections=200, max_keepalive_connections=200),
        )
        try:
            await self._sync_log()
        except Raised:
            pass
        return self

    async def _sync_log(self) -> None:
        if getattr(self, "channel", None) is None:
            return
        answer = await self.channel.apost("log", {})
        lines = answer.get("lines", []) if isinstance(answer, dict) else []
        self.log.extend(str(line)[:300] for line in lines[:50])

    async def _enter_local(self) -> ServedView:
        import httpx2

        from labkit.servers import ASGIServer
        from labproject import routes
        from labproject.asgi import application

        with ExitStack() as stack:
            stack.enter_context(routes.override(self.route, self.view))
            self.log = stack.enter_context(django_log())
            self.server = stack.enter_context(ASGIServer(application, name=f"check-{self.route}"))
            # Enough connections for any burst, and patience for a view that blocks its loop.
            self.http = httpx2.AsyncClient(
                base_url=self.server.url,
                timeout=self.timeout_s,
                limits=httpx2.Limits(max_connections=200, max_keepalive_connections=200),
            )
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self.http.aclose()
        finally:
            self._stack.close()
            if getattr(self, "channel", None) is not None:
                await self.channel.apost("unserve", {"route": self.route})

    async def request(self, method: str, path: str, **options: Any) -> Any:
        """Send one request (httpx2 keywords: json=, content=, headers=); return the response."""
        response = await self.http.request(method, path, **options)
        await self._sync_log()
        return response

    async def post(self, path: str, **options: Any) -> Any:
        return await self.request("POST", path, **options)

    async def burst(
        self,
        n: int,
        options: Callable[[int], dict[str, Any]],
        *,
        method: str = "POST",
        path: str = "/api/chat/",
    ) -> Burst:
        """Send `n` requests at once (`options(i)` gives request i's keywords) and measure."""
        import asyncio

        started = time.perf_counter()
        logged = len(self.log)
        responses = await asyncio.gather(
            *(self.http.request(method, path, **options(i)) for i in range(n))
        )
        elapsed_s = time.perf_counter() - started
        await self._sync_log()
        return Burst(
            n=n,
            statuses=[r.status_code for r in responses],
            bodies=[r.text for r in responses],
            elapsed_s=elapsed_s,
            log=self.log[logged:],
        )


def numbered(lines: list[str], limit: int = 5) -> str:
    """The first `limit` distinct lines, numbered, with a count of the rest."""
    distinct = list(dict.fromkeys(lines))
    shown = [f"{i}. {line}" for i, line in enumerate(distinct[:limit], start=1)]
    if len(distinct) > limit:
        shown.append(f"... and {len(distinct) - limit} more")
    return "\n".join(shown)
