"""Connections counted across threads and requests; run-time aliases, routing and pools."""

from __future__ import annotations

import asyncio
import threading
import uuid

import httpx
import pytest
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from labkit.databases import (
    add_database,
    backend_peak,
    close_pools,
    connection_peak,
    open_connections,
    routed_to,
)
from tests.services import postgres_service, services_state  # noqa: F401 (fixtures)

pytestmark = pytest.mark.usefixtures("django_db")


def _hold_in_threads(
    n: int, alias: str = "default", hold_s: float = 0.0, together: bool | None = None
) -> None:
    """`n` threads each open a connection on `alias`, then close it.

    `together` (the default without `hold_s`): all `n` hold theirs at the same moment, then
    each keeps it `hold_s` longer, long enough for a sampler to see them.
    """
    from django.db import connections

    barrier = threading.Barrier(n, timeout=30)
    together = not hold_s if together is None else together

    def work() -> None:
        try:
            with connections[alias].cursor() as cursor:
                cursor.execute("SELECT 1")
            if together:
                barrier.wait()
            if hold_s:
                threading.Event().wait(hold_s)
        finally:
            connections[alias].close()

    threads = [threading.Thread(target=work) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)


def test_peak_counts_connections_of_every_thread():
    with connection_peak() as held:
        _hold_in_threads(5)
    assert (held.peak, held.opened, held.now()) == (5, 5, 0)
    assert open_connections() >= 0


def test_requests_hold_their_connection_until_they_end_or_close_it():
    from asgiref.sync import sync_to_async
    from django.db import close_old_connections

    from labkit.servers import ASGIServer
    from labproject import routes
    from labproject.ai.models import Document
    from labproject.asgi import application

    n, waiting = 6, []
    lock = threading.Lock()

    def make(release: bool):
        @csrf_exempt
        async def view(request, doc_id):
            title = (await Document.objects.aget(pk=doc_id)).title
            if release:
                await sync_to_async(close_old_connections)()
            with lock:
                waiting.append(doc_id)
            await asyncio.sleep(0.5)  # stands in for the LLM call
            return JsonResponse({"title": title})

        return view

    async def burst(url: str, held) -> int:
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            task = asyncio.gather(*(http.get(f"/api/documents/{i + 1}/summary/") for i in range(n)))
            for _ in range(200):
                if len(waiting) == n:
                    break
                await asyncio.sleep(0.01)
            during = held.now()
            assert {r.status_code for r in await task} == {200}
        return during

    during = {}
    for release in (False, True):
        waiting.clear()
        with routes.override("summary", make(release)), ASGIServer(application) as server:
            with connection_peak() as held:
                during[release] = asyncio.run(burst(server.url, held))
    assert during == {False: n, True: 0}


def test_add_database_copies_the_corpus_and_routed_to_sends_queries_there(tmp_path):
    from labproject.ai.models import AICall, Chunk

    alias = f"copy_{uuid.uuid4().hex[:6]}"
    add_database(alias, f"sqlite:///{tmp_path / 'copy.sqlite3'}")
    add_database(alias, f"sqlite:///{tmp_path / 'copy.sqlite3'}")  # again: harmless
    with pytest.raises(ValueError, match="already set up with other settings"):
        add_database(alias, f"sqlite:///{tmp_path / 'other.sqlite3'}", prepare=False)

    async def counts() -> tuple[int, int]:
        with routed_to(alias):
            await AICall.objects.acreate(prompt="routed", model="m")
            return await Chunk.objects.acount(), await AICall.objects.filter(
                prompt="routed"
            ).acount()

    assert asyncio.run(counts()) == (800, 1)
    assert not AICall.objects.filter(prompt="routed").exists()


@pytest.mark.service("postgres")
def test_a_pool_caps_connections_at_the_server(postgres_service):  # noqa: F811 (fixture)
    url = postgres_service.url
    direct, pooled = (f"{kind}_{uuid.uuid4().hex[:6]}" for kind in ("direct", "pooled"))
    add_database(direct, url)
    add_database(pooled, url, pool={"min_size": 1, "max_size": 2, "timeout": 30})
    try:
        with backend_peak(url) as server_side, connection_peak(direct) as held:
            _hold_in_threads(6, direct, hold_s=0.3, together=True)
        assert held.peak == 6 and server_side.peak >= 6
        with backend_peak(url) as server_side, connection_peak(pooled) as held:
            _hold_in_threads(6, pooled, hold_s=0.2)
        assert held.peak <= 2 and server_side.peak <= 2 and held.opened == 6
    finally:
        assert close_pools(pooled) == [pooled]


@pytest.mark.service("postgres")
def test_a_pool_refuses_persistent_connections(postgres_service):  # noqa: F811 (fixture)
    from django.core.exceptions import ImproperlyConfigured

    from labproject.ai.models import Document

    alias = f"persistent_{uuid.uuid4().hex[:6]}"
    add_database(alias, postgres_service.url, pool={"max_size": 2}, conn_max_age=600, prepare=False)

    async def first_query() -> int:
        return await Document.objects.using(alias).acount()

    with pytest.raises(ImproperlyConfigured, match="persistent connections"):
        asyncio.run(first_query())
