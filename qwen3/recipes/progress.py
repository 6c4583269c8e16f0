"""One live display for a whole recipe run: the phase, the step of a training phase and the ETAs (rich).

Trainers run with their own progress bars off; a background thread reads the current phase's metrics.jsonl
(the trainer appends one record per logged step) so the display shows the step without hooking into the stages.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

POLL_S = 0.5


def metrics_files(run_dir: Path) -> list[Path]:
    """The live metrics.jsonl of a phase: its run directory's, or each chain link's (``s1/``, ``s2/``, ...);
    not the copies that checkpoints carry (``checkpoints/step-N/metrics.jsonl``)."""
    from qwen3.model.run_dir import checkpoints_dir
    from qwen3.train.metrics import METRICS_FILE

    if not run_dir.is_dir():
        return []
    skip = checkpoints_dir(run_dir).name
    dirs = [run_dir, *sorted(d for d in run_dir.iterdir() if d.is_dir() and d.name != skip)]
    return [d / METRICS_FILE for d in dirs if (d / METRICS_FILE).is_file()]


def latest_step(run_dir: Path) -> int:
    """The highest step logged in the phase's metrics.jsonl (0 when none yet); chain links add up."""
    from qwen3.train.metrics import read_metrics

    total = 0
    for path in metrics_files(run_dir):
        steps = [r["step"] for r in read_metrics(path) if isinstance(r.get("step"), int)]
        total += max(steps, default=0)
    return total


class RecipeDisplay:
    """``with RecipeDisplay(phases, done, enabled) as d``: ``d.start(phase, run_dir)``, ``d.finish(phase)``,
    ``d.log(text)``. Disabled: one line per phase on stderr."""

    def __init__(self, phases: list[Any], done: dict[str, Any], enabled: bool = True):
        self.phases, self.done, self.enabled = phases, done, enabled and sys.stderr.isatty()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.progress: Any = None
        self.run_dir: Path | None = None

    def __enter__(self) -> RecipeDisplay:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                TextColumn("ETA"), TimeRemainingColumn(),
            )  # fmt: skip
            self.progress.start()
            self.overall = self.progress.add_task("recipe", total=len(self.phases), completed=len(self.done))
            self.step_task = self.progress.add_task("step", total=1, visible=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop_polling()
        if self.progress is not None:
            self.progress.stop()

    def start(self, phase: Any, run_dir: Path | None) -> None:
        self._stop_polling()
        if self.progress is None:
            print(f"recipe: {phase.name} ...", file=sys.stderr, flush=True)
            return
        self.progress.update(self.overall, description=f"recipe: {phase.name}")
        if run_dir is None or not phase.steps:
            self.progress.update(self.step_task, visible=False)
            return
        self.progress.reset(
            self.step_task, total=phase.steps, completed=0, visible=True, description=f"{phase.name} step"
        )
        self.run_dir = run_dir
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(run_dir, self._stop), daemon=True)
        self._thread.start()

    def _poll(self, run_dir: Path, stop: threading.Event) -> None:
        while not stop.wait(POLL_S):
            self.progress.update(self.step_task, completed=latest_step(run_dir))

    def _stop_polling(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None

    def finish(self, phase: Any) -> None:
        self._stop_polling()
        if self.progress is not None:
            if phase.steps and self.run_dir is not None:
                self.progress.update(self.step_task, completed=latest_step(self.run_dir))
            self.progress.advance(self.overall)

    def log(self, text: str) -> None:
        if self.progress is not None:
            self.progress.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=sys.stderr, flush=True)
