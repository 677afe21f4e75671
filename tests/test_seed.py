"""`python -m labproject seed`: explicit corpus ids, new rows still get ids, and seeding again
keeps documents added beside the corpus (a notebook's own; the grader's servant boots again)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid

import pytest

from tests.services import postgres_service, services_state  # noqa: F401 (fixtures)

# After seeding, create a document and a chunk the way a check's fresh rows are made (ids from
# the database's sequences); print their ids.
NEW_ROWS = """
from labproject.ai.models import Chunk, Document
document = Document.objects.create(title="fresh")
chunk = Chunk.objects.create(document=document, position=1, text="fresh")
print(document.pk, chunk.pk)
"""


# A document of the notebook's own beside the corpus; then, after a second seed, what is left.
ADD_ONE = """
from labproject.ai.models import Document
print(Document.objects.create(title="a notebook's own").pk)
"""
LEFT = """
from labproject.ai.models import Chunk, Document
print(sorted(Document.objects.values_list("pk", flat=True)), Chunk.objects.count())
"""


def _manage(url: str | None, state: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "LAB_STATE_DIR": state, "LAB_USE_SERVICES": "0"}
    env.pop("LAB_DATABASE_URL", None)
    if url:
        env["LAB_DATABASE_URL"] = url
    return subprocess.run(
        [sys.executable, "-m", "labproject", *args],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip


@pytest.mark.service("postgres")
def test_rows_created_after_the_seed_get_ids_past_the_corpus(postgres_service, tmp_path):  # noqa: F811
    import psycopg

    name = f"seed_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(postgres_service.url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    url = postgres_service.url.rsplit("/", 1)[0] + f"/{name}"
    try:
        for args in (
            ["migrate", "--verbosity", "0"],
            ["seed", "--documents", "3", "--chunks", "4"],
        ):
            done = _manage(url, str(tmp_path), *args)
            assert done.returncode == 0, done.stderr[-2000:]
        made = _manage(url, str(tmp_path), "shell", "-c", NEW_ROWS)
        assert made.returncode == 0, made.stderr[-2000:]  # no duplicate key on id 1
        # The last line: Django's shell may first say what it imported.
        document_id, chunk_id = map(int, made.stdout.splitlines()[-1].split())
        assert document_id > 3 and chunk_id > 3 * 4
    finally:
        with psycopg.connect(postgres_service.url, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_seeding_again_keeps_documents_added_beside_the_corpus(tmp_path):
    def run(*args: str) -> str:
        done = _manage(None, str(tmp_path), *args)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.splitlines()[-1] if done.stdout.strip() else ""

    run("migrate", "--verbosity", "0")
    run("seed", "--documents", "3", "--chunks", "4")
    own = int(run("shell", "-c", ADD_ONE))
    run("seed", "--documents", "3", "--chunks", "4")
    assert run("shell", "-c", LEFT) == f"[1, 2, 3, {own}] 12"
