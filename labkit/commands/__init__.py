"""Subcommands of the `labkit` CLI: each module has `add_arguments(parser)` and `run(args)`.

They import only the standard library at top level (see `labkit.cli`).
"""
