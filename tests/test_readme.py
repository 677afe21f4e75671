"""The README shows the CLI's real --help, and its commands are the ones CI runs."""

from __future__ import annotations

import re
import sys
import tomllib
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


def test_binder_badge_opens_the_first_notebook_of_this_repository():
    repository = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"][
        "Repository"
    ]
    owner_repo = repository.removeprefix("https://github.com/")
    badge = re.search(
        r"\]\((https://mybinder\.org/v2/gh/[^)]+)\)", (ROOT / "README.md").read_text()
    )
    assert badge, "the README has no Binder badge"
    url = badge.group(1)
    assert url.startswith(f"https://mybinder.org/v2/gh/{owner_repo}/HEAD?"), url
    target = url.split("urlpath=lab/tree/", 1)[1]
    assert target == "notebooks/00_welcome.ipynb" and (ROOT / target).exists()
