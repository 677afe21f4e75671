"""One bubblewrap sandbox per submission: what it sees, what it may use, when it ends.

Inside: the system's programs and Python read-only, the kit's packages and venv read-only (not
`solutions/`, not the grader's files, not other submissions), a private HOME and /tmp, the
submission's work folder read-write and the grader's channel folder (Unix sockets of the mock
LLM and PostgreSQL) read-only. Its own user, PID, IPC, UTS and network namespaces: no network
but its own loopback; uid 1000 with no capabilities; an environment built from an allow-list.
It dies with the grader, and killing it ends every process in it (the PID namespace's init
goes, the kernel kills the rest): nothing a notebook starts can outlive its grading.

    argv = bwrap_argv(layout, ["python", "-m", "labkit.grading.inside", ...])
    subprocess.Popen(argv, env=sandbox_env({}), preexec_fn=...)
"""

from __future__ import annotations

import functools
import os
import resource
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import labkit
import labproject

INSIDE_WORK = "/grade/work"
INSIDE_CHANNEL = "/grade/chan"
INSIDE_HOME = "/home/learner"
SANDBOX_UID = 1000
# What a graded notebook may learn from the grader's environment: nothing else crosses.
PASSED_ENV = ("LAB_SIZE", "LANG", "LC_ALL", "TZ")
# The tests' flag that turns a missing Redis/PostgreSQL into a failure, never a fallback.
PASSED_ENV += ("LAB_REQUIRE_SERVICES",)
INSTALL_HINT = "apt-get install bubblewrap (Debian/Ubuntu), dnf install bubblewrap (Fedora)"


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandbox (per process where the kernel has no group limit)."""

    memory_mb: int = 6144  # address space of each process
    file_mb: int = 512  # the largest file a process may write
    open_files: int = 4096
    processes: int = 512  # tasks of the sandbox's user (its own user namespace)


@dataclass(frozen=True)
class Layout:
    """The host folders of one submission's run."""

    work: Path  # read-write inside, at /grade/work
    channel: Path  # read-only inside, at /grade/chan
    solutions: Path | None = None  # `labkit verify` only: the trusted masters, read-only


@functools.cache
def unusable_reason() -> str | None:
    """Why no sandbox can be made here (None: bwrap works with every namespace unshared)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return f"bubblewrap (bwrap) is not installed; {INSTALL_HINT}"
    probe = [bwrap, *_base_args(), "--", "/bin/true"]
    try:
        result = subprocess.run(probe, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"bwrap could not run: {exc}"
    if result.returncode != 0:
        return f"bwrap cannot make a sandbox here: {result.stderr.strip()[:300]}"
    return None


def bwrap_argv(layout: Layout, command: list[str]) -> list[str]:
    """The bwrap command that runs `command` sandboxed.

    Start it with exactly the allow-listed environment (`sandbox_env`): bwrap passes its own
    environment on, and values given as `--setenv` would show in the host's process list.
    """
    bwrap = shutil.which("bwrap") or "bwrap"
    args = [bwrap, *_base_args()]
    args += ["--bind", str(layout.work), INSIDE_WORK]
    args += ["--ro-bind", str(layout.channel), INSIDE_CHANNEL]
    if layout.solutions is not None:
        args += ["--ro-bind", str(layout.solutions), str(layout.solutions)]
    for path in extra_step_paths()[0]:
        args += ["--ro-bind", str(path), str(path)]
    args += ["--chdir", INSIDE_WORK]
    return [*args, "--", *command]


def extra_step_paths() -> tuple[list[Path], list[str]]:
    """What LABKIT_EXTRA_STEPS modules (the operator's, e.g. the tests') need inside.

    Returns the paths to bind read-only — each enclosing package's `__init__.py` and the
    module's own folder, never the rest of the tree (a test tree keeps masters too) — and the
    folders to put on PYTHONPATH.
    """
    import importlib.util

    from labkit.exercises.registry import extra_modules

    binds: list[Path] = []
    roots: list[str] = []
    for module in extra_modules():
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            continue
        origin = Path(spec.origin).resolve()
        parts = module.split(".")
        folder = origin.parent
        binds.append(folder)
        for _ in parts[1:-1]:  # the packages above the module's own folder
            folder = folder.parent
            binds.append(folder / "__init__.py")
        root = origin.parents[len(parts) - 1]
        roots.append(str(root))
    return binds, sorted(set(roots))


def operator_env() -> dict[str, str]:
    """Settings of the grader's operator that the sandbox and the checker both need."""
    from labkit.exercises.registry import ENV_EXTRA

    env = {}
    if os.environ.get(ENV_EXTRA):
        env[ENV_EXTRA] = os.environ[ENV_EXTRA]
        env["PYTHONPATH"] = os.pathsep.join(extra_step_paths()[1])
    return env


def sandbox_env(extra: dict[str, str]) -> dict[str, str]:
    """The allow-listed environment: paths of the sandbox, a few LAB_* knobs, `extra`."""
    env = {key: os.environ[key] for key in PASSED_ENV if key in os.environ}
    env.setdefault("LANG", "C.UTF-8")
    env |= {
        "PATH": f"{Path(sys.prefix) / 'bin'}:/usr/local/bin:/usr/bin:/bin",
        "HOME": INSIDE_HOME,
        "TMPDIR": "/tmp",
        "IPYTHONDIR": f"{INSIDE_HOME}/.ipython",
        "JUPYTER_RUNTIME_DIR": "/tmp/jupyter-runtime",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "XDG_CACHE_HOME": "/tmp/cache",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAB_STATE_DIR": f"{INSIDE_WORK}/state",
        "LAB_GRADING": "1",
        "LAB_USE_SERVICES": "0",
    }
    return env | operator_env() | extra


def limit_resources(limits: Limits) -> None:
    """preexec_fn of the sandbox's bwrap: limits every process inside inherits."""
    mb = 1024 * 1024
    for which, value in (
        (resource.RLIMIT_AS, limits.memory_mb * mb),
        (resource.RLIMIT_FSIZE, limits.file_mb * mb),
        (resource.RLIMIT_NOFILE, limits.open_files),
        (resource.RLIMIT_NPROC, limits.processes),
        (resource.RLIMIT_CORE, 0),
    ):
        try:
            resource.setrlimit(which, (value, value))
        except (ValueError, OSError):
            pass  # a limit this kernel does not allow lowering to: the deadline still holds


def _code_roots() -> list[Path]:
    """Read-only folders the sandbox needs: the Python install, the venv, the kit's packages."""
    roots = {Path(sys.base_prefix).resolve(), Path(sys.prefix).resolve()}
    for package in (labkit, labproject):
        roots.add(Path(package.__file__).resolve().parent)
    return sorted(roots)


def _base_args() -> list[str]:
    args = [
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--cap-drop", "ALL",
        "--uid", str(SANDBOX_UID),
        "--gid", str(SANDBOX_UID),
        "--hostname", "labkit-sandbox",
        "--ro-bind", "/usr", "/usr",
        "--ro-bind", "/etc", "/etc",
    ]  # fmt: skip
    for link in ("/bin", "/lib", "/lib64", "/sbin"):
        path = Path(link)
        if path.is_symlink():
            args += ["--symlink", os.readlink(path), link]
        elif path.is_dir():
            args += ["--ro-bind", link, link]
    args += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--tmpfs", "/home"]
    args += ["--dir", INSIDE_HOME, "--tmpfs", "/run"]
    for root in _code_roots():
        if not str(root).startswith("/usr/"):
            args += ["--ro-bind", str(root), str(root)]
    return args
