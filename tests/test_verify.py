"""`labkit verify`: every check passes its solution and fails its starter and wrong answers."""

from __future__ import annotations

import pytest

from labkit.exercises.masters import parse_master
from labkit.verify import _structure
from tests.fixtures.commands import run_command
from tests.fixtures.labenv import BOGUS, SOLUTIONS, STEP_91, use_fixture_steps


@pytest.mark.slow
def test_verify_proves_the_fixture_checks(monkeypatch, capsys):
    use_fixture_steps(monkeypatch)
    assert run_command("verify", ["--source", str(SOLUTIONS), "--step", "90"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines() if line.startswith("90.")]
    assert [(row[0], row[-1]) for row in rows] == [
        (exercise, "ok") for exercise in ["90.1"] * 4 + ["90.2"] * 4
    ]
    assert "90.2      wrong: time.sleep in an async view  incorrect      incorrect      ok" in out
    assert "8 of 8 proofs hold." in out


@pytest.mark.slow
def test_verify_fails_when_a_wrong_answer_passes_the_check(monkeypatch, capsys):
    use_fixture_steps(monkeypatch, steps=STEP_91, solutions=BOGUS)
    assert run_command("verify", ["--source", str(BOGUS)]) == 1
    out = capsys.readouterr().out
    failing = [line for line in out.splitlines() if line.rstrip().endswith("FAIL")]
    assert len(failing) == 2
    assert failing[0].split()[:4] == ["91.1", "wrong:", "multiplies", "the"]
    assert "incorrect      correct" in failing[0]
    assert "it cannot fail where it should" in out
    # A master cell that raises is reported too, unless tagged raises-exception.
    assert failing[1].split()[:5] == ["-", "master", "cell", "3", "runs"]
    assert "TypeError" in failing[1] and "ValueError" not in out


def test_too_few_wrong_answers_or_a_missing_cell_fail(monkeypatch):
    use_fixture_steps(monkeypatch, steps=STEP_91, solutions=BOGUS)
    master = parse_master(BOGUS / "91_bogus.ipynb")
    lonely = type("Lonely", (), {"wrong_answers": {"one": "return 0"}})()
    rows = _structure(master, {"91.1": lonely, "91.2": lonely})
    assert [(r.exercise, r.proof, r.got, r.ok) for r in rows] == [
        ("91.2", "master cell", "missing", False),
        ("91.1", "wrong answers", "1", False),
    ]


def test_nothing_to_verify_is_a_failure(tmp_path, capsys):
    assert run_command("verify", ["--source", str(tmp_path)]) == 1
    assert "no masters in" in capsys.readouterr().out
