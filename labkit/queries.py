"""Count the SQL queries of async code, in whatever thread they run.

Django's `CaptureQueriesContext` reads one thread's connection, so around awaited code it
raises or counts 0: async ORM calls run in worker threads. Here every database connection gets
an execute wrapper the moment it is created (the `connection_created` signal), and the wrapper
writes to the query logs active in the *context* of the code that ran the query. asgiref's
`sync_to_async`, `asyncio.to_thread` and Django's handlers copy that context into their
threads, so queries are attributed to the code that caused them, even when several requests
run at once.

    async with count_queries() as log:     # or a plain `with`
        await summary_context(1)
    log.n_queries, print(log)
"""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

_active: contextvars.ContextVar[tuple[QueryLog, ...]] = contextvars.ContextVar(
    "labkit_query_logs", default=()
)
_installed = False
_install_lock = threading.Lock()
# Logs that take every query of the process, whatever the context (count_all_queries).
_everywhere: list[QueryLog] = []


@dataclass(frozen=True)
class Query:
    """One executed statement."""

    sql: str
    duration_ms: float
    thread: str
    alias: str
    many: bool = False


@dataclass
class QueryLog:
    """The queries run by code inside `with`/`async with`: `len(log)`, `log.sql`, `print(log)`."""

    label: str = ""
    queries: list[Query] = field(default_factory=list)
    everywhere: bool = False  # every query of the process, not only this context's
    _tokens: list[contextvars.Token] = field(default_factory=list, repr=False)

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    @property
    def sql(self) -> list[str]:
        return [query.sql for query in self.queries]

    @property
    def threads(self) -> set[str]:
        return {query.thread for query in self.queries}

    def __len__(self) -> int:
        return len(self.queries)

    def __enter__(self) -> QueryLog:
        install()
        if self.everywhere:
            with _install_lock:
                _everywhere.append(self)
        else:
            self._tokens.append(_active.set((*_active.get(), self)))
        return self

    def __exit__(self, *exc: object) -> None:
        if self.everywhere:
            with _install_lock:
                _everywhere.remove(self)
        else:
            _active.reset(self._tokens.pop())

    async def __aenter__(self) -> QueryLog:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def numbered(self, limit: int = 20) -> str:
        """The SQL, numbered like Django's assertNumQueries failures; long lists are cut."""
        lines = [f"{i}. {query.sql}" for i, query in enumerate(self.queries[:limit], start=1)]
        if len(self.queries) > limit:
            lines.append(f"... and {len(self.queries) - limit} more")
        return "\n".join(lines)

    def __str__(self) -> str:
        head = f"{self.n_queries} {'query' if self.n_queries == 1 else 'queries'}"
        head += f" ({self.label})" if self.label else ""
        return f"{head}:\n{self.numbered()}" if self.queries else head

    def _repr_markdown_(self) -> str:
        return "```\n" + str(self) + "\n```"


def count_queries(label: str = "") -> QueryLog:
    """Return a context manager recording the queries of the code inside it, in any thread."""
    return QueryLog(label=label)


def count_all_queries(label: str = "") -> QueryLog:
    """Record every query the process runs while the block runs (servers' requests too)."""
    return QueryLog(label=label, everywhere=True)


def track_requests(app: Callable[..., Any], logs: list[QueryLog]) -> Callable[..., Any]:
    """Wrap a WSGI or ASGI app so each request's queries land in a new QueryLog in `logs`."""
    import inspect

    if inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(type(app).__call__):

        async def asgi(scope, receive, send):
            if scope["type"] != "http":
                return await app(scope, receive, send)
            log = QueryLog(label=f"{scope['method']} {scope['path']}")
            with log:
                try:
                    return await app(scope, receive, send)
                finally:
                    logs.append(log)

        return asgi

    def wsgi(environ, start_response):
        log = QueryLog(label=f"{environ['REQUEST_METHOD']} {environ.get('PATH_INFO', '')}")

        # A generator keeps the log active while the server iterates the body, where a
        # streaming response runs its queries; the app itself only runs at the first next().
        def body():
            with log:
                result = app(environ, start_response)
                try:
                    yield from result
                finally:
                    getattr(result, "close", lambda: None)()
                    logs.append(log)

        return body()

    return wsgi


def install() -> None:
    """Hook every connection created from now on, and this thread's existing ones.

    `boot()` calls it before the first query. A connection opened earlier in *another* thread
    cannot be reached (Django keeps connections per thread and per async context) and is
    hooked only when it reconnects.
    """
    global _installed
    from django.db import connections

    with _install_lock:
        if not _installed:
            from django.db.backends.signals import connection_created

            connection_created.connect(_on_connection_created, dispatch_uid="labkit.queries")
            _installed = True
    for connection in connections.all(initialized_only=True):
        _hook(connection)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    _hook(connection)


def _hook(connection: Any) -> None:
    # A wrapper object survives reconnects (CONN_MAX_AGE=0 closes after every request), so the
    # signal fires again for the same wrapper: hook it once.
    if _record not in connection.execute_wrappers:
        connection.execute_wrappers.append(_record)


def _record(execute: Callable[..., Any], sql: str, params: Any, many: bool, context: dict) -> Any:
    logs = _active.get() + tuple(_everywhere)
    if not logs:
        return execute(sql, params, many, context)
    started = time.perf_counter()
    try:
        return execute(sql, params, many, context)
    finally:
        connection = context["connection"]
        try:
            shown = connection.ops.last_executed_query(context["cursor"], sql, params)
        except Exception:  # some backends cannot render every statement; the template will do
            shown = sql
        query = Query(
            sql=str(shown),
            duration_ms=(time.perf_counter() - started) * 1000,
            thread=threading.current_thread().name,
            alias=connection.alias,
            many=many,
        )
        for log in logs:
            log.queries.append(query)
