"""Keep requirements.lock the one source of exact versions, and derive the files that repeat it.

python tools/lock.py            # rewrite environment.yml and binder/requirements.txt
python tools/lock.py --check    # exit 1 if they disagree with the lock (the tests run this)
python tools/lock.py --update   # re-resolve pyproject.toml into a fresh lock (needs 3.12)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LOCK = ROOT / "requirements.lock"
ENVIRONMENT = ROOT / "environment.yml"
BINDER = ROOT / "binder" / "requirements.txt"
PYTHON = "3.12"
HEADER = "# Generated from requirements.lock by tools/lock.py: do not edit by hand.\n"


def pins(lock_text: str) -> list[str]:
    """The `name==version` lines of the lock, in its order."""
    return [
        line.strip()
        for line in lock_text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def environment_yml(lock_text: str) -> str:
    lines = [
        HEADER.rstrip(),
        "name: django-ai-lab",
        "channels:",
        "  - conda-forge",
        "dependencies:",
        f"  - python={PYTHON}",
        "  - pip",
        "  - pip:",
        *(f"      - {pin}" for pin in pins(lock_text)),
        "      - -e .",
    ]
    return "\n".join(lines) + "\n"


def binder_requirements(lock_text: str) -> str:
    # binder/postBuild installs the kit itself (pip install --no-deps -e .).
    return HEADER + "\n".join(pins(lock_text)) + "\n"


def derived() -> dict[Path, str]:
    lock_text = LOCK.read_text()
    return {ENVIRONMENT: environment_yml(lock_text), BINDER: binder_requirements(lock_text)}


def update_lock() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip"]
        subprocess.run([*pip, "install", "-q", "-e", f"{ROOT}[test]"], check=True)
        frozen = subprocess.run(
            [*pip, "freeze", "--exclude-editable"], check=True, capture_output=True, text=True
        ).stdout
    kept = [line for line in frozen.splitlines() if not line.startswith(("pip==", "setuptools=="))]
    head = [line for line in LOCK.read_text().splitlines() if line.startswith("#")]
    LOCK.write_text("\n".join([*head, *kept]) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if derived files drifted")
    parser.add_argument("--update", action="store_true", help="re-resolve the lock first")
    args = parser.parse_args(argv)
    if args.update:
        update_lock()
    stale = []
    for path, text in derived().items():
        if path.exists() and path.read_text() == text:
            continue
        if args.check:
            stale.append(path.relative_to(ROOT))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(ROOT)}")
    if stale:
        names = ", ".join(map(str, stale))
        print(
            f"out of date with requirements.lock: {names}; run python tools/lock.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
