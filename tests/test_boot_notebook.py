"""Boot in a real kernel: the async ORM works, the sync ORM raises, re-booting just works."""

from __future__ import annotations

import pytest

from tests.notebook_runner import run_cells, text_of

pytestmark = pytest.mark.slow


def test_boot_in_kernel_behaves_like_an_async_view(tmp_path):
    nb = run_cells(
        [
            "from labkit import boot\nlab = boot()",
            "from labproject.ai.models import Document\n"
            "n = await Document.objects.acount()\nprint('documents', n)\nassert n > 0",
            (
                "from django.core.exceptions import SynchronousOnlyOperation\n"
                "try:\n    Document.objects.count()\nexcept SynchronousOnlyOperation as exc:\n"
                "    print('raised', type(exc).__name__)\n"
                "else:\n    raise AssertionError('sync ORM did not raise')"
            ),
            "import os\nassert 'DJANGO_ALLOW_ASYNC_UNSAFE' not in os.environ",
            "lab2 = boot()\nassert not lab2.first_boot and lab2.llm_base_url == lab.llm_base_url\n"
            "print('repeat', lab2.boot_s)",
            "await Document.objects.acount()",
        ],
        tmp_path=tmp_path,
        env={"LAB_STATE_DIR": str(tmp_path / "state")},
    )
    out = [text_of(cell) for cell in nb.cells]
    assert "Django: 6.1" in out[0] and "mock LLM" in out[0]
    assert "documents 40" in out[1]
    assert "raised SynchronousOnlyOperation" in out[2]
    assert "repeat" in out[4]


def test_boot_after_a_kernel_restart_reuses_the_database(tmp_path):
    env = {"LAB_STATE_DIR": str(tmp_path / "state")}
    first = run_cells(
        ["from labkit import boot\nprint(boot().first_boot)"], tmp_path=tmp_path, env=env
    )
    again = run_cells(
        ["from labkit import boot\nprint(boot().first_boot)"], tmp_path=tmp_path, env=env
    )
    assert text_of(first.cells[0]).strip().endswith("True")
    assert text_of(again.cells[0]).strip().endswith("False")
