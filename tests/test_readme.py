"""The README shows the CLI's real --help, and its commands are the ones CI runs."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_cli_block_matches_help_output():
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import readme
    finally:
        sys.path.remove(str(ROOT / "tools"))
    text = (ROOT / "README.md").read_text()
    assert readme.rendered(text) == text, "README's CLI block is stale: run python tools/readme.py"


def test_ci_runs_the_readme_test_command():
    text = (ROOT / "README.md").read_text()
    assert "./run-tests" in text and "./run-lab" in text
    ci = (ROOT / ".ci" / "run").read_text()
    assert "exec ./run-tests" in ci
