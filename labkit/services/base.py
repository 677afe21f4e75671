"""What every user-space service shares: its record, its errors, ports, processes, privileges."""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"  # every service listens on loopback only
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 30.0
# Used only when running as root, for the servers that refuse root (PostgreSQL).
ENV_SERVICES_USER = "LAB_SERVICES_USER"
DEFAULT_UNPRIVILEGED_USER = "nobody"


class ServiceError(Exception):
    """A service could not be started, stopped or reached; the message says what to do."""


class MissingBinary(ServiceError):
    """The server's program is not installed."""


class PortInUse(ServiceError):
    """The port asked for is taken by another program."""


@dataclass
class Running:
    """One running service, as recorded in the state dir's services.json."""

    name: str
    url: str
    port: int
    pid: int
    data_dir: str
    log: str
    version: str
    user: str
    start_s: float
    host: str = HOST
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def masked_url(self) -> str:
        """The URL with its password replaced by `***`, for logs and status lines."""
        scheme, sep, rest = self.url.partition("://")
        creds, at, location = rest.rpartition("@")
        if not at or ":" not in creds:
            return self.url
        user = creds.split(":", 1)[0]
        return f"{scheme}{sep}{user}:***@{location}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Running:
        known = {name for name in cls.__dataclass_fields__}
        return cls(**{key: value for key, value in data.items() if key in known})


@dataclass
class Health:
    """What `status` found for one service."""

    name: str
    state: str  # answering | not answering | stopped | not installed
    detail: str
    record: Running | None = None

    @property
    def answering(self) -> bool:
        return self.state == "answering"


# Ports -------------------------------------------------------------------------------------


def free_port() -> int:
    """A port the OS says is free on loopback right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def port_in_use(port: int) -> bool:
    """True when something already listens on HOST:port (or the port cannot be bound)."""
    with socket.socket() as sock:
        # Servers set SO_REUSEADDR, so a port in TIME_WAIT is not "in use" for them either.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((HOST, port))
        except OSError:
            return True
    return False


def accepts(port: int, timeout_s: float = 0.25) -> bool:
    """True when a TCP connection to HOST:port succeeds."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def choose_port(name: str, wanted: int | None, previous: int | None) -> int:
    """The asked-for port if free (else PortInUse), else the previous one if free, else any."""
    if wanted:
        if port_in_use(wanted):
            raise PortInUse(
                f"{name}: port {wanted} on {HOST} is already in use by another program; "
                f"choose another with --{name}-port, or leave it unset for a free one"
            )
        return wanted
    if previous and not port_in_use(previous):
        return previous  # the same URL as last time, when it is still free
    return free_port()


# Processes ---------------------------------------------------------------------------------


def pid_alive(pid: int) -> bool:
    """True when `pid` is a live process: not a zombie, nor a dying one.

    A killed multi-threaded server (Redis has I/O threads) can show its main thread as a
    zombie while the other threads still hold its sockets; it is gone only when they are.
    """
    import psutil

    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE or process.num_threads() > 1
    except psutil.Error:
        return False


def process_name(pid: int) -> str | None:
    import psutil

    try:
        return psutil.Process(pid).name()
    except psutil.Error:
        return None


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants, while they live."""
    import psutil

    try:
        parent = psutil.Process(pid)
        return [pid, *(child.pid for child in parent.children(recursive=True))]
    except psutil.Error:
        return []


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Wait until every pid has exited; return those still alive after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    alive = [pid for pid in pids if pid_alive(pid)]
    while alive and time.monotonic() < deadline:
        time.sleep(0.05)
        alive = [pid for pid in alive if pid_alive(pid)]
    return alive


def terminate(pids: list[int], timeout_s: float, sig: int = signal.SIGTERM) -> None:
    """Send `sig`, wait, then SIGKILL what is left; raise ServiceError if anything survives."""
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    left = wait_gone(pids, timeout_s)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    left = wait_gone(left, 5)
    if left:
        raise ServiceError(f"processes {left} did not exit after SIGKILL")


def wait_until(predicate, timeout_s: float, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)


def log_tail(path: Path | str, lines: int = 8) -> str:
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return ""
    tail = text.strip().splitlines()[-lines:]
    return "\n".join(f"    {line}" for line in tail)


# Privileges --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Account:
    """Whom a server process runs as: this process's user, or an unprivileged one under root."""

    name: str
    uid: int
    gid: int

    @property
    def is_self(self) -> bool:
        return self.uid == os.geteuid()

    def popen_kwargs(self) -> dict[str, Any]:
        """subprocess arguments that run a command as this account (needs root unless self)."""
        if self.is_self:
            return {}
        # setgroups([]) then setgid then setuid in the child, before exec; no setpriv/runuser
        # needed. umask 077: the data files are readable by that account only.
        return {"user": self.uid, "group": self.gid, "extra_groups": [], "umask": 0o077}

    def chown(self, path: Path) -> None:
        if not self.is_self:
            os.chown(path, self.uid, self.gid)


def current_account() -> Account:
    uid = os.geteuid()
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    return Account(name, uid, os.getegid())


def unprivileged_account() -> Account:
    """The account to run root-refusing servers as: ourselves, or `nobody` when we are root.

    PostgreSQL will not start as root (a database superuser could then act as root). CI runs
    the tests as root, so there initdb and pg_ctl run as `nobody` (or $LAB_SERVICES_USER) on a
    data dir that account owns. Without root nothing changes: servers run as the user.
    """
    if os.geteuid() != 0:
        return current_account()
    name = os.environ.get(ENV_SERVICES_USER) or DEFAULT_UNPRIVILEGED_USER
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        raise ServiceError(
            f"running as root, PostgreSQL must run as an unprivileged user, but user {name!r} "
            f"does not exist; set {ENV_SERVICES_USER} to an existing unprivileged user"
        ) from None
    if entry.pw_uid == 0:
        raise ServiceError(f"{ENV_SERVICES_USER}={name!r} is root; name an unprivileged user")
    return Account(name, entry.pw_uid, entry.pw_gid)


def run(
    command: list[str],
    *,
    account: Account | None = None,
    timeout_s: float = START_TIMEOUT_S,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run a server's helper program (initdb, pg_ctl, redis-server) and capture its output."""
    kwargs = account.popen_kwargs() if account else {}
    return subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout_s,
        cwd="/",  # a directory every account may enter
        env=env,
        stdin=subprocess.DEVNULL,
        **kwargs,
    )


# Files -------------------------------------------------------------------------------------


def writable_dir(path: Path, what: str = "data dir") -> Path:
    """Create `path` (mode 700) and prove it writable, or raise a ServiceError saying so."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        probe = path / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise ServiceError(
            f"{what} {path} is not writable: {exc.strerror or exc}; "
            "set LAB_STATE_DIR to a writable folder"
        ) from None
    return path


def secret(path: Path) -> str:
    """Read the password stored at `path`, creating a random one (mode 600) on first use."""
    from labproject.state import secret_file

    # URL-safe: goes into redis:// and postgres:// URLs as is.
    return secret_file(path, secrets.token_urlsafe(24))


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` (two `up`s at once, e.g. Binder's start and a cell)."""
    import fcntl

    try:
        handle = open(path, "a")  # closed by the `with handle` below
    except OSError as exc:
        raise ServiceError(
            f"data dir {path.parent} is not writable ({path.name}: {exc.strerror or exc}); "
            "set LAB_STATE_DIR to a writable folder"
        ) from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
