"""The ``qwen3`` command line.

Each part of the package contributes its own subcommands through a ``register(subparsers)`` function in the module
named in ``COMMAND_MODULES``; handlers import their heavy dependencies (torch, the engine, the server) only when run,
so ``qwen3 --help`` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMAND_MODULES: list[str] = [
    "qwen3.model.cli",
    "qwen3.engine.cli",
    "qwen3.serve.cli",
    "qwen3.train.cli",
    "qwen3.eval.cli",
    "qwen3.recipes.cli",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="qwen3", description="Run and train Qwen3 models.")
    parser.add_argument("--version", action="version", version=f"qwen3 {_version()}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: list[str] | None = None) -> argparse.Namespace:
    """``parser.parse_args`` that takes ``KEY=VALUE`` overrides anywhere among the options.

    argparse fills a ``nargs="*"`` positional once, so overrides written after an option (``qwen3 train debug
    --no-progress run_dir=runs/x``) come back unrecognised (and ``parse_intermixed_args`` refuses subparsers). A
    command with an ``overrides`` argument gets those leftovers appended in the order typed (later ones win);
    anything else left over, such as an unknown flag, is still an error.
    """
    args, extras = parser.parse_known_args(argv)
    if not extras:
        return args
    overrides = getattr(args, "overrides", None)
    stray = [arg for arg in extras if overrides is None or arg.startswith("-") or "=" not in arg]
    if stray:
        hint = " (overrides are KEY=VALUE)" if overrides is not None else ""
        parser.error(f"unrecognized arguments: {' '.join(stray)}{hint}")
    args.overrides = [*overrides, *extras]
    return args


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:
        if not is_user_error(err):
            raise
        print(f"qwen3 {args.command}: error: {err}", file=sys.stderr)
        return 1


# Errors about the user's files, settings or data: their messages name the file, line, field or tensor, so the CLI
# prints them as one line. Looked up in sys.modules because an exception of a class can only exist once its module
# has been imported (and importing them here would make `qwen3 --help` slow).
USER_ERROR_CLASSES = {
    "qwen3.model.hf_files": "CheckpointError",
    "qwen3.model.validation": "ConfigError",
    "qwen3.tokenizer.tokenizer": "TokenizerLoadError",
    "qwen3.tokenizer.ranks": "RankFileError",
    "qwen3.train.settings": "SettingsError",
    "qwen3.train.corpus": "DataError",
    "qwen3.train.trainer": "TrainingError",
}


def is_user_error(err: BaseException) -> bool:
    if isinstance(err, UserFacingError):
        return True
    for module_name, class_name in USER_ERROR_CLASSES.items():
        module = sys.modules.get(module_name)
        if module is not None and isinstance(err, getattr(module, class_name)):
            return True
    return False


def _version() -> str:
    from qwen3 import __version__

    return __version__


class UserFacingError(Exception):
    """An error caused by the user's input; the CLI prints its message without a traceback."""
