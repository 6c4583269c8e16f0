"""The ``qwen3`` command line.

Each part of the package contributes its own subcommands through a ``register(subparsers)`` function in the module
named in ``COMMAND_MODULES``; handlers import their heavy dependencies (torch, the engine, the server) only when run,
so ``qwen3 --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: list[str] = ["qwen3.model.cli", "qwen3.engine.cli", "qwen3.serve.cli", "qwen3.train.cli"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwen3", description="Run and train Qwen3 models.")
    parser.add_argument("--version", action="version", version=f"qwen3 {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except UserFacingError as err:
        print(f"qwen3 {args.command}: error: {err}", file=sys.stderr)
        return 1


def _version() -> str:
    from qwen3 import __version__

    return __version__


class UserFacingError(Exception):
    """An error caused by the user's input; the CLI prints its message without a traceback."""
