"""The grader's PostgreSQL: a role and database per submission, and what it saw of them."""

from __future__ import annotations

import tempfile
from pathlib import Path

import psycopg
import pytest

from labkit.grading.relay import Relay
from labkit.grading.witness import SOCKET_NAME, GradingCluster, Witness
from labkit.services.postgres import PostgresService
from tests.conftest import require_service

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    require_service(
        "postgres", PostgresService().installed(), "PostgreSQL's initdb/pg_ctl are not installed"
    )
    found = GradingCluster.start(tmp_path_factory.mktemp("grading-pg"))
    yield found
    found.stop()


def test_the_witness_counts_every_statement_of_the_submissions_role(cluster):
    db = cluster.submission("t1")
    witness = Witness(db.spec())
    with tempfile.TemporaryDirectory() as sockets:  # what the sandbox sees: a Unix socket
        relay = Relay(listen_path=str(Path(sockets) / SOCKET_NAME), connect_port=db.port).start()
        try:
            with psycopg.connect(db.sandbox_url(sockets), autocommit=True) as conn:
                conn.execute("CREATE TABLE t (n int)")
                with witness.queries("three") as log:
                    for n in range(3):
                        conn.execute("INSERT INTO t VALUES (%s)", [n])
                with witness.connections() as held:
                    second = psycopg.connect(db.sandbox_url(sockets))
                    assert held.now() == 1
                    second.close()
        finally:
            relay.stop()
            witness.close()
    assert log.n_queries == 3, log.numbered()
    assert all("INSERT INTO t" in sql for sql in log.sql)
    cluster.drop(db)


def test_a_submissions_role_reaches_only_its_own_database(cluster):
    first, second = cluster.submission("t2"), cluster.submission("t3")
    url = f"postgres://{first.role}:{first.password}@127.0.0.1:{first.port}"
    for other in (second.name, "postgres", "lab"):
        with pytest.raises(psycopg.OperationalError, match="permission denied|not permitted"):
            psycopg.connect(f"{url}/{other}", connect_timeout=5).close()
    with psycopg.connect(f"{url}/{first.name}", connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (first.role,)
    cluster.drop(first)
    cluster.drop(second)
