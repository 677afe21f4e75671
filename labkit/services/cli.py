"""`labkit services up|down|status|env`: Redis and PostgreSQL in user space, on loopback.

labkit services up                  # start what is installed; print the env lines to use
labkit services status              # PING / SELECT 1 each; exit 1 unless all answer
labkit services down --purge        # stop them (waiting for every process) and drop the data
eval "$(labkit services env)"       # export LAB_CACHE_URL / LAB_DATABASE_URL in a shell
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys

ACTIONS = ("up", "down", "status", "env")
NAMES = ("redis", "postgres")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=ACTIONS,
        help="up: start; down: stop; status: PING / SELECT 1 each; env: shell export lines",
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=NAMES,
        metavar="{redis,postgres}",
        default=argparse.SUPPRESS,
        help="act on this service only (repeatable; default: all)",
    )
    parser.add_argument(
        "--redis-port",
        type=int,
        metavar="PORT",
        default=argparse.SUPPRESS,
        help="port for Redis (default: $LAB_REDIS_PORT, else the last one if free, else free)",
    )
    parser.add_argument(
        "--postgres-port",
        type=int,
        metavar="PORT",
        default=argparse.SUPPRESS,
        help="port for PostgreSQL (default: $LAB_POSTGRES_PORT, else as for Redis)",
    )
    parser.add_argument(
        "--purge", action="store_true", help="with down: also delete the services' data"
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    from labkit.services import ServiceError

    args.only = getattr(args, "only", None)
    try:
        return {"up": _up, "down": _down, "status": _status, "env": _env}[args.action](args)
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _up(args: argparse.Namespace) -> int:
    from labkit.services import SERVICES, up
    from labkit.services.registry import RECORD_FILE, resolve_state

    ports = {name: getattr(args, f"{name}_port", None) for name in NAMES}
    changes = up(args.only, ports={k: v for k, v in ports.items() if v})
    if args.json:
        print(json.dumps([_change_json(c) for c in changes], indent=2))
        return 0 if all(c.ok for c in changes) else 1
    for change in changes:
        record = change.record
        if record is not None:
            how = f"{record.version}, pid {record.pid}, user {record.user}"
            if change.action == "started":
                how += f", {record.start_s:.2f} s"
            print(f"{change.name:<9} {change.action} on {record.host}:{record.port} ({how})")
        else:
            stream = sys.stderr if change.action == "failed" else sys.stdout
            print(f"{change.name:<9} {change.action}: {change.error}", file=stream)
    running = [c for c in changes if c.record is not None]
    if running:
        print(f"\nRecorded in {resolve_state() / RECORD_FILE}; boot() uses them by itself.")
        print("Elsewhere (a shell, uvicorn, gunicorn), set:")
        for change in running:
            print(f"{SERVICES[change.name].env_var}={change.record.url}")
    return 0 if all(c.ok for c in changes) else 1


def _down(args: argparse.Namespace) -> int:
    from labkit.services import down

    changes = down(args.only, purge=args.purge)
    if args.json:
        print(json.dumps([_change_json(c) for c in changes], indent=2))
    else:
        for change in changes:
            line = f"{change.name:<9} {change.action}"
            if change.action == "stopped" and change.record is not None:
                line += f" (pid {change.record.pid})"
            if change.error:
                line += f": {change.error}"
            if args.purge and change.ok:
                line += ", data deleted"
            print(line, file=sys.stderr if not change.ok else sys.stdout)
    return 0 if all(c.ok for c in changes) else 1


def _status(args: argparse.Namespace) -> int:
    from labkit.services import status

    report = status(args.only)
    # Without --only, a service that is not installed is reported but does not fail status.
    counted = [h for h in report if args.only or h.state != "not installed"]
    ok = bool(counted) and all(h.answering for h in counted)
    if args.json:
        items = [
            {
                "name": h.name,
                "state": h.state,
                "detail": h.detail,
                "url": h.record.masked_url if h.record else None,
                "pid": h.record.pid if h.record else None,
            }
            for h in report
        ]
        print(json.dumps({"ok": ok, "services": items}, indent=2))
        return 0 if ok else 1
    for health in report:
        where = f"  {health.record.masked_url}  pid {health.record.pid}" if health.record else ""
        if health.state in {"stopped", "not installed"}:
            where = ""
        print(f"{health.name:<9} {health.state:<14} {health.detail}{where}")
    return 0 if ok else 1


def _env(args: argparse.Namespace) -> int:
    from labkit.services import SERVICES, environment

    wanted = {SERVICES[name].env_var for name in (args.only or NAMES)}
    for key, value in environment().items():
        if key in wanted:
            print(f"export {key}={shlex.quote(value)}")
    return 0


def _change_json(change) -> dict:
    record = change.record.to_json() if change.record is not None else None
    return {"name": change.name, "action": change.action, "error": change.error, "record": record}


def main(argv: list[str] | None = None) -> int:
    """Run as `python -m labkit.services.cli ACTION` (what `labkit services` runs)."""
    parser = argparse.ArgumentParser(prog="labkit services", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
