"""The grader's PostgreSQL: a database per submission, and what it saw, read from outside.

In-process query counts can be forged by the code they count. So when PostgreSQL is installed
the grader runs one cluster for the batch (labkit's user-space service), gives each submission
a role and a database of its own (no other database accepts that role), and logs every
statement that role runs. The checker reads that log and `pg_stat_activity` with the
superuser's password, which never enters a sandbox:

    cluster = GradingCluster.start(home)           # once per grading run
    db = cluster.submission("a1b2")                # role + database for one notebook
    db.sandbox_url(socket_dir)                     # what the sandbox's Django connects to
    witness = Witness(db.spec())                   # in the checker process
    with witness.queries("load_context") as log: ...
"""

from __future__ import annotations

import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

SOCKET_NAME = ".s.PGSQL.5432"  # what libpq looks for in a socket folder, port 5432
# What Django runs on every new connection before any query of the code (the kit's in-process
# counter never sees it either): not counted.
_SESSION_SETUP = ("SELECT set_config('TimeZone'",)
LOG_PREFIX = "%m [%p] %u@%d "
# Statements as PostgreSQL logs them for a role with log_statement = 'all'. Django's psycopg
# binds client-side, so queries appear as "statement:"; server-side binding as "execute".
_LOGGED = re.compile(r"^\S+ \S+ \S+ \[\d+\] (?P<who>\S+@\S+) LOG:  (?:statement|execute [^:]*): ")


@dataclass
class SubmissionDatabase:
    """One submission's role and database in the grading cluster."""

    role: str
    password: str
    name: str
    admin_url: str  # the superuser's, for this database: checker only
    port: int
    log: str

    def sandbox_url(self, socket_dir: str) -> str:
        """The URL the sandbox's Django uses: the role's password, through a Unix socket."""
        return f"postgres://{self.role}:{self.password}@{quote(socket_dir, safe='')}/{self.name}"

    def spec(self) -> dict[str, Any]:
        return {"role": self.role, "name": self.name, "admin_url": self.admin_url, "log": self.log}


class GradingCluster:
    """One PostgreSQL cluster for a grading run, started in user space on loopback."""

    def __init__(self, record: Any, superuser_url: str, home: Path | None = None) -> None:
        self.record = record
        self.superuser_url = superuser_url
        self.home = home
        self._reaper: Any = None

    @classmethod
    def start(cls, home: Path) -> GradingCluster:
        from labkit.services.base import free_port, secret
        from labkit.services.postgres import SUPERUSER, PostgresService

        record = PostgresService().start(home, free_port())
        password = secret(home / "password")
        url = f"postgres://{SUPERUSER}:{password}@127.0.0.1:{record.port}/postgres"
        cluster = cls(record, url, home)
        cluster._reap_with_us()
        cluster._execute(
            f"ALTER SYSTEM SET log_line_prefix = '{LOG_PREFIX}'",
            "SELECT pg_reload_conf()",
            # No role but the superuser may connect where it was not given a database.
            "REVOKE CONNECT ON DATABASE postgres FROM PUBLIC",
            "REVOKE CONNECT ON DATABASE template1 FROM PUBLIC",
            "REVOKE CONNECT ON DATABASE lab FROM PUBLIC",
        )
        return cluster

    def submission(self, tag: str) -> SubmissionDatabase:
        """Create a role and a database that only it (and the superuser) may connect to."""
        from psycopg import sql

        role, name, password = f"learner_{tag}", f"grade_{tag}", secrets.token_urlsafe(18)
        self._execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {} CONNECTION LIMIT 200").format(
                sql.Identifier(role), sql.Literal(password)
            ),
            sql.SQL("ALTER ROLE {} SET log_statement = 'all'").format(sql.Identifier(role)),
            sql.SQL("CREATE DATABASE {} OWNER {}").format(
                sql.Identifier(name), sql.Identifier(role)
            ),
            sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(sql.Identifier(name)),
            sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(
                sql.Identifier(name), sql.Identifier(role)
            ),
        )
        admin_url = self.superuser_url.rsplit("/", 1)[0] + f"/{name}"
        return SubmissionDatabase(
            role, password, name, admin_url, self.record.port, self.record.log
        )

    def drop(self, database: SubmissionDatabase) -> None:
        from psycopg import sql

        self._execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(database.name)
            ),
            sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(database.role)),
        )

    def stop(self) -> None:
        """Stop the server and remove its data: a grading run leaves nothing behind."""
        from labkit.services.postgres import PostgresService

        PostgresService().stop(self.record, timeout_s=10)
        if self._reaper is not None:
            self._reaper.kill()
            self._reaper.wait()
        if self.home is not None:
            PostgresService().purge(self.home)

    def _reap_with_us(self) -> None:
        """A grader killed outright must not leave the server running: the kit's reaper ends
        the postmaster's process group when this process dies."""
        import os
        import subprocess
        import sys

        try:
            group = os.getpgid(self.record.pid)
        except ProcessLookupError:
            return
        if group == os.getpgrp():
            return  # never our own group
        self._reaper = subprocess.Popen(
            [sys.executable, "-m", "labkit.servers.reaper", str(os.getpid()), str(group)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip

    def _execute(self, *statements: Any) -> None:
        import psycopg

        with psycopg.connect(self.superuser_url, connect_timeout=5, autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)


@dataclass
class _LogWindow:
    """The statements one role ran while the block ran, read from the server's log."""

    witness: Witness
    label: str = ""
    queries: list[Any] = field(default_factory=list)
    _start: int = 0

    @property
    def n_queries(self) -> int:
        return len(self.queries)

    @property
    def sql(self) -> list[str]:
        return [query.sql for query in self.queries]

    def __len__(self) -> int:
        return len(self.queries)

    def __enter__(self) -> _LogWindow:
        self._start = self.witness.log_size()
        return self

    def __exit__(self, *exc: object) -> None:
        self.queries = self.witness.statements_since(self._start)

    async def __aenter__(self) -> _LogWindow:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        import asyncio

        await asyncio.to_thread(self.__exit__, *exc)

    def numbered(self, limit: int = 20) -> str:
        from labkit.queries import QueryLog

        return QueryLog(self.label, self.queries).numbered(limit)

    def __str__(self) -> str:
        from labkit.queries import QueryLog

        return str(QueryLog(self.label, self.queries))


class _ConnectionWatch:
    """Connections of the role open now and at most, sampled from pg_stat_activity."""

    def __init__(self, witness: Witness, interval_s: float = 0.01) -> None:
        self.witness = witness
        self.interval_s = interval_s
        self.baseline = 0
        self.peak = 0
        self.opened = 0
        self._last = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def now(self) -> int:
        return max(self.witness.open_connections() - self.baseline, 0)

    def __enter__(self) -> _ConnectionWatch:
        self.baseline = self._last = self.witness.open_connections()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="labkit-witness")
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    async def __aenter__(self) -> _ConnectionWatch:
        return self.__enter__()

    async def __aexit__(self, *exc: object) -> None:
        self.__exit__(*exc)

    def _sample(self) -> None:
        while not self._stop.is_set():
            count = self.witness.open_connections()
            self.opened += max(count - self._last, 0)
            self._last = count
            self.peak = max(self.peak, count - self.baseline)
            time.sleep(self.interval_s)


class Witness:
    """The checker's view of one submission's database (superuser access; never sandboxed)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.role = str(spec["role"])
        self.name = str(spec["name"])
        self.admin_url = str(spec["admin_url"])
        self.log = Path(spec["log"])
        self._who = f"{self.role}@{self.name}"
        self._conn: Any = None
        self._lock = threading.Lock()

    def queries(self, label: str = "") -> _LogWindow:
        return _LogWindow(self, label)

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def connections(self) -> _ConnectionWatch:
        return _ConnectionWatch(self)

    def log_size(self) -> int:
        self._settle()
        return self.log.stat().st_size

    def statements_since(self, offset: int) -> list[Any]:
        from labkit.queries import Query

        self._settle()
        with open(self.log, "rb") as log:
            log.seek(offset)
            text = log.read().decode("utf-8", "replace")
        found: list[Any] = []
        for line in text.splitlines():
            match = _LOGGED.match(line)
            if match and match.group("who") == self._who:
                if line[match.end() :].startswith(_SESSION_SETUP):
                    continue  # Django's per-connection setup, not a query of the code
                found.append(
                    Query(
                        sql=line[match.end() :][:500],
                        duration_ms=0.0,
                        thread="postgres",
                        alias="default",
                    )
                )
        return found

    def open_connections(self) -> int:
        with self._lock:
            if self._conn is None or self._conn.closed:
                import psycopg

                self._conn = psycopg.connect(self.admin_url, autocommit=True, connect_timeout=5)
            row = self._conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE usename = %s AND datname = %s",
                [self.role, self.name],
            ).fetchone()
        return int(row[0]) if row else 0

    def _settle(self) -> None:
        # The server writes its log from each backend as statements run; a statement that has
        # answered its client is logged (log_statement logs before executing), but the write
        # may still be in the kernel's buffers of another process: a short pause is enough.
        time.sleep(0.05)
