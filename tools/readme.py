"""Regenerate the README's `labkit --help` block (tests/test_readme.py fails on drift).

python tools/readme.py           # rewrite the block
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCK = re.compile(r"(<!-- cli:begin -->\n)(.*?)(<!-- cli:end -->)", re.S)


def cli_help() -> str:
    env = {**os.environ, "COLUMNS": "100"}
    result = subprocess.run(
        [sys.executable, "-m", "labkit", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return f"```text\n$ labkit --help\n{result.stdout.rstrip()}\n```\n"


def rendered(readme: str) -> str:
    return BLOCK.sub(lambda m: m.group(1) + cli_help() + m.group(3), readme)


if __name__ == "__main__":
    README.write_text(rendered(README.read_text()))
    print(f"updated {README.name}")
