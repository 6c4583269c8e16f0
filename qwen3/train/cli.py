"""``qwen3 train CONFIG|PRESET [KEY=VALUE ...] [--resume]`` and ``qwen3 plot RUN_DIR ... -o loss.png``.

CONFIG is a TOML/JSON file or the name of a shipped preset (qwen3/train/configs/NAME.toml). Its ``stage`` picks
the registered stage that runs it (qwen3.train.stages: "train", "sft", "s1".."s3", "grpo", ...); a config with
``[stages.*]`` tables is a chain of stages (qwen3.train.pretrain). Under torchrun the same arguments go to
``python -m qwen3.train``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

CONFIG_DIR = Path(__file__).parent / "configs"


def presets() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.toml"))


def config_path(name: str) -> Path:
    path = Path(name)
    if path.is_file():
        return path
    if (CONFIG_DIR / f"{name}.toml").is_file():
        return CONFIG_DIR / f"{name}.toml"
    from qwen3.cli import UserFacingError
    from qwen3.utils.suggest import did_you_mean

    raise UserFacingError(
        f"{name!r} is neither a config file nor a preset{did_you_mean(name, presets())}; "
        f"presets: {', '.join(presets())}"
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", metavar="CONFIG", help=f"a .toml/.json file or a preset ({', '.join(presets())})"
    )
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="e.g. optim.lr=3e-4 data.seq_len=512"
    )
    parser.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint")
    parser.add_argument(
        "--overwrite", action="store_true", help="delete the run's existing checkpoints first"
    )
    parser.add_argument(
        "--no-progress", action="store_true", help="plain log lines instead of a progress bar"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train",
        help="train or fine-tune a model from a config file",
        description="Run a training config with its stage (pre-training, SFT, RL, or a chain of stages). Multi-GPU: "
        "torchrun --nproc_per_node N -m qwen3.train CONFIG [KEY=VALUE ...]",
    )
    add_train_arguments(train)
    train.set_defaults(handler=run_train)

    plot = subparsers.add_parser("plot", help="draw the loss curves of training runs to a PNG")
    plot.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
    plot.add_argument("-o", "--output", default="loss.png")
    plot.add_argument(
        "--metric", default="loss", help="any logged number: loss, lr, grad_norm, tokens_per_s ..."
    )
    plot.add_argument("--smooth", type=float, default=0.0, help="EMA weight in [0, 1) (0: raw values)")
    plot.add_argument("--log-y", action="store_true")
    plot.add_argument("--title", default=None, help="default: the metric and the runs' names")
    plot.set_defaults(handler=run_plot)


def run_train(args: argparse.Namespace) -> int:
    from qwen3.cli import UserFacingError
    from qwen3.train import distributed
    from qwen3.train.corpus import DataError
    from qwen3.train.settings import SettingsError, apply_overrides, read_table
    from qwen3.train.stages import stage_for
    from qwen3.train.trainer import TrainingError

    path = config_path(args.config)
    progress = False if args.no_progress else None
    env = None
    try:
        table = apply_overrides(read_table(path), args.overrides)
        stage = stage_for(table)
        configs = stage.check(table)  # a bad config fails here, before any work
        env = distributed.init_distributed(configs[0].device)
        stage.run(table, resume=args.resume, overwrite=args.overwrite, env=env, progress=progress)
    except (SettingsError, DataError, TrainingError) as err:
        raise UserFacingError(f"{path}: {err}" if isinstance(err, SettingsError) else str(err)) from None
    finally:
        if env is not None:
            # After an error the other ranks may be gone: no barrier then.
            distributed.shutdown(env, synchronize=sys.exc_info()[0] is None)
    return 0


def run_plot(args: argparse.Namespace) -> int:
    from qwen3.cli import UserFacingError
    from qwen3.train.plot import plot_runs

    if not 0 <= args.smooth < 1:
        raise UserFacingError(f"--smooth must be in [0, 1), got {args.smooth}")
    try:
        out = plot_runs(args.run_dirs, args.output, args.metric, args.smooth, args.log_y, args.title)
    except (FileNotFoundError, KeyError, IndexError) as err:
        raise UserFacingError(str(err)) from None
    print(f"wrote {out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m qwen3.train CONFIG [KEY=VALUE ...] [--resume]`` (the torchrun entry point)."""
    from qwen3.cli import UserFacingError, parse_args

    parser = argparse.ArgumentParser(
        prog="python -m qwen3.train", description="Train from a config (torchrun-ready)."
    )
    add_train_arguments(parser)
    args = parse_args(parser, argv)
    try:
        return run_train(args)
    except UserFacingError as err:
        print(f"qwen3.train: error: {err}", file=sys.stderr)
        return 1
