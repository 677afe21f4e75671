"""Building learner notebooks from masters: placeholders, starters, drift, bad markers, solve."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest

from labkit.authoring import build, learner_notebook
from labkit.exercises.masters import MarkerError, parse_cell, parse_master
from tests.fixtures.commands import run_command
from tests.fixtures.labenv import SOLUTIONS, copy_master


def build_cli(*argv: str | Path) -> int:
    return run_command("notebooks", ["build", *map(str, argv)])


def cells_of(path: Path) -> list[dict]:
    return json.loads(path.read_text())["cells"]


def source(cell: dict) -> str:
    return "".join(cell["source"])


def _master_with_outputs(folder: Path) -> Path:
    """A copy of the demo master as an author's run leaves it: outputs and counts in a cell."""
    folder.mkdir()
    nb = json.loads((SOLUTIONS / "90_demo.ipynb").read_text())
    cell = next(c for c in nb["cells"] if c["cell_type"] == "code")
    cell["outputs"] = [{"name": "stdout", "output_type": "stream", "text": ["master output\n"]}]
    cell["execution_count"] = 3
    (folder / "90_demo.ipynb").write_text(json.dumps(nb, indent=1))
    return folder


def test_build_makes_the_learner_copy(tmp_path):
    source_dir = _master_with_outputs(tmp_path / "masters")
    assert build_cli("--source", source_dir, "--dest", tmp_path) == 0
    learner = tmp_path / "90_demo.ipynb"
    nb = json.loads(learner.read_text())
    cells = nb["cells"]
    text = learner.read_text()

    double = next(c for c in cells if c["metadata"].get("labkit", {}).get("exercise") == "90.1")
    assert source(double) == "def double(x):\n    # YOUR CODE HERE\n    raise NotImplementedError()"
    hello = next(c for c in cells if c["metadata"].get("labkit", {}).get("exercise") == "90.2")
    assert source(hello) == (
        "def hello(request):\n"
        '    reply = fake_llm_sync("hi")\n'
        '    return JsonResponse({"reply": reply})'
    )
    assert hello["metadata"] == {"labkit": {"exercise": "90.2", "points": 2}}

    assert "return 2 * x" not in text and 'await fake_llm(\\"hi\\")' not in text
    assert "assert double(21) == 42" not in text  # the hidden-tests cell is gone
    assert len(cells) == len(json.loads((SOLUTIONS / "90_demo.ipynb").read_text())["cells"]) - 1
    assert "###" not in text and "master output" not in text
    for cell in cells:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None
        assert set(cell["metadata"]) <= {"tags", "labkit"}  # "collapsed" and co. are gone
    assert nb["metadata"]["labkit"] == {"step": "90"}
    assert nb["metadata"]["language_info"] == {"name": "python"}
    nbformat.validate(nbformat.reads(text, as_version=4))


def test_rebuild_is_byte_identical_and_check_detects_drift(tmp_path, capsys):
    assert build_cli("--source", SOLUTIONS, "--dest", tmp_path) == 0
    learner = tmp_path / "90_demo.ipynb"
    first = learner.read_bytes()
    assert build_cli("--source", SOLUTIONS, "--dest", tmp_path) == 0
    assert learner.read_bytes() == first
    assert build_cli("--check", "--source", SOLUTIONS, "--dest", tmp_path) == 0

    nb = json.loads(first)
    nb["cells"][4]["source"] = "def double(x):\n    return 2 * x"  # someone edited the output
    learner.write_text(json.dumps(nb, indent=1))
    capsys.readouterr()
    assert build_cli("--check", "--source", SOLUTIONS, "--dest", tmp_path) == 1
    err = capsys.readouterr().err
    assert "out of date" in err and str(learner) in err
    assert learner.read_text() != first.decode()  # --check writes nothing

    learner.unlink()
    assert build_cli("--check", "--source", SOLUTIONS, "--dest", tmp_path) == 1
    assert not learner.exists()


def test_master_edits_show_up_as_drift(tmp_path):
    masters = tmp_path / "solutions"
    master = copy_master(masters)
    build(masters, tmp_path / "notebooks")
    nb = json.loads(master.read_text())
    nb["cells"][0]["source"] = "# Step 90, renamed"
    master.write_text(json.dumps(nb))
    [result] = build(masters, tmp_path / "notebooks", check=True)
    assert result.status == "drift" and not result.ok


BAD_MARKERS = [
    (
        "x = 1\n### BEGIN SOLUTION\ny = 2",
        2,
        "'### BEGIN SOLUTION' is never closed (expected '### END SOLUTION')",
    ),
    (
        "### BEGIN SOLUTION\nx = 1\n### BEGIN HIDDEN TESTS\n### END HIDDEN TESTS\n### END SOLUTION",
        3,
        "is nested inside the '### BEGIN SOLUTION' of line 1",
    ),
    ("x = 1\n\n### END SOLUTION", 3, "'### END SOLUTION' without a '### BEGIN SOLUTION'"),
    (
        "### BEGIN HIDDEN TESTS\nassert x\n### END SOLUTION",
        3,
        "closes the '### BEGIN HIDDEN TESTS' of line 1",
    ),
    ("## BEGIN SOLUTION\nx = 1\n### END SOLUTION", 1, "malformed marker '## BEGIN SOLUTION'"),
    (
        "### BEGIN STARTER\nx = 0\n### END STARTER\n### BEGIN SOLUTION\nx = 1\n### END SOLUTION",
        2,
        "starter lines must be commented out",
    ),
    ("### BEGIN STARTER\n# x = 0\n### END STARTER\ny = 1", 1, "must come right before"),
]


@pytest.mark.parametrize(("cell_source", "line", "message"), BAD_MARKERS)
def test_bad_markers_fail_naming_notebook_cell_and_line(
    tmp_path, capsys, cell_source, line, message
):
    masters = tmp_path / "solutions"
    master = copy_master(masters)
    nb = json.loads(master.read_text())
    nb["cells"][4]["source"] = cell_source
    master.write_text(json.dumps(nb))
    assert build_cli("--source", masters, "--dest", tmp_path / "notebooks") == 1
    err = capsys.readouterr().err
    assert f"{master}: cell 4, line {line}: " in err and message in err
    assert not (tmp_path / "notebooks").exists()  # nothing half-built


def test_a_solution_without_exercise_metadata_fails(tmp_path):
    masters = tmp_path / "solutions"
    master = copy_master(masters)
    nb = json.loads(master.read_text())
    nb["cells"][4]["metadata"] = {}
    master.write_text(json.dumps(nb))
    with pytest.raises(MarkerError, match=r"cell 4, line 2: a solution region needs the cell"):
        parse_master(master)


def test_markdown_solutions_and_master_without_ids(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.nbformat_minor = 4  # no cell ids
    nb.cells = [
        nbformat.v4.new_markdown_cell("Why?\n### BEGIN SOLUTION\nBecause.\n### END SOLUTION"),
        nbformat.v4.new_code_cell("x = 1"),
    ]
    for cell in nb.cells:
        cell.pop("id", None)
    path = tmp_path / "07_words.ipynb"
    path.write_text(json.dumps(nb))
    built = learner_notebook(parse_master(path))
    assert built.cells[0].source == "Why?\nYOUR ANSWER HERE"
    assert [c.id for c in built.cells] == ["07-0", "07-1"]


def test_wrong_answer_and_solution_variants():
    parts = parse_cell(
        "def f(x):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION", "m", 0
    )
    from labkit.exercises.masters import MasterCell

    cell = MasterCell(0, "code", tuple(parts), "90.1", 1)
    assert cell.with_answer("y = x\nreturn y") == "def f(x):\n    y = x\n    return y"
    assert cell.solution() == "def f(x):\n    return x"


def test_solve_writes_a_solved_copy_beside_the_learners_and_protects_it(tmp_path, capsys):
    dest = tmp_path / "notebooks"
    assert build_cli("--source", SOLUTIONS, "--dest", dest) == 0
    learner = (dest / "90_demo.ipynb").read_bytes()
    assert run_command("solve", ["90", "--source", str(SOLUTIONS), "--dest", str(dest)]) == 0
    solved = dest / "90_demo.solved.ipynb"
    text = solved.read_text()
    assert "return 2 * x" in text and "###" not in text and "YOUR CODE HERE" not in text
    assert all(c.get("outputs", []) == [] for c in json.loads(text)["cells"])
    assert (dest / "90_demo.ipynb").read_bytes() == learner

    solved.write_text(text.replace("return 2 * x", "return x * 2"))  # an instructor's edit
    capsys.readouterr()
    assert run_command("solve", ["90", "--source", str(SOLUTIONS), "--dest", str(dest)]) == 1
    assert "differs from the master's solution" in capsys.readouterr().err
    assert "return x * 2" in solved.read_text()

    solved.unlink()
    solved.symlink_to(dest / "90_demo.ipynb")  # a trap: writing here would hit the learner's
    assert run_command("solve", ["90", "--source", str(SOLUTIONS), "--dest", str(dest)]) == 1
    assert "refusing to write over the learner's notebook" in capsys.readouterr().err
    assert (dest / "90_demo.ipynb").read_bytes() == learner
