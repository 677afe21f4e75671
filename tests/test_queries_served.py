"""Per-request query counts for views served by the in-kernel servers (uvicorn and WSGI)."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from labkit.queries import QueryLog, track_requests
from labkit.servers import ASGIServer, WSGIServer

pytestmark = pytest.mark.usefixtures("django_db")


@csrf_exempt
async def n_plus_one(request, doc_id):
    from labproject.ai.models import Chunk

    titles = [f"{c.position}" async for c in Chunk.objects.filter(document_id=doc_id)[:5]]
    for chunk in [c async for c in Chunk.objects.filter(document_id=doc_id)[:5]]:
        await Chunk.objects.filter(pk=chunk.pk).aexists()  # one more query per chunk
    return JsonResponse({"n": len(titles)})


@csrf_exempt
async def prefetched(request, doc_id):
    from labproject.ai.models import Document

    document = await Document.objects.prefetch_related("chunks").aget(pk=doc_id)
    return JsonResponse({"n": len(document.chunks.all())})


@csrf_exempt
async def flat(request, doc_id):
    from labproject.ai.models import Chunk

    rows = [
        t async for t in Chunk.objects.filter(document_id=doc_id).values_list("text", flat=True)
    ]
    return JsonResponse({"n": len(rows)})


def _served_counts(server_cls, app_module: str, views) -> dict[str, list[int]]:
    from importlib import import_module

    from labproject import routes

    app = import_module(app_module).application
    counts = {}
    for name, view in views.items():
        logs: list[QueryLog] = []
        with routes.override("summary", view), server_cls(track_requests(app, logs)) as server:
            for doc_id in (1, 2, 3):
                response = httpx.get(f"{server.url}/api/documents/{doc_id}/summary/")
                assert response.status_code == 200, response.text
        counts[name] = [log.n_queries for log in logs]
    return counts


VIEWS = {"n_plus_one": n_plus_one, "prefetch": prefetched, "values_list": flat}


def test_counts_per_request_under_in_kernel_uvicorn():
    counts = _served_counts(ASGIServer, "labproject.asgi", VIEWS)
    assert counts == {"n_plus_one": [7, 7, 7], "prefetch": [2, 2, 2], "values_list": [1, 1, 1]}


def test_counts_per_request_under_the_wsgi_server():
    counts = _served_counts(WSGIServer, "labproject.wsgi", VIEWS)
    assert counts == {"n_plus_one": [7, 7, 7], "prefetch": [2, 2, 2], "values_list": [1, 1, 1]}


def test_concurrent_requests_keep_their_own_counts():
    from labproject import routes
    from labproject.asgi import application

    logs: list[QueryLog] = []

    async def fire(url):
        async with httpx.AsyncClient() as client:
            return await asyncio.gather(
                *(client.get(f"{url}/api/documents/{i % 3 + 1}/summary/") for i in range(12))
            )

    with routes.override("summary", n_plus_one), ASGIServer(track_requests(application, logs)) as s:
        replies = asyncio.run(fire(s.url))
    assert {r.status_code for r in replies} == {200}
    assert [log.n_queries for log in logs] == [7] * 12
