"""With the learner's own endpoint configured, boot() keeps the mock for measuring notebooks.

The endpoint here is a closed port: these tests are about where calls are pointed, not about
calls (tests/test_local_llm.py runs notebooks against a real model).
"""

from __future__ import annotations

from tests.notebook_runner import run_cells, text_of

ENDPOINT = {
    "LAB_LLM_BASE_URL": "http://127.0.0.1:9/v1",  # discard: nothing listens
    "LAB_LLM_MODEL": "my-model",
    "LAB_LLM_API_KEY": "sk-my-secret-key",
}
SHOW = (
    "import os\n"
    "from django.conf import settings\n"
    "def show(tag):\n"
    "    print(tag, settings.LLM_BASE_URL == mock_llm().base_url, settings.LLM_MODEL,\n"
    "          os.environ['LAB_LLM_BASE_URL'] == settings.LLM_BASE_URL)\n"
)


def test_a_measuring_notebook_runs_on_the_mock_and_reaches_the_endpoint_in_a_block(tmp_path):
    cells = [
        "from labkit import boot, endpoint, mock_llm, on_endpoint\nlab = boot()",
        SHOW + "show('boot')\nprint(endpoint()['LLM_BASE_URL'])",
        "with on_endpoint() as settings_now:\n    show('block')\nshow('after')",
    ]
    nb = run_cells(cells, tmp_path=tmp_path, env=ENDPOINT)
    status = text_of(nb.cells[0])
    assert "your endpoint http://127.0.0.1:9/v1 is used only where a cell says so" in status
    assert "sk-my-secret-key" not in status
    assert text_of(nb.cells[1]) == "boot True mock-gpt True\nhttp://127.0.0.1:9/v1\n"
    assert text_of(nb.cells[2]) == "block False my-model True\nafter True mock-gpt True\n"


def test_notebook_00_sends_its_calls_to_the_endpoint(tmp_path):
    cells = [
        "from labkit import boot, mock_llm\nlab = boot(use_endpoint=True)",
        SHOW + "show('boot')",
    ]
    nb = run_cells(cells, tmp_path=tmp_path, env=ENDPOINT)
    assert "calls go to your endpoint at http://127.0.0.1:9/v1" in text_of(nb.cells[0])
    assert text_of(nb.cells[1]) == "boot False my-model True\n"


def test_without_an_endpoint_on_endpoint_says_how_to_set_one(tmp_path):
    cells = [
        "from labkit import boot, endpoint, on_endpoint\nlab = boot(quiet=True)\nprint(endpoint())",
        "try:\n    with on_endpoint():\n        pass\nexcept RuntimeError as exc:\n    print(exc)",
    ]
    env = {"LAB_LLM_BASE_URL": "", "LAB_LLM_MODEL": "", "LAB_LLM_API_KEY": ""}
    nb = run_cells(cells, tmp_path=tmp_path, env=env)
    assert text_of(nb.cells[0]) == "None\n"
    assert "set LAB_LLM_BASE_URL, LAB_LLM_MODEL and LAB_LLM_API_KEY" in text_of(nb.cells[1])
