"""Where nest-asyncio earns a place: opt-in asyncio.run in cells, servers and guards unharmed."""

from __future__ import annotations

import pytest

from tests.notebook_runner import run_cells, text_of

pytestmark = pytest.mark.slow

SERVE_AND_MEASURE = """
import asyncio, time, httpx
from labkit import serve_asgi

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await asyncio.sleep(0.3)
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})

server = serve_asgi(app, name="nesting-probe")
async with httpx.AsyncClient() as client:
    t0 = time.perf_counter()
    replies = await asyncio.gather(*(client.get(server.url) for _ in range(20)))
    wall = time.perf_counter() - t0
server.stop()
print("statuses", {r.status_code for r in replies}, "wall", round(wall, 2))
assert wall < 0.3 * 20 / 4, wall   # 20 requests overlapped, not served one by one
"""


def test_asyncio_run_fails_in_a_cell_without_the_opt_in(tmp_path):
    nb = run_cells(
        [
            "import asyncio\ntry:\n    asyncio.run(asyncio.sleep(0))\n"
            "except RuntimeError as exc:\n    print('refused:', exc)",
        ],
        tmp_path=tmp_path,
    )
    assert "cannot be called from a running event loop" in text_of(nb.cells[0])


def test_opt_in_allows_asyncio_run_keeps_django_guards_and_servers(tmp_path):
    nb = run_cells(
        [
            "from labkit import boot, allow_asyncio_run\nlab = boot(quiet=True)",
            "allow_asyncio_run()\nallow_asyncio_run()\nimport asyncio\n"
            "from labproject.ai.models import Document\n"
            "print('documents', asyncio.run(Document.objects.acount()))",
            "from django.core.exceptions import SynchronousOnlyOperation\n"
            "try:\n    Document.objects.count()\nexcept SynchronousOnlyOperation:\n"
            "    print('guard holds')",
            SERVE_AND_MEASURE,
        ],
        tmp_path=tmp_path,
        env={"LAB_STATE_DIR": str(tmp_path / "state")},
    )
    assert "documents 40" in text_of(nb.cells[1])
    assert "guard holds" in text_of(nb.cells[2])
    assert "statuses {200}" in text_of(nb.cells[3])
