"""The `labkit` command line: one subcommand per instrument, imported only when used."""

from __future__ import annotations

import argparse
import importlib
import sys

# Each subcommand lives in its own module exposing `add_arguments(parser)` and `run(args) -> int`.
# Those modules import only the standard library at top level, so building the whole parser stays
# fast; heavy imports (Django, uvicorn, nbclient) happen inside `run`.
COMMANDS: dict[str, tuple[str, str]] = {
    "doctor": ("labkit.doctor", "Check that this machine can run the lab; exit non-zero if not."),
    "mock-llm": ("labkit.mock_llm.cli", "Run the OpenAI-compatible mock LLM server."),
    "local-llm": (
        "labkit.local_llm.cli",
        "Serve a real small model (the local-llm extra) on 127.0.0.1 until Ctrl-C.",
    ),
    "bench": ("labkit.bench", "Measure the course's core scenarios and write JSON."),
    "notebooks": (
        "labkit.commands.notebooks",
        "Build learner notebooks from the masters in solutions/.",
    ),
    "grade": (
        "labkit.commands.grade",
        "Grade submitted notebooks headless; write JSON, Markdown, JUnit.",
    ),
    "verify": (
        "labkit.commands.verify",
        "Prove each check passes the solution, fails starters and mistakes.",
    ),
    "services": ("labkit.services.cli", "Start, stop and check Redis and PostgreSQL on loopback."),
    "solve": (
        "labkit.commands.solve",
        "Write a solved copy of a step's notebook beside the learner's.",
    ),
}


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser, or (`only`) one whose single subcommand's module is imported.

    `labkit mock-llm` starts every kernel's mock: it must not depend on the other commands'
    modules importing cleanly.
    """
    parser = argparse.ArgumentParser(
        prog="labkit",
        description="Instruments of the Django AI Async Lab.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(
            name,
            help=help_text,
            description=help_text,
            formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        )
        command.set_defaults(_module=module_name)
        if only in (None, name):
            importlib.import_module(module_name).add_arguments(command)
    return parser


def _version() -> str:
    from importlib.metadata import version

    return f"labkit {version('django-ai-async-lab')}"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv and argv[0] in COMMANDS else None)
    args = parser.parse_args(argv)
    if not args.command:
        parser.print_help()
        return 2
    module = importlib.import_module(args._module)
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
