"""Nothing is lost under load: each 2xx answer has exactly one AICall row, SQLite and PostgreSQL.

200 concurrent users against the reference async chat served by a uvicorn process, with the
mock LLM answering in 0.2 s, for a few seconds. Every prompt is unique, so each 2xx can be
matched to its row; "database is locked" or a pool timeout anywhere fails the test.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from collections import Counter

import httpx
import pytest

from labkit.servers import UvicornProcess
from tests.fixtures.api import REFERENCE_APP, REPO, migrate, subprocess_env
from tests.services import postgres_service, services_state  # noqa: F401 (fixtures)

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("mock_llm")]

USERS = 200
DURATION_S = 3.0
LATENCY_S = 0.2
FAILURE_WORDS = ("database is locked", "PoolTimeout", "couldn't get a connection")


async def _load(url: str, run: str) -> tuple[list[tuple[str, int, str]], list[str]]:
    """Closed-loop users, each posting unique prompts until the time is up."""
    results: list[tuple[str, int, str]] = []
    errors: list[str] = []
    deadline = time.monotonic() + DURATION_S
    limits = httpx.Limits(max_connections=USERS, max_keepalive_connections=USERS)

    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:

        async def user(n: int) -> None:
            i = 0
            while time.monotonic() < deadline:
                prompt = f"{run} u{n} r{i}"
                i += 1
                try:
                    response = await client.post("/api/chat/", json={"prompt": prompt})
                except httpx.HTTPError as exc:
                    errors.append(f"{prompt}: {exc!r}")
                    continue
                results.append((prompt, response.status_code, response.text[:300]))

        await asyncio.gather(*(user(n) for n in range(USERS)))
    return results, errors


def _check(
    results, errors: list[str], rows: Counter[str], server: UvicornProcess, label: str
) -> None:
    statuses = Counter(status for _, status, _ in results)
    ok = [prompt for prompt, status, _ in results if 200 <= status < 300]
    rps = len(results) / DURATION_S
    print(
        f"\n{label}: users={USERS} latency_s={LATENCY_S} requests={len(results)} rps={rps:.0f} "
        f"statuses={dict(statuses)} client_errors={len(errors)} rows={sum(rows.values())}"
    )
    bad = [text for _, status, text in results if status >= 300]
    assert not any(word in text for text in bad for word in FAILURE_WORDS), bad[:3]
    assert not any(word in server.logs(tail=500) for word in FAILURE_WORDS), server.logs(tail=30)
    assert not errors and statuses.keys() == {200}, (
        statuses,
        errors[:5],
        bad[:3],
        server.logs(tail=40),
    )
    assert len(ok) >= USERS  # every user got at least one answer: the load really ran
    missing = [prompt for prompt in ok if rows[prompt] != 1]
    assert missing == [], f"{len(missing)} 2xx answers without exactly one row: {missing[:5]}"
    assert sum(rows.values()) == len(ok)


@pytest.fixture
def fast_llm(mock_llm):
    mock_llm.reset(config=True)
    mock_llm.configure(latency_s=LATENCY_S)
    yield mock_llm
    mock_llm.reset(config=True)


def _serve(env: dict[str, str]) -> UvicornProcess:
    return UvicornProcess(
        REFERENCE_APP,
        env=env,
        cwd=REPO,
        # Keep-alive longer than the run: on a loaded machine the client can reuse a connection
        # just as uvicorn's 5 s idle timer closes it, a reset that is not the server's doing.
        extra_args=["--factory", "--timeout-keep-alive", "30"],
    )


def test_nothing_lost_on_sqlite(fast_llm, tmp_path):
    env = subprocess_env(fast_llm.base_url, LAB_STATE_DIR=str(tmp_path))
    migrate(env)
    run = f"nl-{uuid.uuid4().hex[:8]}"
    with _serve(env) as server:
        results, errors = asyncio.run(_load(server.url, run))
        with sqlite3.connect(tmp_path / "db.sqlite3") as db:
            rows = Counter(
                dict(db.execute(
                    "SELECT prompt, COUNT(*) FROM ai_aicall WHERE prompt LIKE ? GROUP BY prompt",
                    (f"{run} %",),
                ))
            )  # fmt: skip
        _check(results, errors, rows, server, "sqlite")


@pytest.mark.service("postgres")
def test_nothing_lost_on_postgres(fast_llm, postgres_service):  # noqa: F811 (fixture)
    import psycopg

    env = subprocess_env(fast_llm.base_url, LAB_DATABASE_URL=postgres_service.url)
    migrate(env)
    run = f"nl-{uuid.uuid4().hex[:8]}"
    with _serve(env) as server:
        results, errors = asyncio.run(_load(server.url, run))
        with psycopg.connect(postgres_service.url) as db:
            rows = Counter(
                dict(db.execute(
                    "SELECT prompt, COUNT(*) FROM ai_aicall WHERE prompt LIKE %s GROUP BY prompt",
                    (f"{run} %",),
                ).fetchall())
            )  # fmt: skip
        _check(results, errors, rows, server, "postgres")
