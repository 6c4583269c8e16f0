"""``qwen3 init PRESET OUT_DIR``: write a randomly initialised checkpoint directory for a preset."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "init",
        help="write a randomly initialised checkpoint for a preset",
        description="Write a Hugging Face checkpoint directory (config.json, generation_config.json, safetensors, "
        "tokenizer files with the chat template) with random weights for a preset, so tests and benchmarks have real-format models without downloads.",
    )
    parser.add_argument("preset", metavar="PRESET", help="e.g. qwen3-0.6b, qwen3-debug-tiny")
    parser.add_argument("out_dir", metavar="OUT_DIR")
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


def run_init(args: argparse.Namespace) -> int:
    from qwen3.cli import UserFacingError
    from qwen3.model.checkpoint import init_checkpoint
    from qwen3.model.presets import PRESETS

    if args.preset not in PRESETS:
        raise UserFacingError(f"unknown preset {args.preset!r}; presets: {', '.join(PRESETS)}")
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
