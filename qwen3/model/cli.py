"""``qwen3 init PRESET OUT_DIR``: write a randomly initialised checkpoint directory for a preset."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    from qwen3.model.presets import PRESETS  # configs only: no torch, `qwen3 --help` stays instant

    parser = subparsers.add_parser(
        "init",
        help="write a randomly initialised checkpoint for a preset",
        description="Write a Hugging Face checkpoint directory (config.json, generation_config.json, safetensors, "
        "tokenizer files with the chat template) with random weights for a preset, so tests and benchmarks have "
        f"real-format models without downloads. Presets: {', '.join(PRESETS)} (--list describes them).",
    )
    parser.add_argument("preset", metavar="PRESET", nargs="?", help=f"one of: {', '.join(PRESETS)}")
    parser.add_argument("out_dir", metavar="OUT_DIR", nargs="?")
    parser.add_argument("--list", action="store_true", help="print every preset with its shape and exit")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dtype",
        choices=["bfloat16", "float32", "float16"],
        default=None,
        help="default: the preset's torch_dtype",
    )
    parser.add_argument(
        "--no-tokenizer",
        action="store_true",
        help="weights and configs only (by default the tokenizer and chat template are written too: the real "
        "Qwen3 tokenizer for released presets, a debug BPE of the preset's vocabulary size for debug presets)",
    )
    parser.set_defaults(handler=run_init)


def describe(name: str, config) -> str:
    """One line per preset for ``--list``: its shape (and experts), and whether it is a released model's."""
    kind = "debug (tests, benchmarks)" if "debug" in name else "released model's shape"
    experts = (
        f", {config.num_experts} experts (top-{config.num_experts_per_tok})" if config.num_experts else ""
    )
    return (
        f"{name:22} {config.num_hidden_layers} layers, hidden {config.hidden_size}, vocab {config.vocab_size}"
        f"{experts}; {kind}"
    )


def run_init(args: argparse.Namespace) -> int:
    from qwen3.cli import UserFacingError
    from qwen3.model.presets import PRESETS
    from qwen3.utils.suggest import unknown_name

    if args.list:
        print("\n".join(describe(name, config) for name, config in PRESETS.items()))
        return 0
    if args.preset is None or args.out_dir is None:
        raise UserFacingError("give PRESET and OUT_DIR (qwen3 init --list shows the presets)")
    if args.preset not in PRESETS:
        raise UserFacingError(unknown_name("preset", args.preset, PRESETS))
    from qwen3.model.checkpoint import init_checkpoint
    from qwen3.tokenizer.ranks import RankFileError

    try:
        out = init_checkpoint(
            args.preset, args.out_dir, seed=args.seed, dtype=args.dtype, with_tokenizer=not args.no_tokenizer
        )
    except RankFileError as err:  # released presets write the real tokenizer, built from the rank file
        raise UserFacingError(
            f"{err}; or pass --no-tokenizer to write the weights and configs only"
        ) from None
    print(f"wrote {args.preset} (seed {args.seed}) to {out}")
    return 0
