"""The Binder configuration (binder/, which makes repo2docker ignore root config files)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require_service

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
SCRIPTS = ("postBuild", "start")
# repo2docker's own check on apt.txt lines (it builds a shell command from them).
APT_NAME = re.compile(r"^[a-z0-9][a-z0-9.+-]+$")
SECRETS = [
    re.compile(r"sk-[A-Za-z0-9_-]{8,}"),  # OpenAI-style API keys
    re.compile(r"(?i)\b(password|passwd|pwd|token|secret|api_?key)\b\s*[:=]\s*['\"]?[^\s'\"$]"),
    re.compile(r"(?i)--(password|token)[= ]\S"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"\b(ghp|gho|github_pat)_[A-Za-z0-9_]{10,}"),
    re.compile(r"\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"://[^/\s:@]+:[^/\s@]+@"),  # credentials inside a URL
]


def text(name: str) -> str:
    return (BINDER / name).read_text()


def apt_packages() -> list[str]:
    lines = (line.partition("#")[0].strip() for line in text("apt.txt").splitlines())
    return [line for line in lines if line]


def test_binder_has_its_files_and_no_conda_file_overriding_them():
    for name in ("runtime.txt", "requirements.txt", "apt.txt", *SCRIPTS):
        assert (BINDER / name).is_file(), f"binder/{name} is missing"
    # An environment.yml in binder/ would switch repo2docker to conda and ignore runtime.txt.
    assert not (BINDER / "environment.yml").exists()


@pytest.mark.parametrize("name", SCRIPTS)
def test_scripts_are_executable_bash_with_a_shebang(name):
    path = BINDER / name
    assert os.access(path, os.X_OK), f"binder/{name} is not executable (chmod +x)"
    first = text(name).splitlines()[0]
    assert first.startswith("#!") and "bash" in first, f"binder/{name} shebang: {first!r}"
    tracked = subprocess.run(
        ["git", "ls-files", "-s", f"binder/{name}"], capture_output=True, text=True, cwd=ROOT
    ).stdout.split()
    if tracked:  # once committed, git must carry the executable bit too
        assert tracked[0] == "100755", f"binder/{name} is committed without its x bit"
    result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def code_lines(name: str) -> list[str]:
    """The script's lines that are neither blank nor comments."""
    return [
        line.strip()
        for line in text(name).splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]


def test_start_hands_over_to_jupyter_last_and_never_aborts():
    lines = code_lines("start")
    assert lines[-1] == 'exec "$@"'
    assert not any(re.match(r"set\s+-\w*e", line) for line in lines), "start must not set -e"
    assert "labkit.services.cli up --only redis" in text("start")


def test_post_build_stops_on_errors_and_installs_the_kit_without_deps():
    lines = code_lines("postBuild")
    assert re.match(r"set\s+-\w*e", lines[0]), f"postBuild must start with set -e: {lines[0]!r}"
    assert "pip install --no-deps --no-cache-dir -e ." in text("postBuild")


def test_runtime_matches_the_lock_and_environment_yml():
    assert text("runtime.txt").strip() == "python-3.12"
    env = (ROOT / "environment.yml").read_text()
    assert re.search(r"^\s*-\s*python=3\.12\s*$", env, re.M), "environment.yml pins another Python"
    result = subprocess.run(
        [sys.executable, "tools/lock.py", "--check"], capture_output=True, text=True, cwd=ROOT
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_requirements_pin_everything_and_include_the_proxy():
    lines = [
        line.strip()
        for line in text("requirements.txt").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert all("==" in line for line in lines), [line for line in lines if "==" not in line]
    names = {line.split("==")[0].lower().replace("_", "-") for line in lines}
    assert {"jupyter-server-proxy", "jupyterlab", "ipywidgets", "django"} <= names
    assert "-e ." not in lines  # postBuild installs the kit, without deps


def test_apt_packages_are_debian_package_names():
    packages = apt_packages()
    assert "redis-server" in packages
    assert all(APT_NAME.match(p) for p in packages), packages
    apt_cache = shutil.which("apt-cache")
    lists = Path("/var/lib/apt/lists")
    has_lists = lists.is_dir() and any(lists.glob("*_Packages*"))
    require_service(
        "apt-cache",
        apt_cache is not None and has_lists,
        "this is not a Debian machine with package lists (apt-get update)",
    )
    for package in packages:
        found = subprocess.run(
            [apt_cache, "show", "--no-all-versions", package], capture_output=True, text=True
        )
        assert found.returncode == 0 and f"Package: {package}" in found.stdout, (
            f"{package} is not a Debian package: {found.stderr.strip()}"
        )


def test_no_secrets_in_binder_files():
    for path in sorted(BINDER.iterdir()):
        content = path.read_text(errors="replace")
        for pattern in SECRETS:
            match = pattern.search(content)
            assert match is None, f"binder/{path.name} looks like it holds a secret: {match[0]!r}"


def test_secret_patterns_catch_what_they_should():
    leaks = [
        "OPENAI_API_KEY=sk-proj-abcdef1234567890",
        "password = hunter2",
        "export TOKEN=abc123",
        "pip install --index-url https://user:pa55@example.org/simple",
    ]
    for leak in leaks:
        assert any(p.search(leak) for p in SECRETS), leak
    fine = ['rm -f "$template/secret_key"', 'export LAB_LLM_API_KEY="$KEY_FROM_ENV"']
    for line in fine:
        assert not any(p.search(line) for p in SECRETS), line


@pytest.mark.service("redis")
def test_start_copies_the_template_starts_redis_and_execs(tmp_path):
    from labkit.services import SERVICES, down

    require_service("redis", SERVICES["redis"].installed(), "redis-server is not installed")
    template = tmp_path / "template"
    template.mkdir()
    (template / "db.sqlite3").write_bytes(b"SQLite format 3\x00 template")
    state = tmp_path / "state"
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "LAB_STATE_DIR": str(state),
        "LAB_TEMPLATE_DIR": str(template),
        "TMPDIR": str(tmp_path),
    }
    try:
        result = subprocess.run(
            [str(BINDER / "start"), "echo", "jupyter would start here"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "jupyter would start here"
        assert (state / "db.sqlite3").read_bytes().endswith(b"template")
        services = json.loads((state / "services.json").read_text())
        assert set(services) == {"redis"}
        log = tmp_path / "labkit-start.log"
        assert "redis     started" in log.read_text()
        assert log.stat().st_mode & 0o077 == 0, "the log holds service URLs: mode 600"
    finally:
        down(state=state, purge=True)


def test_start_still_hands_over_when_nothing_works(tmp_path):
    # No python, no redis-server: every step fails, and Jupyter must start all the same.
    empty = tmp_path / "bin"
    empty.mkdir()
    for tool in ("date", "timeout", "echo"):
        os.symlink(shutil.which(tool), empty / tool)
    result = subprocess.run(
        ["/bin/bash", str(BINDER / "start"), "echo", "started anyway"],
        capture_output=True,
        text=True,
        env={"PATH": str(empty), "HOME": str(tmp_path), "TMPDIR": str(tmp_path)},
        timeout=60,
    )
    assert result.returncode == 0
    assert result.stdout.strip().endswith("started anyway")
    assert "a step failed" in result.stdout


@pytest.mark.slow
def test_post_build_builds_a_template_database_outside_home(tmp_path):
    # A stand-in pip records the call; python is the test's own, with the kit importable.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "pip-calls"
    (bin_dir / "python").write_text(
        "#!/bin/sh\n"
        f'if [ "$1 $2" = "-m pip" ]; then echo "$@" >> {calls}; exit 0; fi\n'
        f'exec {sys.executable} "$@"\n'
    )
    (bin_dir / "python").chmod(0o755)
    prefix = tmp_path / "prefix"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "NB_PYTHON_PREFIX": str(prefix),
        "HOME": str(tmp_path / "home"),
    }
    env.pop("LAB_STATE_DIR")
    result = subprocess.run(
        [str(BINDER / "postBuild")],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert calls.read_text().split() == [
        "-m", "pip", "install", "--no-deps", "--no-cache-dir", "-e", ".",
    ]  # fmt: skip
    template = prefix / "share" / "django-ai-lab" / "template"
    assert sorted(p.name for p in template.iterdir()) == ["db.sqlite3"]
    assert not (tmp_path / "home").exists(), "postBuild wrote under $HOME"
    import sqlite3

    db = sqlite3.connect(f"file:{template / 'db.sqlite3'}?mode=ro", uri=True)
    try:
        (documents,) = db.execute("SELECT count(*) FROM ai_document").fetchone()
    finally:
        db.close()
    assert documents == 40
