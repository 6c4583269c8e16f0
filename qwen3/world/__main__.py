"""``python -m qwen3.world``: write items of a family, SFT examples, or the pretraining corpus (docs/world.md).

    python -m qwen3.world generate reasoning --split test --count 100 --knob difficulty=3 --out items.jsonl
    python -m qwen3.world sft reasoning --count 1000 --mode think --out sft.jsonl
    python -m qwen3.world corpus world.jsonl --documents 20000
    python -m qwen3.world families

Bad input (an unknown family, split or knob, a bad value) is one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from qwen3.utils.atomic import atomic_write_text


def parse_knob(text: str) -> tuple[str, Any]:
    """``name=value``; the value is read as JSON when it parses (numbers, lists), else kept as a string."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise ValueError(f"--knob must be NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def _write_lines(path: str, records: list[dict[str, Any]]) -> None:
    atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def _items(args: argparse.Namespace) -> list:
    from qwen3.world import generate

    knobs = dict(parse_knob(k) for k in args.knob)
    return generate(args.family, args.split, args.count, seed=args.seed, **knobs)


def _run(args: argparse.Namespace) -> str:
    if args.command == "families":
        from qwen3.world import FAMILIES

        lines = []
        for family in FAMILIES.values():
            lines.append(f"{family.name}: {family.doc}")
            lines += [f"  {name} = {knob.default!r}: {knob.doc}" for name, knob in family.knobs.items()]
        return "\n".join(lines)
    if args.command == "corpus":
        from qwen3.world.corpus import write_corpus

        stats = write_corpus(args.out, args.documents, seed=args.seed, world_seed=args.world_seed)
        return f"wrote {stats['documents']} documents to {stats['path']} ({stats['by_kind']})"
    items = _items(args)
    if args.command == "sft":
        from qwen3.world.sft import chat_example

        _write_lines(args.out, [chat_example(item, args.mode) for item in items])
    else:
        _write_lines(args.out, [item.to_dict() for item in items])
    return f"wrote {len(items)} {args.family} {args.split} items to {args.out}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m qwen3.world", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    for name in ("generate", "sft"):
        p = commands.add_parser(name, help=f"write {'items' if name == 'generate' else 'chat-SFT examples'}")
        p.add_argument("family")
        p.add_argument("--split", default="test" if name == "generate" else "train")
        p.add_argument("--count", type=int, default=100)
        p.add_argument("--seed", type=int, default=0)
        p.add_argument(
            "--knob", action="append", default=[], metavar="NAME=VALUE", help="a family knob (repeat)"
        )
        p.add_argument("--out", required=True, help="the .jsonl file to write")
        if name == "sft":
            p.add_argument("--mode", choices=("think", "no_think"), default="think")
    corpus = commands.add_parser("corpus", help="write the pretraining corpus (.jsonl)")
    corpus.add_argument("out")
    corpus.add_argument("--documents", type=int, default=10000)
    corpus.add_argument("--seed", type=int, default=0)
    corpus.add_argument("--world-seed", type=int, default=0)
    commands.add_parser("families", help="list the families and their knobs")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        print(_run(args))
    except ValueError as err:  # bad family / split / knob / value: the message names it
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
