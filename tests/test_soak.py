"""A bounded soak: under steady load the server's memory and open files stay flat.

The reference async chat runs in a uvicorn process on SQLite; 10 users post for LAB_SOAK_S
seconds (default 60) with the mock answering in 0.1 s. The process's RSS and file descriptors
are sampled every second; the second half may not grow past the first beyond wide margins
(allocator warm-up and pools filling belong to the first half; a leak keeps growing).
"""

from __future__ import annotations

import asyncio
import os
import statistics
import time
import uuid
from collections import Counter

import httpx
import psutil
import pytest

from labkit.servers import UvicornProcess
from tests.fixtures.api import REFERENCE_APP, REPO, migrate, subprocess_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("mock_llm")]

SOAK_S = float(os.environ.get("LAB_SOAK_S", "60"))
USERS = 10
LATENCY_S = 0.1
# Wide margins: a shared 2-core machine, and Python's allocator keeps arenas it has used.
RSS_GROWTH_MB = 25.0
FD_GROWTH = 10


async def _soak(url: str, process: psutil.Process, run: str) -> tuple[list[tuple], Counter]:
    samples: list[tuple[float, float, int]] = []  # (t_s, rss_mb, fds)
    statuses: Counter[int] = Counter()
    started = time.monotonic()
    deadline = started + SOAK_S

    async def user(n: int, client: httpx.AsyncClient) -> None:
        i = 0
        while time.monotonic() < deadline:
            i += 1
            try:
                response = await client.post("/api/chat/", json={"prompt": f"{run} u{n} r{i}"})
                statuses[response.status_code] += 1
            except httpx.HTTPError:
                statuses[0] += 1

    async def sampler() -> None:
        while time.monotonic() < deadline:
            rss = process.memory_info().rss / 2**20
            samples.append((time.monotonic() - started, rss, process.num_fds()))
            await asyncio.sleep(1.0)

    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        await asyncio.gather(sampler(), *(user(n, client) for n in range(USERS)))
    return samples, statuses


@pytest.fixture
def steady_llm(mock_llm):
    mock_llm.reset(config=True)
    mock_llm.configure(latency_s=LATENCY_S)
    yield mock_llm
    mock_llm.reset(config=True)


def test_rss_and_fds_stay_flat(steady_llm, tmp_path):
    env = subprocess_env(steady_llm.base_url, LAB_STATE_DIR=str(tmp_path))
    migrate(env)
    with UvicornProcess(REFERENCE_APP, env=env, cwd=REPO, extra_args=["--factory"]) as server:
        process = psutil.Process(server.pid)
        samples, statuses = asyncio.run(_soak(server.url, process, f"soak-{uuid.uuid4().hex[:6]}"))
    half = len(samples) // 2
    first, second = samples[:half], samples[half:]
    rss_first, rss_second = max(s[1] for s in first), max(s[1] for s in second)
    fds_first, fds_second = max(s[2] for s in first), max(s[2] for s in second)
    rps = sum(statuses.values()) / SOAK_S
    print(
        f"\nsoak: {SOAK_S:g} s, users={USERS}, latency_s={LATENCY_S}, rps={rps:.0f}, "
        f"statuses={dict(statuses)}\n"
        f"  rss_mb: first half max {rss_first:.1f}, second half max {rss_second:.1f} "
        f"(median {statistics.median(s[1] for s in second):.1f})\n"
        f"  fds:    first half max {fds_first}, second half max {fds_second}"
    )
    assert len(samples) >= 10, "too few samples: the soak did not run"
    assert statuses[200] > 0 and set(statuses) == {200}, statuses
    assert rss_second <= rss_first + RSS_GROWTH_MB, (rss_first, rss_second)
    assert fds_second <= fds_first + FD_GROWTH, (fds_first, fds_second)
