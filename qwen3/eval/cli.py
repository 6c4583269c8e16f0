"""``qwen3 eval MODEL`` (or ``--base-url URL --model NAME``): the evaluation suite (docs/eval.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

DEFAULT_SUITES = "reasoning,knowledge,counterfact,ifeval,lengthctrl,tooluse,thinkfollow"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score a model on the task world's benchmarks",
        description="Run the evaluation suites on a checkpoint / run directory / preset (in process) or on any "
        "OpenAI-compatible server (--base-url URL --model NAME); write results.json, a Markdown table like the "
        "report's Table 22 and, for --suite budget, the thinking-budget curve (PNG).",
    )
    p.add_argument("model", nargs="?", metavar="MODEL", help="checkpoint directory, run directory or preset")
    p.add_argument(
        "--base-url", default=None, help="an OpenAI-compatible server, e.g. http://localhost:8000/v1"
    )
    p.add_argument("--model", dest="served_model", default=None, help="the model name on the server")
    p.add_argument("--api-key", default=None, help="the server's key (or $OPENAI_API_KEY)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight against a server")
    p.add_argument(
        "--suite",
        default=DEFAULT_SUITES,
        help=f"comma-separated (default {DEFAULT_SUITES}; also longctx, budget)",
    )
    p.add_argument("--mode", default="think,no_think", help="think, no_think or both (comma-separated)")
    p.add_argument("--out", default="results.json", help="results file; the table goes next to it as .md")
    p.add_argument("--samples", type=int, default=1, help="replies per item (pass@1 averaged, pass@k)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--split", default="test", help="the world split to score (test; validation while tuning)")
    p.add_argument("--limit", type=int, default=50, help="items per suite")
    p.add_argument(
        "--sampling",
        choices=["preset", "greedy"],
        default="preset",
        help="preset: the report's settings per mode; greedy: temperature 0",
    )
    p.add_argument("--max-tokens", type=int, default=None, help="per reply (default: up to the context)")
    p.add_argument(
        "--budgets", default=None, help="thinking budgets of --suite budget (default 1024,...,16384)"
    )
    p.add_argument("--tool-rounds", type=int, default=4, help="most model turns of a ToolUse item")
    p.add_argument(
        "--items",
        default=None,
        metavar="JSONL",
        help="evaluate these items (Item dicts, one a line) instead of the world's test split",
    )
    p.add_argument(
        "--open-thought",
        action="store_true",
        help="in process: thinking prompts end in '<think>\\n' (for models that never open a thought themselves)",
    )
    p.add_argument("--no-records", action="store_true", help="leave per-item records out of results.json")
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress bars (default: on a terminal)",
    )
    engine = p.add_argument_group("in-process engine")
    engine.add_argument("--dtype", default=None, help="bfloat16, float32, ...")
    engine.add_argument("--max-model-len", type=int, default=None)
    engine.add_argument("--max-num-seqs", type=int, default=None)
    engine.add_argument("--weights", default=None, help="auto, reference, fused, packed or int8")
    p.set_defaults(handler=run_eval)


def parse_budgets(text: str | None) -> tuple[int, ...] | None:
    from qwen3.eval.backends import EvalError

    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise EvalError(f"--budgets must be comma-separated integers, got {text!r}") from None


def load_items_file(path: str) -> dict[str, list]:
    """Items by family from a JSONL file of ``Item.to_dict()`` lines; a bad line is an error naming it."""
    from qwen3.eval.backends import EvalError
    from qwen3.world.items import Item

    file = Path(path)
    if not file.is_file():
        raise EvalError(f"--items {path}: no such file")
    items: dict[str, list] = {}
    for number, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = Item.from_dict(json.loads(line))
        except (ValueError, TypeError) as err:
            raise EvalError(f"{path}:{number}: not an Item ({err})") from None
        items.setdefault(item.family, []).append(item)
    if not items:
        raise EvalError(f"--items {path}: the file holds no items")
    return items


def make_backend(args: argparse.Namespace):
    import os

    from qwen3.eval.backends import EvalError, InProcessBackend, OpenAIBackend

    if args.base_url:
        if args.model:
            raise EvalError("give MODEL (in process) or --base-url with --model, not both")
        if not args.served_model:
            raise EvalError("--base-url needs --model NAME (the name the server serves)")
        backend = OpenAIBackend(
            args.base_url,
            args.served_model,
            args.api_key or os.environ.get("OPENAI_API_KEY"),
            concurrency=args.concurrency,
        )
        backend.check()
        return backend
    if not args.model:
        raise EvalError("give MODEL (a checkpoint, run directory or preset) or --base-url URL --model NAME")
    engine = {
        key: value
        for key, value in {
            "dtype": args.dtype,
            "max_model_len": args.max_model_len,
            "max_num_seqs": args.max_num_seqs,
            "weights": args.weights,
        }.items()
        if value is not None
    }
    dtype = engine.pop("dtype", None)
    return InProcessBackend(args.model, dtype=dtype, seed=args.seed, **engine)


def run_eval(args: argparse.Namespace) -> int:
    from qwen3.eval.report import markdown_table, plot_budget
    from qwen3.eval.runner import MODES, SUITES, EvalOptions, load_items, parse_list, run_suites
    from qwen3.utils.atomic import atomic_write_json, atomic_write_text

    suites = parse_list(args.suite, list(SUITES), "suite")  # bad input fails before the model loads
    modes = parse_list(args.mode.replace("both", "think,no_think"), MODES, "mode")
    budgets = parse_budgets(args.budgets)
    options = EvalOptions(
        samples=args.samples,
        seed=args.seed,
        limit=args.limit,
        sampling=args.sampling,
        max_tokens=args.max_tokens,
        tool_rounds=args.tool_rounds,
        records=not args.no_records,
        open_thought=args.open_thought,
        split=args.split,
        progress=sys.stderr.isatty() if args.progress is None else args.progress,
        **({"budgets": budgets} if budgets else {}),
    )
    # The items before the model or server: a missing generator or bad file fails before any loading.
    items = load_items_file(args.items) if args.items else None
    items = {SUITES[suite][0]: load_items(suite, options, items) for suite in suites}
    backend = make_backend(args)
    results = run_suites(backend, suites, modes, options, items_by_family=items)
    out = Path(args.out)
    if out.parent != Path(""):
        out.parent.mkdir(parents=True, exist_ok=True)
    if "budget" in results:
        title = f"{results['model']}: reasoning pass@1 vs thinking budget"
        png = plot_budget(results["budget"], out.with_name(out.stem + "_budget.png"), title=title)
        results["budget"]["png"] = str(png)
    atomic_write_json(out, results)
    table = markdown_table(results)
    atomic_write_text(out.with_suffix(".md"), table)
    print(table, end="")
    print(f"wrote {out} and {out.with_suffix('.md')}", file=sys.stderr)
    return 0
