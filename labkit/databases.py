"""Database connections as step 04 counts them: open in Django, and at the PostgreSQL server.

Under ASGI, each request's async ORM calls run in a thread of that request's own (Django wraps
every request in asgiref's `ThreadSensitiveContext`), and Django keeps one connection per
thread: fifty requests in flight hold fifty connections until each one ends, or until a pool
caps them. Django has no signal for a closed connection, so the gauge here remembers every
connection object it saw open (`connection_created`) and asks them, when asked, whether they
still hold a connection.

    async with connection_peak() as held:          # Django's side, any backend
        await burst()
    held.peak, held.opened

    add_database("pool", pg.url, pool={"max_size": 4})   # a second alias at run time
    with routed_to("pool"), backend_peak(pg.url) as backends:
        ...                                        # every model query goes to "pool"
    backends.peak                                  # PostgreSQL's side: pg_stat_activity
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

_seen: weakref.WeakSet[Any] = weakref.WeakSet()
_lock = threading.Lock()
_peaks: list[ConnectionPeak] = []
_installed = False


def install() -> None:
    """Start remembering every Django connection opened from now on (idempotent)."""
    global _installed
    with _lock:
        if _installed:
            return
        from django.db.backends.signals import connection_created

        connection_created.connect(_on_created, dispatch_uid="labkit.databases")
        _installed = True


def open_connections(alias: str | None = None) -> int:
    """How many connections opened since `install()` are open now, in every thread."""
    install()
    with _lock:
        return _count(alias)


def _count(alias: str | None) -> int:
    # Reading another thread's `connection` attribute is a plain read: no query, no lock.
    return sum(
        1
        for wrapper in _seen
        if wrapper.connection is not None and (alias is None or wrapper.alias == alias)
    )


def _on_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    with _lock:
        _seen.add(connection)
        for peak in _peaks:
            peak.observe()


@dataclass
class ConnectionPeak:
    """Connections opened inside a block, and the most open at once beyond those at entry.

    The count only grows when a connection opens, so checking at each opening catches the peak.
    """

    alias: str | None = None
    baseline: int = 0
    peak: int = 0
    opened: int = 0

    def observe(self) -> None:
        """Called under the module lock at every opening."""
        self.opened += 1
        self.peak = max(self.peak, _count(self.alias) - self.baseline)

    def now(self) -> int:
        """Connections open now beyond those open at entry."""
        with _lock:
            return max(_count(self.alias) - self.baseline, 0)

    def __enter__(self) -> ConnectionPeak:
        install()
        with _lock:
            self.baseline = _count(self.alias)
            self.peak = self.opened = 0
            _peaks.append(self)
        return self

    def __exit__(self, *exc: object) -> None:
        with _lock:
            _peaks.remove(self)

    async def __aenter__(self) -> ConnectionPeak:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)


def connection_peak(alias: str | None = None) -> ConnectionPeak:
    """Measure the Django connections of the code inside `with` (all threads, `alias` or all)."""
    return ConnectionPeak(alias=alias)


@dataclass
class BackendPeak:
    """Client connections PostgreSQL reported for one database, sampled in a thread."""

    url: str
    interval_s: float = 0.01
    peak: int = 0
    last: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    error: str = ""

    def __enter__(self) -> BackendPeak:
        import psycopg

        # A connection of its own, outside Django, not counted in what it reports.
        self._conn = psycopg.connect(self.url, autocommit=True)
        self.peak = self.last = self._sample()
        self._thread = threading.Thread(target=self._run, name="labkit-pg-backends", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self._conn.close()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.last = self._sample()
            except Exception as error:  # a sampler must not kill the cell; say what happened
                self.error = f"{type(error).__name__}: {error}"
                return
            self.peak = max(self.peak, self.last)

    def _sample(self) -> int:
        self.samples += 1
        row = self._conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
            "AND backend_type = 'client backend' AND pid <> pg_backend_pid()"
        ).fetchone()
        return int(row[0]) if row else 0


def backend_peak(url: str) -> BackendPeak:
    """Sample PostgreSQL's client connections to `url`'s database while the block runs."""
    return BackendPeak(url=url)


def add_database(
    alias: str,
    url: str,
    *,
    pool: dict[str, Any] | None = None,
    conn_max_age: float = 0,
    prepare: bool = True,
) -> dict[str, Any]:
    """Add database `alias` at run time; migrate it and copy the corpus into it.

    `pool` is psycopg's pool options (e.g. `{"max_size": 4, "timeout": 30}`), or None for a
    connection per thread. With `prepare=False` nothing connects yet. Running it again with the
    same arguments is harmless; other settings under a used alias raise ValueError, since
    threads that already used the alias would keep the old ones.
    """
    import dj_database_url
    from django.db import connections

    config = dj_database_url.parse(url, conn_max_age=conn_max_age)
    if pool is not None:
        config.setdefault("OPTIONS", {})["pool"] = dict(pool)
    # configure_settings fills in Django's defaults; it insists on seeing a default alias.
    both = {"default": dict(connections.settings["default"]), alias: config}
    configured = connections.configure_settings(both)[alias]
    if alias in connections.settings and connections.settings[alias] != configured:
        raise ValueError(
            f"database {alias!r} is already set up with other settings; give the new "
            "settings a new alias"
        )
    connections.settings[alias] = configured
    if prepare:
        from labkit.boot import in_worker_thread

        in_worker_thread(_migrate_and_copy, alias)
    return configured


def close_pools(*aliases: str) -> list[str]:
    """Close the psycopg pools Django opened in this process (or `aliases`'); return them."""
    from django.db.backends.postgresql.base import DatabaseWrapper

    pools = DatabaseWrapper._connection_pools
    closed = sorted(alias for alias in pools if not aliases or alias in aliases)
    for alias in closed:
        pools.pop(alias).close()
    return closed


def _migrate_and_copy(alias: str) -> None:
    from django.core.management import call_command

    from labproject.ai.models import Chunk, Document

    call_command("migrate", database=alias, verbosity=0, interactive=False)
    if Document.objects.using(alias).exists():
        return
    # The same rows, ids included, so /api/documents/1/summary/ means the same document.
    Document.objects.using(alias).bulk_create(Document.objects.using("default").all())
    Chunk.objects.using(alias).bulk_create(Chunk.objects.using("default").all(), batch_size=500)


class _OneDatabase:
    """A router sending every read and write to one alias."""

    def __init__(self, alias: str) -> None:
        self.alias = alias

    def db_for_read(self, model: Any, **hints: Any) -> str:
        return self.alias

    def db_for_write(self, model: Any, **hints: Any) -> str:
        return self.alias


@contextmanager
def routed_to(alias: str) -> Iterator[None]:
    """Send every model query in the process to database `alias` inside the block."""
    from django.test import override_settings

    with override_settings(DATABASE_ROUTERS=[_OneDatabase(alias)]):
        yield
