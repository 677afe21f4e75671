"""PostgreSQL in user space: a private cluster on loopback with a `lab` role and database."""

from __future__ import annotations

import glob
import hashlib
import os
import re
import shutil
import signal
import stat
import tempfile
import time
from pathlib import Path

from labkit.services.base import (
    HOST,
    START_TIMEOUT_S,
    Account,
    MissingBinary,
    Running,
    ServiceError,
    log_tail,
    pid_alive,
    process_name,
    process_tree,
    run,
    secret,
    terminate,
    unprivileged_account,
    wait_gone,
    writable_dir,
)

INSTALL_HINT = "apt install postgresql, or brew install postgresql"
ENV_BIN = "LAB_POSTGRES_BIN"
# Debian and Ubuntu keep the server programs off PATH, one folder per major version.
SEARCH_GLOBS = [
    "/usr/lib/postgresql/*/bin",
    "/usr/local/pgsql/bin",
    "/opt/homebrew/opt/postgresql*/bin",
    "/usr/local/opt/postgresql*/bin",
]
DATABASE = "lab"
ROLE = "lab"
SUPERUSER = "postgres"
# Sized for a 2 GB Binder session, and disposable: the lab's data is re-seeded in seconds, so
# durability is traded for speed (no fsync). max_connections stays at 100 so a notebook can
# show 50 concurrent requests holding 50 connections before a pool caps them.
SETTINGS = {
    "listen_addresses": f"'{HOST}'",
    # TCP only: Debian's default socket folder, /var/run/postgresql, is root's, and a socket
    # path under a deep state dir can pass the 107-byte limit.
    "unix_socket_directories": "''",
    "max_connections": "100",
    "shared_buffers": "32MB",
    "huge_pages": "off",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "logging_collector": "off",
}


class PostgresService:
    name = "postgres"
    env_var = "LAB_DATABASE_URL"
    binary_name = "pg_ctl"

    def find(self) -> Path:
        """The folder holding initdb, pg_ctl and postgres, or MissingBinary."""
        found = find_bin_dir()
        if found is None:
            where = (
                "$" + ENV_BIN if os.environ.get(ENV_BIN) else "PATH or /usr/lib/postgresql/*/bin"
            )
            raise MissingBinary(f"PostgreSQL (initdb, pg_ctl) not found on {where}: {INSTALL_HINT}")
        return found

    def installed(self) -> bool:
        return find_bin_dir() is not None

    def owns(self, record: Running) -> bool:
        return pid_alive(record.pid) and process_name(record.pid) in {"postgres", "postmaster"}

    def cluster_dir(self, home: Path, account: Account) -> Path:
        """Where the cluster lives: in the state dir, or (as root) where `account` can reach.

        As root the state dir is usually private to root (under /root, or a 0700 temp dir) and
        the unprivileged account could not enter it, so the cluster goes to a folder of the
        system temp dir named after the state dir: `up` finds it again, and `down --purge`
        removes it.
        """
        if account.is_self:
            return home
        digest = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
        return Path(tempfile.gettempdir()) / f"labkit-postgres-{digest}"

    def start(self, home: Path, port: int) -> Running:
        bin_dir = self.find()
        account = unprivileged_account()
        started = time.perf_counter()
        writable_dir(home)
        password = secret(home / "password")
        cluster = self.cluster_dir(home, account)
        _own_dir(cluster, account)
        data, log = cluster / "data", cluster / "postgres.log"
        notes = []
        if not (data / "PG_VERSION").exists():
            self._initdb(bin_dir, data, cluster, password, account)
            notes.append("initdb")
        _check_major(bin_dir, data)
        pg_ctl = str(bin_dir / "pg_ctl")
        if run([pg_ctl, "status", "-D", str(data)], account=account).returncode == 0:
            # A postmaster from an earlier run we have no record of: restart it on our port.
            run([pg_ctl, "stop", "-D", str(data), "-m", "fast", "-w"], account=account)
        result = run(
            [pg_ctl, "start", "-D", str(data), "-l", str(log), "-w", "-t", "30"]
            + ["-o", f"-p {port}"],
            account=account,
            timeout_s=START_TIMEOUT_S + 5,
        )
        if result.returncode != 0:
            raise ServiceError(
                f"PostgreSQL did not start on {HOST}:{port} (pg_ctl exit {result.returncode}); "
                f"its log ({log}) says:\n{log_tail(log)}"
            )
        try:
            pid = _postmaster_pid(data)
            _create_role_and_database(port, password)
        except ServiceError:
            # Leave nothing running that no record points at.
            run([pg_ctl, "stop", "-D", str(data), "-m", "immediate", "-w"], account=account)
            raise
        return Running(
            name=self.name,
            url=f"postgres://{ROLE}:{password}@{HOST}:{port}/{DATABASE}",
            port=port,
            pid=pid,
            data_dir=str(data),
            log=str(log),
            version=self.version(bin_dir),
            user=account.name,
            start_s=round(time.perf_counter() - started, 3),
            extra={"bin_dir": str(bin_dir), "cluster": str(cluster), "steps": notes},
        )

    def _initdb(self, bin_dir: Path, data: Path, cluster: Path, password: str, account: Account):
        # The superuser's password goes through a file the server's account can read, never
        # the command line; the file is gone once initdb has read it.
        pwfile = cluster / "initdb-password"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(password + "\n")
        account.chown(pwfile)
        try:
            result = run(
                [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER]
                + ["--pwfile", str(pwfile), "--auth=scram-sha-256"]
                + ["-E", "UTF8", "--no-locale", "--no-sync"],
                account=account,
                env={**os.environ, "LC_ALL": "C"},
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if result.returncode != 0:
            shutil.rmtree(data, ignore_errors=True)  # a half-made cluster would block the next try
            raise ServiceError(f"initdb failed:\n{(result.stderr or result.stdout).strip()}")
        with open(data / "postgresql.conf", "a") as conf:
            conf.write("\n# Set by labkit services\n")
            conf.writelines(f"{key} = {value}\n" for key, value in SETTINGS.items())

    def stop(self, record: Running, timeout_s: float) -> None:
        if not self.owns(record):
            return
        pids = process_tree(record.pid)  # the postmaster and its workers, to see them all go
        bin_dir = Path(record.extra.get("bin_dir") or self.find())
        result = run(
            [str(bin_dir / "pg_ctl"), "stop", "-D", record.data_dir, "-m", "fast", "-w"]
            + ["-t", str(int(timeout_s))],
            account=unprivileged_account(),
            timeout_s=timeout_s + 5,
        )
        if result.returncode != 0:
            terminate([record.pid], timeout_s, sig=signal.SIGINT)  # SIGINT is "fast" shutdown
        left = wait_gone(pids, timeout_s)
        if left:
            terminate(left, 5)

    def ping(self, record: Running) -> str:
        import psycopg

        started = time.perf_counter()
        try:
            with psycopg.connect(record.url, connect_timeout=3, autocommit=True) as conn:
                value = conn.execute("SELECT 1").fetchone()
        except psycopg.Error as exc:
            raise ServiceError(f"{record.masked_url}: {str(exc).strip()}") from None
        if value != (1,):
            raise ServiceError(f"SELECT 1 returned {value!r}")
        return f"SELECT 1 in {(time.perf_counter() - started) * 1000:.1f} ms"

    def version(self, bin_dir: Path) -> str:
        result = run([str(bin_dir / "pg_ctl"), "--version"], timeout_s=10)
        match = re.search(r"\(PostgreSQL\) (\S+)", result.stdout)
        return f"PostgreSQL {match.group(1)}" if match else result.stdout.strip()

    def purge(self, home: Path) -> None:
        shutil.rmtree(self.cluster_dir(home, unprivileged_account()), ignore_errors=True)
        shutil.rmtree(home, ignore_errors=True)


def find_bin_dir() -> Path | None:
    """The newest folder with initdb and pg_ctl: $LAB_POSTGRES_BIN, PATH, then usual places."""
    explicit = os.environ.get(ENV_BIN)
    if explicit:
        candidates = [Path(explicit)]
    else:
        candidates = []
        on_path = shutil.which("pg_ctl")
        if on_path:
            candidates.append(Path(on_path).resolve().parent)
        found = [Path(p) for pattern in SEARCH_GLOBS for p in glob.glob(pattern)]
        candidates += sorted(found, key=_version_key, reverse=True)
    for folder in candidates:
        if all(os.access(folder / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _version_key(path: Path) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", str(path))) or (0,)


def _own_dir(path: Path, account: Account) -> None:
    """Make `path` a 0700 folder owned by `account`; refuse one someone else made."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise ServiceError(
            f"data dir {path} is not writable: {exc.strerror or exc}; "
            "set LAB_STATE_DIR to a writable folder"
        ) from None
    info = os.lstat(path)
    if not account.is_self:
        if stat.S_ISLNK(info.st_mode) or info.st_uid not in (0, account.uid):
            raise ServiceError(f"{path} exists and belongs to another user; remove it first")
        os.chown(path, account.uid, account.gid)
        os.chmod(path, 0o700)


def _check_major(bin_dir: Path, data: Path) -> None:
    made_by = (data / "PG_VERSION").read_text().strip()
    match = re.search(r"/(\d+)/bin", str(bin_dir))
    if match and match.group(1) != made_by:
        raise ServiceError(
            f"{data} was made by PostgreSQL {made_by} but the binaries in {bin_dir} are "
            f"{match.group(1)}; remove it with `labkit services down --only postgres --purge`"
        )


def _postmaster_pid(data: Path) -> int:
    try:
        return int((data / "postmaster.pid").read_text().splitlines()[0])
    except (OSError, ValueError, IndexError) as exc:
        raise ServiceError(f"PostgreSQL started but {data}/postmaster.pid is unreadable") from exc


def _create_role_and_database(port: int, password: str) -> None:
    """Create the `lab` role (CREATEDB, for Django's test databases) and database, once."""
    import psycopg
    from psycopg import sql

    url = f"postgres://{SUPERUSER}:{password}@{HOST}:{port}/postgres"
    try:
        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            if not conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [ROLE]).fetchone():
                conn.execute(
                    sql.SQL("CREATE ROLE {} LOGIN CREATEDB PASSWORD {}").format(
                        sql.Identifier(ROLE), sql.Literal(password)
                    )
                )
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DATABASE])
            if not exists.fetchone():
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(DATABASE), sql.Identifier(ROLE)
                    )
                )
    except psycopg.Error as exc:
        raise ServiceError(
            f"PostgreSQL runs on port {port} but setting up role and database {DATABASE!r} "
            f"failed: {str(exc).strip()}"
        ) from None
