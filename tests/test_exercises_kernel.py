"""The exercise API in a real kernel, as a learner runs it: check() while the loop runs, etc."""

from __future__ import annotations

import json

import pytest

from labkit.exercises import MIME_TYPE
from tests.fixtures.labenv import use_fixture_steps
from tests.notebook_runner import run_cells, text_of

pytestmark = pytest.mark.slow

SETUP = """\
import asyncio, os, time
from django.http import JsonResponse
from tests.fixtures.steps.step_90 import q1, q2

async def fake_llm(prompt):
    await asyncio.sleep(0.05)
    return prompt.upper()
"""


def outcome_of(cell) -> dict:
    found = [o["data"][MIME_TYPE] for o in cell.outputs if MIME_TYPE in o.get("data", {})]
    assert len(found) == 1, cell.outputs
    return found[0]


def test_exercise_api_in_a_kernel(tmp_path, monkeypatch):
    use_fixture_steps(monkeypatch)
    nb = run_cells(
        [
            SETUP,
            "q1.check()",
            "def double(x):\n    return x + 2\nq1.check()",
            "def double(x):\n    return 1 / 0\nq1.check()",
            "def double(x):\n    return 2 * x\nq1.check()",
            (
                "async def hello(request):\n"
                "    return JsonResponse({'reply': await fake_llm('hi')})\n"
                "assert asyncio.get_running_loop().is_running()  # the kernel's loop runs\n"
                "q2.check()"
            ),
            "await q2.acheck()",
            "q2.hint(2)",
            "q2.solution()",
            "os.environ['LAB_HIDE_SOLUTIONS'] = '1'\nq2.solution()",
        ],
        tmp_path=tmp_path,
        env={"LAB_STATE_DIR": str(tmp_path / "state")},
    )
    statuses = [outcome_of(cell)["status"] for cell in nb.cells[1:7]]
    assert statuses == [
        "not_attempted",
        "incorrect",
        "error",
        "correct",
        "correct",
        "correct",
    ]
    checked = [text_of(cell) for cell in nb.cells[1:7]]
    assert "`double(0)` returned 2, expected 0." in checked[1]
    assert "Your code raised ZeroDivisionError: division by zero (in `double`" in checked[2]
    assert "Traceback" not in checked[2]
    assert "They ran side by side" in checked[4]

    markdown = [o["data"].get("text/markdown", "") for o in nb.cells[7].outputs]
    assert any("**Hint 2 of 2:** Call `await fake_llm(...)`" in m for m in markdown)
    solution = "".join(o["data"].get("text/markdown", "") for o in nb.cells[8].outputs)
    assert 'reply = await fake_llm("hi")' in solution and "### BEGIN" not in solution
    hidden = text_of(nb.cells[9])
    assert "Solutions are hidden" in hidden and "await fake_llm" not in hidden

    log = (tmp_path / ".labkit" / "checks.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in log]
    assert [e["status"] for e in events] == statuses  # one line per check, nothing else
    assert [e["exercise"] for e in events] == ["90.1"] * 4 + ["90.2"] * 2
