"""``qwen3 plot RUN_DIR [RUN_DIR...] -o loss.png``: loss curves (or any logged metric) of runs, as a PNG.

A run directory with a ``metrics.jsonl`` is one curve. A directory of chained stages (``s1/``, ``s2/``, ``s3/``,
each with its own log) is one curve across the stages, each stage's steps following the previous stage's, with a
dotted line where a stage begins and the stage's name (``S1 general``, ``S2 reasoning``, ``S3 long context``, from
its train_config.json) at the top. The plot's title names the metric and the runs. ``smooth`` applies an
exponential moving average (0: raw).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from qwen3.train.metrics import METRICS_FILE, read_metrics

CONFIG_FILE = "train_config.json"  # written by the trainer beside metrics.jsonl


def stage_label(stage_dir: Path) -> str:
    """``S3 long context`` for a stage whose config says ``stage = "s3-long-context"``; else the directory name."""
    import json

    try:
        stage = json.loads((stage_dir / CONFIG_FILE).read_text(encoding="utf-8")).get("stage")
    except (OSError, ValueError, AttributeError):
        stage = None
    name = stage if isinstance(stage, str) and stage else stage_dir.name
    head, _, rest = name.partition("-")
    return f"{head.upper()} {rest.replace('-', ' ')}".strip()


def run_series(
    run_dir: str | Path, metric: str = "loss"
) -> tuple[list[float], list[float], list[tuple[float, str]]]:
    """(steps, values, stages) of a run or of a chain of stage runs; ``stages`` holds (first step, label) per stage
    of a chain (empty for a single run)."""
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
    stages: list[tuple[float, str]] = []
    offset = 0
    for log in logs:
        records = [r for r in read_metrics(log) if metric in r]
        if len(logs) > 1:
            stages.append((offset, stage_label(log.parent)))
        steps.extend(offset + r["step"] for r in records)
        values.extend(float(r[metric]) for r in records)
        offset += records[-1]["step"] if records else 0
    return steps, values, stages


def smoothed(values: Sequence[float], weight: float) -> list[float]:
    out, average = [], None
    for value in values:
        average = value if average is None else weight * average + (1 - weight) * value
        out.append(average)
    return out


def draw_stages(axes, stages: Sequence[tuple[float, str]]) -> None:
    """A dotted line where each stage after the first begins, and each stage's label at the top of its span."""
    for index, (start, label) in enumerate(stages):
        if index:
            axes.axvline(start, linestyle=":", color="grey", linewidth=1)
        axes.text(
            start, 0.98, f" {label}", transform=axes.get_xaxis_transform(), va="top", ha="left", fontsize=8,
            color="dimgrey",
        )  # fmt: skip


def plot_runs(
    run_dirs: Sequence[str | Path],
    out: str | Path,
    metric: str = "loss",
    smooth: float = 0.0,
    log_y: bool = False,
    title: str | None = None,
) -> Path:
    """Draw the runs' ``metric`` into the PNG ``out`` (written atomically); ``title`` defaults to the metric and
    the runs' names."""
    try:
        import matplotlib
    except ImportError:
        from qwen3.cli import UserFacingError

        raise UserFacingError("qwen3 plot needs matplotlib: pip install 'qwen3[train]'") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=120)
    labels = [Path(run_dir).name or str(run_dir) for run_dir in run_dirs]
    for run_dir, label in zip(run_dirs, labels, strict=True):
        steps, values, stages = run_series(run_dir, metric)
        if smooth:
            axes.plot(steps, values, alpha=0.25)
            axes.plot(steps, smoothed(values, smooth), label=label, color=axes.lines[-1].get_color())
        else:
            axes.plot(steps, values, label=label)
        draw_stages(axes, stages)
    axes.set_title(title if title is not None else f"{metric}: {', '.join(labels)}")
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
