"""``qwen3 plot RUN_DIR [RUN_DIR...] -o loss.png``: loss curves (or any logged metric) of runs, as a PNG.

A run directory with a ``metrics.jsonl`` is one curve. A directory of chained stages (``s1/``, ``s2/``, ``s3/``,
each with its own log) is one curve across the stages, each stage's steps following the previous stage's, with a
dotted line where a stage begins. ``smooth`` applies an exponential moving average (0: raw).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qwen3.train.metrics import METRICS_FILE, read_metrics


def run_series(run_dir: str | Path, metric: str = "loss") -> tuple[list[float], list[float], list[float]]:
    """(steps, values, stage start steps) of a run or of a chain of stage runs."""
    run_dir = Path(run_dir)
    logs = (
        [run_dir / METRICS_FILE]
        if (run_dir / METRICS_FILE).is_file()
        else sorted(run_dir.glob(f"*/{METRICS_FILE}"))
    )
    if not logs:
        raise FileNotFoundError(f"{run_dir}: no {METRICS_FILE} here or in its stage directories")
    steps: list[float] = []
    values: list[float] = []
    starts: list[float] = []
    offset = 0
    for log in logs:
        records = [r for r in read_metrics(log) if metric in r]
        if len(logs) > 1:
            starts.append(offset)
        steps.extend(offset + r["step"] for r in records)
        values.extend(float(r[metric]) for r in records)
        offset += records[-1]["step"] if records else 0
    return steps, values, starts[1:]


def smoothed(values: Sequence[float], weight: float) -> list[float]:
    out, average = [], None
    for value in values:
        average = value if average is None else weight * average + (1 - weight) * value
        out.append(average)
    return out


def plot_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    metric: str = "loss",
    smooth: float = 0.0,
    log_y: bool = False,
) -> Path:
    try:
        import matplotlib
    except ImportError:
        from qwen3.cli import UserFacingError

        raise UserFacingError("qwen3 plot needs matplotlib: pip install 'qwen3[train]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=120)
    for run_dir in run_dirs:
        steps, values, starts = run_series(run_dir, metric)
        label = Path(run_dir).name or str(run_dir)
        if smooth:
            axes.plot(steps, values, alpha=0.25)
            axes.plot(steps, smoothed(values, smooth), label=label, color=axes.lines[-1].get_color())
        else:
            axes.plot(steps, values, label=label)
        for start in starts:
            axes.axvline(start, linestyle=":", color="grey", linewidth=1)
    axes.set_xlabel("step")
    axes.set_ylabel(metric)
    if log_y:
        axes.set_yscale("log")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    import io

    from qwen3.utils.atomic import atomic_write_bytes

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    plt.close(figure)
    atomic_write_bytes(out, buffer.getvalue())
    return out
