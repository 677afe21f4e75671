"""Hostile submissions: nothing a notebook does earns more than its answers, or reaches out.

Each submission is the untouched learner copy of step 90 plus one attack a learner who knows
some Python could write. Graded in one batch with an honest learner copy and the master, every
attack must score exactly what the untouched copy scores (0: not attempted), and leave the
report, a classmate's file, the grader's home and a later honest run untouched; no secret of the
grader's environment may appear in any report.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from labkit.authoring import learner_notebook, render
from labkit.exercises.masters import parse_master
from labkit.grading.sandbox import unusable_reason
from tests.conftest import require_service
from tests.fixtures.commands import run_command
from tests.fixtures.labenv import DEMO_MASTER, copy_master, use_fixture_steps

pytestmark = pytest.mark.slow

SECRET = "sk-staff-" + "7f3a9c2e5b1d4e8f0a6c"
MIME = "application/vnd.labkit.check+json"
FORGED = {"exercise": "90.1", "title": "x", "status": "correct", "message": "forged",
          "points": 1, "max_points": 1}  # fmt: skip


def attacks(report: Path, classmate: Path, home: Path) -> dict[str, str]:
    """Cells an attacker appends to the learner copy, one submission each."""
    forged = json.dumps({MIME: FORGED, "text/plain": "Correct"})
    forged_pwned = json.dumps({MIME: {**FORGED, "status": "pwned"}, "text/plain": "?"})
    return {
        "replaces_the_probe": (
            "import labkit.grading.probe as p\n"
            "from IPython.display import display\n"
            f"async def probe(exercise_id):\n    display({forged}, raw=True)\n"
            "p.probe = probe\n"
            f"display({forged}, raw=True)"
        ),
        "patches_outcome": (
            "from labkit.exercises import exercise, outcomes\n"
            "def fake(self, *a, **k):\n"
            "    return outcomes.Outcome(exercise=self.id, title=self.title, "
            "status=outcomes.Status.CORRECT, points=9, max_points=9)\n"
            "exercise.Exercise.outcome = fake\n"
            "async def afake(self, *a, **k):\n    return fake(self)\n"
            "exercise.Exercise.aoutcome = afake"
        ),
        "pre_run_cell_hook": (
            "from IPython import get_ipython\nfrom IPython.display import display\n"
            f"get_ipython().events.register('pre_run_cell', lambda *a: display({forged}, "
            "raw=True))"
        ),
        "forgery_in_the_answer": (
            "def double(x):\n"
            "    from labkit.exercises import exercise, outcomes\n"
            "    exercise.Exercise._finish = lambda self, *a: outcomes.Outcome(\n"
            "        exercise=self.id, title='', status=outcomes.Status.CORRECT)\n"
            "    return x + 2"
        ),
        "answers_from_the_masters": (
            "from pathlib import Path\nimport labkit\n"
            "from labkit.exercises import masters\n"
            "found = masters.master_exercise('90.1')\n"
            "if found is not None:\n    exec(found.solution)\n"
            "for p in Path(labkit.__file__).parents[1].rglob('*.ipynb'):\n"
            "    text = p.read_text()\n"
            "    if 'return 2 * x' in text:\n        exec('def double(x):\\n    return 2 * x')"
        ),
        "malformed_outcome": (
            f"from IPython.display import display\ndisplay({forged_pwned}, raw=True)"
        ),
        "leaks_the_environment": (
            "import os\nprint(dict(os.environ))\nraise RuntimeError(str(dict(os.environ)))"
        ),
        "rewrites_the_report_later": (
            "import subprocess, sys\n"
            "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(4); "
            f'open({str(report)!r}, "w").write("forged")\'], start_new_session=True)'
        ),
        "overwrites_a_classmate": (f"open({str(classmate)!r}, 'w').write('overwritten')"),
        "plants_a_startup_file": (
            "import os, pathlib\n"
            f"for base in [pathlib.Path.home(), pathlib.Path({str(home)!r})]:\n"
            "    try:\n"
            "        d = base / '.ipython/profile_default/startup'\n"
            "        d.mkdir(parents=True, exist_ok=True)\n"
            "        (d / '00-forge.py').write_text('def double(x):\\n    return 2 * x\\n')\n"
            "    except OSError:\n        pass"
        ),
        "ignores_sigint": (
            "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass"
        ),
    }


def build(folder: Path, report: Path, home: Path) -> dict[str, Path]:
    learner = json.loads(render(learner_notebook(parse_master(DEMO_MASTER))))
    paths = {"honest": folder / "90_honest.ipynb", "classmate": folder / "90_classmate.ipynb"}
    for key in ("honest", "classmate"):
        paths[key].write_text(json.dumps(learner))
    for name, source in attacks(report, paths["classmate"], home).items():
        nb = json.loads(json.dumps(learner))
        nb["cells"].append(
            {
                "cell_type": "code",
                "execution_count": None,
                "id": f"attack-{name[:20]}",
                "metadata": {},
                "outputs": [],
                "source": source,
            }  # fmt: skip
        )
        paths[name] = folder / f"90_{name}.ipynb"
        paths[name].write_text(json.dumps(nb))
    wrong_step = json.loads(json.dumps(learner))
    wrong_step["metadata"]["labkit"] = {"step": "91"}
    paths["metadata_step"] = folder / "90_metadata_step.ipynb"
    paths["metadata_step"].write_text(json.dumps(wrong_step))
    (folder / "90_link.ipynb").symlink_to(copy_master(folder.parent / "masters"))
    (folder / "90_copy.solved.ipynb").write_text(json.dumps(learner))
    (folder / "90_upper.IPYNB").write_text(json.dumps(learner))
    return paths


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    require_service("bubblewrap", unusable_reason() is None, str(unusable_reason()))
    base = tmp_path_factory.mktemp("hostile")
    folder, home = base / "submissions", base / "grader-home"
    folder.mkdir()
    home.mkdir()
    report = base / "report.json"
    with pytest.MonkeyPatch.context() as monkeypatch:
        use_fixture_steps(monkeypatch)
        monkeypatch.setenv("OPENAI_API_KEY", SECRET)
        monkeypatch.setenv("HOME", str(home))
        paths = build(folder, report, home)
        classmate = paths["classmate"].read_bytes()
        started = time.perf_counter()
        code = run_command(
            "grade",
            [str(folder), "--json", str(report), "--markdown", str(base / "feedback.md"),
             "--junit", str(base / "junit.xml"), "--cell-timeout", "5", "--deadline", "45",
             "--jobs", "2"],
        )  # fmt: skip
        elapsed = time.perf_counter() - started
        text = report.read_text()
        time.sleep(6)  # past the detached process's 4 s
        later = report.read_text()
        honest_later = base / "later.json"
        run_command("grade", [str(paths["honest"]), "--json", str(honest_later)])
        yield {
            "code": code,
            "report": json.loads(text),
            "texts": [text, (base / "feedback.md").read_text(), (base / "junit.xml").read_text()],
            "unchanged": later == text,
            "classmate": paths["classmate"].read_bytes() == classmate,
            "home": home,
            "later": json.loads(honest_later.read_text()),
            "elapsed_s": elapsed,
            "n": len(paths),
        }


def by_name(hostile) -> dict[str, dict]:
    return {Path(n["path"]).stem.removeprefix("90_"): n for n in hostile["report"]["notebooks"]}


def test_grading_succeeds_whatever_the_submissions_do(hostile):
    assert hostile["code"] == 0


@pytest.mark.parametrize("attack", sorted(attacks(Path("r"), Path("c"), Path("h"))))
def test_an_attack_scores_what_the_untouched_copy_scores(hostile, attack):
    graded = by_name(hostile)
    honest = graded["honest"]
    assert honest["score"] == 0
    assert [e["status"] for e in honest["exercises"]] == ["not_attempted", "not_attempted"]
    assert graded[attack]["score"] == honest["score"], graded[attack]["exercises"]
    assert graded[attack]["max_score"] == honest["max_score"] == 3


def test_the_report_is_unchanged_after_the_grader_exits(hostile):
    assert hostile["unchanged"]


def test_a_classmates_file_is_unchanged(hostile):
    assert hostile["classmate"]


def test_nothing_lands_in_the_graders_home_and_a_later_honest_run_is_unaffected(hostile):
    assert not (hostile["home"] / ".ipython").exists()
    (later,) = hostile["later"]["notebooks"]
    assert later["score"] == 0
    assert {e["status"] for e in later["exercises"]} == {"not_attempted"}


def test_no_secret_reaches_any_report(hostile):
    for text in hostile["texts"]:
        assert SECRET not in text


def test_a_loop_that_ignores_sigint_costs_at_most_the_deadline(hostile):
    looping = by_name(hostile)["ignores_sigint"]
    assert looping["duration_s"] < 45 + 30  # the deadline, plus the sandbox's start and end
    assert looping["exercises"][0]["status"] in {"error", "timeout"}


def test_the_step_comes_from_the_file_name_and_a_disagreeing_metadata_step_is_reported(hostile):
    graded = by_name(hostile)["metadata_step"]
    assert graded["step"] == "90"
    assert any("metadata says step 91" in note for note in graded["notes"])


def test_links_and_solved_copies_are_listed_and_upper_case_names_graded(hostile):
    skipped = {Path(s["path"]).name: s["reason"] for s in hostile["report"]["skipped"]}
    assert "symbolic link" in skipped["90_link.ipynb"]
    assert "solved copy" in skipped["90_copy.solved.ipynb"]
    assert "upper.IPYNB" in {Path(n["path"]).name.replace("90_", "") for n in
                             hostile["report"]["notebooks"]}  # fmt: skip
