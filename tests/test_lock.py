"""One lock: environment.yml and binder/ follow requirements.lock, which covers pyproject."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


def test_derived_files_match_the_lock():
    result = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "lock.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr


def test_check_notices_drift(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import lock
    finally:
        sys.path.remove(str(ROOT / "tools"))
    env = tmp_path / "environment.yml"
    env.write_text(lock.environment_yml("Django==6.0.0\n"))
    monkeypatch.setattr(lock, "ENVIRONMENT", env)
    monkeypatch.setattr(lock, "BINDER", tmp_path / "requirements.txt")
    monkeypatch.setattr(lock, "ROOT", tmp_path)
    assert lock.main(["--check"]) == 1


def test_every_dependency_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pins = _lock()
    wanted = project["dependencies"] + project["optional-dependencies"]["test"]
    for spec in map(Requirement, wanted):
        name = spec.name.lower().replace("_", "-")
        assert name in pins, f"{spec.name} is in pyproject.toml but not in requirements.lock"
        assert spec.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {spec}"


def test_environment_pins_python_312_and_binder_runtime_agrees():
    assert "  - python=3.12\n" in (ROOT / "environment.yml").read_text()
    assert (ROOT / "binder" / "runtime.txt").read_text().strip() == "python-3.12"


def test_installed_versions_are_the_locked_ones():
    from importlib.metadata import version

    pins = _lock()
    for name in ("django", "openai", "httpx2", "uvicorn", "locust"):
        assert version(name) == pins[name], f"{name}: installed {version(name)}, lock {pins[name]}"
