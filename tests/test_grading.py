"""`labkit grade` on a folder of submissions: full marks, zero, timeouts, deletions, junk."""

from __future__ import annotations

import json
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from labkit.authoring import learner_notebook, render
from labkit.exercises.masters import parse_master
from tests.fixtures.commands import run_command
from tests.fixtures.labenv import DEMO_MASTER, copy_master, use_fixture_steps

pytestmark = pytest.mark.slow

CELL_TIMEOUT = 5


def exercise_cell(nb: dict, exercise_id: str) -> dict:
    return next(
        c for c in nb["cells"] if c["metadata"].get("labkit", {}).get("exercise") == exercise_id
    )


def make_submissions(folder: Path, report: Path) -> dict[str, bytes]:
    """One notebook per situation the grader must survive; returns their original bytes."""
    copy_master(folder, "90_master.ipynb")
    learner = render(learner_notebook(parse_master(DEMO_MASTER)))
    (folder / "90_learner.ipynb").write_text(learner)

    looping = json.loads(learner)
    exercise_cell(looping, "90.1")["source"] = (
        "def double(x):\n    return 2 * x\nwhile True:\n    pass"
    )
    (folder / "90_loop.ipynb").write_text(json.dumps(looping))

    deleted = json.loads(DEMO_MASTER.read_text())
    deleted["cells"] = [
        c for c in deleted["cells"] if "exercise" not in c["metadata"].get("labkit", {})
    ]
    deleted["cells"] = [c for c in deleted["cells"] if "BEGIN HIDDEN" not in "".join(c["source"])]
    (folder / "90_deleted.ipynb").write_text(json.dumps(deleted))

    noisy = json.loads(DEMO_MASTER.read_text())
    noisy["cells"].insert(
        1,
        {
            "cell_type": "code",
            "execution_count": None,
            "id": "noisy",
            "metadata": {},
            "outputs": [],
            "source": (
                "import logging, sys, warnings\n"
                "print('something on stderr', file=sys.stderr)\n"
                "warnings.warn('a learner-visible warning')\n"
                "logging.getLogger('lab').warning('a logged warning')\n"
                f"open({str(report)!r}, 'w').write('forged by the submission')\n"
            ),
        },
    )
    (folder / "90_noisy.ipynb").write_text(json.dumps(noisy))

    (folder / "90_corrupt.ipynb").write_text('{"cells": [{"cell_type": "code", "sour')
    (folder / "90_not_a_notebook.ipynb").write_text('{"hello": "world"}')
    return {p.name: p.read_bytes() for p in folder.glob("*.ipynb")}


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    base = tmp_path_factory.mktemp("grading")
    folder = base / "submissions"
    report = folder / "report.json"  # inside the submission folder, on purpose
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_fixture_steps(monkeypatch)
        originals = make_submissions(folder, report)
        started = time.perf_counter()
        code = run_command(
            "grade",
            [
                str(folder),
                "--cell-timeout", str(CELL_TIMEOUT),
                "--jobs", "3",
                "--json", str(report),
                "--markdown", str(base / "feedback.md"),
                "--junit", str(base / "junit.xml"),
            ],
        )  # fmt: skip
        elapsed = time.perf_counter() - started
    data = json.loads(report.read_text())
    by_name = {Path(nb["path"]).name: nb for nb in data["notebooks"]}
    return {
        "code": code,
        "by_name": by_name,
        "base": base,
        "folder": folder,
        "originals": originals,
        "elapsed": elapsed,
    }


def statuses(notebook: dict) -> dict[str, str]:
    return {ex["id"]: ex["status"] for ex in notebook["exercises"]}


def test_grading_works_whatever_the_scores(graded):
    assert graded["code"] == 0
    assert sorted(graded["by_name"]) == sorted(graded["originals"])


def test_the_master_gets_full_marks(graded):
    master = graded["by_name"]["90_master.ipynb"]
    assert statuses(master) == {"90.1": "correct", "90.2": "correct"}
    assert (master["score"], master["max_score"]) == (3, 3)
    assert [ex["max_points"] for ex in master["exercises"]] == [1, 2]


def test_the_untouched_learner_copy_gets_zero_all_not_attempted(graded):
    learner = graded["by_name"]["90_learner.ipynb"]
    assert statuses(learner) == {"90.1": "not_attempted", "90.2": "not_attempted"}
    assert learner["score"] == 0 and learner["max_score"] == 3 and learner["error"] is None


def test_an_infinite_loop_is_a_timeout_within_the_limit(graded):
    looping = graded["by_name"]["90_loop.ipynb"]
    assert statuses(looping) == {"90.1": "timeout", "90.2": "not_attempted"}
    assert f"ran longer than {CELL_TIMEOUT} s" in looping["exercises"][0]["message"]
    # Cut at the cell timeout, not at the notebook's deadline (1800 s): a wide margin, because a
    # busy machine (the suite on three workers) takes its seconds to start a sandboxed kernel.
    assert looping["duration_s"] < CELL_TIMEOUT + 60
    assert graded["elapsed"] < 240


def test_deleted_exercise_cells_are_not_attempted_not_a_crash(graded):
    deleted = graded["by_name"]["90_deleted.ipynb"]
    assert statuses(deleted) == {"90.1": "not_attempted", "90.2": "not_attempted"}
    assert "`double` is not defined yet" in deleted["exercises"][0]["message"]


def test_stderr_and_warnings_cost_nothing(graded):
    noisy = graded["by_name"]["90_noisy.ipynb"]
    assert statuses(noisy) == {"90.1": "correct", "90.2": "correct"}
    assert noisy["score"] == 3


def test_junk_files_are_reported_not_crashed(graded):
    corrupt = graded["by_name"]["90_corrupt.ipynb"]
    assert "is not valid JSON" in corrupt["error"]
    assert statuses(corrupt) == {"90.1": "error", "90.2": "error"} and corrupt["score"] == 0
    other = graded["by_name"]["90_not_a_notebook.ipynb"]
    assert "not a Jupyter notebook" in other["error"]


def test_submissions_run_on_copies_and_cannot_forge_the_report(graded):
    folder = graded["folder"]
    for name, original in graded["originals"].items():
        assert (folder / name).read_bytes() == original, name
    data = json.loads((folder / "report.json").read_text())  # not "forged by the submission"
    assert len(data["notebooks"]) == len(graded["originals"])


def test_markdown_and_junit_reports(graded):
    feedback = (graded["base"] / "feedback.md").read_text()
    assert "| `" in feedback and "90_master.ipynb" in feedback
    assert "**90.1 (timed out):** Cell 4 ran longer than 5 s" in feedback
    assert "**This notebook could not be graded.**" in feedback

    root = ET.parse(graded["base"] / "junit.xml").getroot()
    suites = {Path(s.get("name").split(" (step")[0]).name: s for s in root.iter("testsuite")}
    assert suites["90_master.ipynb"].get("failures") == "0"
    assert suites["90_master.ipynb"].get("errors") == "0"
    assert suites["90_learner.ipynb"].get("failures") == "2"
    loop_cases = suites["90_loop.ipynb"].findall("testcase")
    assert loop_cases[0].find("error").get("type") == "timeout"


def test_missing_paths_fail_the_grader_not_a_submission(tmp_path, capsys):
    assert run_command("grade", [str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    assert run_command("grade", [str(tmp_path)]) == 2
