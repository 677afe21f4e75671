"""The setup script finds Python 3.12+ (PATH or pyenv) or stops saying what to install."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _copy_script(tmp_path: Path) -> Path:
    (tmp_path / "scripts").mkdir()
    script = tmp_path / "scripts" / "setup-venv.sh"
    shutil.copy(ROOT / "scripts" / "setup-venv.sh", script)
    return script


def _fake_python(folder: Path, version: str) -> Path:
    """An executable that answers the version probe like Python `version` would."""
    folder.mkdir(parents=True, exist_ok=True)
    major, minor = version.split(".")[:2]
    fake = folder / "python3"
    fake.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = "-c" ] && exec {shutil.which("python3")} -c '
        f'"import sys; sys.exit(0 if ({major}, {minor}) >= (3, 12) else 1)"\n'
        'echo "fake python: $@" >&2; exit 9\n'
    )
    fake.chmod(0o755)
    return fake


def test_no_suitable_python_stops_with_what_to_install(tmp_path):
    script = _copy_script(tmp_path)
    bin_dir = tmp_path / "bin"
    _fake_python(bin_dir, "3.11")
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYENV_ROOT": str(tmp_path / "none"),
    }
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert result.returncode == 3
    assert "needs Python 3.12 or newer" in result.stderr
    assert "apt install python3.12" in result.stderr and "pyenv install 3.12" in result.stderr
    assert not (tmp_path / ".venv").exists()


def test_python_under_pyenv_versions_is_found(tmp_path):
    script = _copy_script(tmp_path)
    fake = _fake_python(tmp_path / "pyenv" / "versions" / "3.12.9" / "bin", "3.12")
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYENV_ROOT": str(tmp_path / "pyenv")}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    # The fake refuses to build a venv, which proves the script chose it.
    assert f"creating .venv with {fake}" in result.stderr
    assert "fake python: -m venv" in result.stderr


def test_lab_python_wins(tmp_path):
    script = _copy_script(tmp_path)
    fake = _fake_python(tmp_path / "chosen", "3.13")
    env = {**os.environ, "LAB_PYTHON": str(fake), "HOME": str(tmp_path)}
    result = subprocess.run(["bash", str(script)], capture_output=True, text=True, env=env)
    assert f"creating .venv with {fake}" in result.stderr
