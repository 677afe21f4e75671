"""`labkit mock-llm`: run the mock LLM server; its first line on stdout is the base URL.

Only the standard library is imported at module level, so building the `labkit` parser stays
fast; the server is imported inside `run`.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

# Kept in step with latency.PRESETS by a test; not imported, to keep this module light.
PRESET_NAMES = ("instant", "fast", "gpt4-2023", "slow")
LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the mock-llm options to `parser`."""
    parser.add_argument(
        "--port", type=int, default=0, help="TCP port on 127.0.0.1; 0 lets the OS pick a free one"
    )
    parser.add_argument(
        "--preset",
        default="fast",
        metavar="NAME",
        help=f"latency preset: {', '.join(PRESET_NAMES)} (slow is gpt4-2023)",
    )
    parser.add_argument(
        "--latency",
        type=float,
        metavar="SECONDS",
        help="fixed total latency of every call, replacing the preset's model",
    )
    parser.add_argument(
        "--ttft",
        metavar="MEDIAN[:P95]",
        help="time to first token in seconds, lognormal with a p95",
    )
    parser.add_argument(
        "--per-token", metavar="MEDIAN[:P95]", help="time per generated token in seconds"
    )
    parser.add_argument(
        "--outlier-rate", type=float, metavar="P", help="share of calls that are slow outliers"
    )
    parser.add_argument(
        "--outlier-factor", type=float, metavar="X", help="how many times slower an outlier is"
    )
    parser.add_argument(
        "--connect-delay",
        type=float,
        metavar="SECONDS",
        help="delay on each new TCP connection's first call, standing in for TLS; "
        "None keeps the preset's (0.15 s, or 0 for instant)",
    )
    parser.add_argument(
        "--rpm", type=int, help="requests allowed per rate window; None is unlimited"
    )
    parser.add_argument("--tpm", type=int, help="tokens allowed per rate window; None is unlimited")
    parser.add_argument(
        "--rate-window",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="length of the rate-limit window; shorten it for demos",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KIND=RATE",
        help="inject a fault in a share of calls; KIND is 500, 503, hang, cut or malformed; "
        "repeatable",
    )
    parser.add_argument(
        "--hang",
        type=float,
        default=300.0,
        metavar="SECONDS",
        help="how long a hung call sits before answering",
    )
    parser.add_argument(
        "--models",
        metavar="A,B",
        help="model names to serve, comma separated, * for any; None serves mock-gpt, "
        "gpt-4o-mini and other current names",
    )
    parser.add_argument(
        "--reply-tokens",
        metavar="MIN[:MAX]",
        help="length range of replies in tokens; None is 20:60",
    )
    parser.add_argument(
        "--seed", type=int, help="seed for latency and fault draws (repeatable runs)"
    )
    parser.add_argument(
        "--settings",
        metavar="JSON",
        help="settings as a JSON object, the keys of POST /_mock/config; applied last",
    )
    parser.add_argument(
        "--exit-with-parent",
        type=int,
        metavar="PID",
        help="stop when process PID is no longer our parent (set by MockLLM)",
    )
    parser.add_argument(
        "--log-level", default="warning", choices=LOG_LEVELS, help="stderr log level"
    )


def settings_changes(args: argparse.Namespace) -> dict[str, Any]:
    """The settings the options ask for, as `Settings.updated()` keys."""
    changes: dict[str, Any] = {"preset": args.preset}
    options = {
        "latency_s": args.latency,
        "ttft_s": args.ttft,
        "per_token_s": args.per_token,
        "outlier_rate": args.outlier_rate,
        "outlier_factor": args.outlier_factor,
        "connect_delay_s": args.connect_delay,
        "rpm": args.rpm,
        "tpm": args.tpm,
        "rate_window_s": args.rate_window,
        "hang_s": args.hang,
        "models": args.models,
        "seed": args.seed,
    }
    changes.update({key: value for key, value in options.items() if value is not None})
    if args.reply_tokens:
        low, _, high = args.reply_tokens.partition(":")
        changes["reply_tokens"] = [_int(low, "--reply-tokens"), _int(high or low, "--reply-tokens")]
    if args.fault:
        from labkit.mock_llm.faults import parse_rate_option

        changes["faults"] = dict(parse_rate_option(text) for text in args.fault)
    if args.settings:
        try:
            extra = json.loads(args.settings)
        except ValueError as error:
            raise ValueError(f"--settings is not JSON: {error}") from None
        if not isinstance(extra, dict):
            raise ValueError("--settings must be a JSON object, like '{\"rpm\": 60}'")
        changes.update(extra)
    return changes


def _int(text: str, option: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{option}: {text!r} is not a whole number") from None


def run(args: argparse.Namespace) -> int:
    """Serve until interrupted; return 2 with a one-line reason if the mock cannot start."""
    from labkit.mock_llm.listener import PortInUse, run_server
    from labkit.mock_llm.service import MockService
    from labkit.mock_llm.settings import Settings

    try:
        settings = Settings().updated(settings_changes(args))
    except ValueError as error:  # SettingsError and FaultError are ValueErrors
        print(f"labkit mock-llm: {error}", file=sys.stderr)
        return 2
    tty = sys.stdout.isatty()

    def ready(url: str) -> None:
        print(url, flush=True)
        if tty:
            root = url.removesuffix("/v1")
            print(
                f"preset {settings.preset}; stats at {root}/_mock/stats; Ctrl+C stops", flush=True
            )

    try:
        run_server(
            MockService(settings),
            args.port,
            ready,
            parent_pid=args.exit_with_parent,
            log_level=args.log_level,
        )
    except PortInUse as error:
        print(f"labkit mock-llm: {error}", file=sys.stderr)
        return 2
    return 0
