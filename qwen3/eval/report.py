"""What a run leaves behind: results.json, a Markdown table like the report's Table 22 (benchmarks x modes, scores
x 100) and the thinking-budget curve like Figure 2 (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from qwen3.eval.runner import BOTH, SUITES

MODE_TITLES = {"think": "Thinking", "no_think": "Non-thinking"}


def _cell(summary: dict[str, Any] | None) -> str:
    if summary is None:
        return "-"
    text = f"{100 * summary['score']:.1f} ± {100 * summary['stderr']:.1f}"
    k = summary["samples"]
    if k > 1:
        text += f" (pass@{k} {100 * summary[f'pass@{k}']:.1f})"
    return text


def markdown_table(results: dict[str, Any]) -> str:
    """Rows: the suites (with the benchmark they stand for); columns: the modes. ThinkFollow's one score (both
    modes) fills both columns, as in Table 22."""
    modes = [mode for mode in ("think", "no_think") if any(mode in s for s in results["suites"].values())]
    modes = modes or ["think", "no_think"]
    lines = [
        "| Suite | Benchmark | " + " | ".join(MODE_TITLES[m] for m in modes) + " | n |",
        "|---|---|" + "---|" * len(modes) + "---|",
    ]
    for suite, by_mode in results["suites"].items():
        cells = [_cell(by_mode.get(BOTH, by_mode.get(mode))) for mode in modes]
        n = next(iter(by_mode.values()))["n"]
        lines.append(f"| {suite} | {SUITES[suite][1]} | " + " | ".join(cells) + f" | {n} |")
    if "budget" in results:
        curve = results["budget"]
        points = ", ".join(f"{p['budget']}: {100 * p['score']:.1f}" for p in curve["think"])
        lines.append(
            f"| budget | {SUITES['budget'][1]} | {points} | {100 * curve['no_think']['score']:.1f} | "
            f"{curve['no_think']['n']} |"
        )
    lines.append("")
    lines.append(
        f"Model: {results['model']} ({results['backend']}); wall time {results.get('wall_s', 0):.1f} s."
    )
    return "\n".join(lines) + "\n"


def plot_budget(curve: dict[str, Any], out: str | Path, title: str = "") -> Path:
    """Pass@1 against the thinking budget (log2 x axis) with the non-thinking score as a dashed line."""
    try:
        import matplotlib
    except ImportError:
        from qwen3.eval.backends import EvalError

        raise EvalError("the budget curve needs matplotlib: pip install 'qwen3[train]'") from None
    matplotlib.use("Agg")
    import io

    import matplotlib.pyplot as plt

    from qwen3.utils.atomic import atomic_write_bytes

    budgets = [max(p["budget"], 1) for p in curve["think"]]
    scores = [100 * p["score"] for p in curve["think"]]
    figure, axes = plt.subplots(figsize=(6, 4), dpi=120)
    axes.plot(budgets, scores, marker="o", label="thinking")
    axes.axhline(100 * curve["no_think"]["score"], color="red", linestyle="--", label="non-thinking")
    axes.set_xscale("log", base=2)
    axes.set_xlabel("thinking budget (tokens)")
    axes.set_ylabel("pass@1 (%)")
    axes.set_title(title or "reasoning accuracy vs thinking budget")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    out = Path(out)
    atomic_write_bytes(out, buffer.getvalue())
    return out
