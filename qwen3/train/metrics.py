"""What a run reports: a JSON line per optimizer step, a rich progress bar (or plain lines when output is not a
terminal), and optionally TensorBoard scalars. Only rank 0 reports.

``RUN_DIR/metrics.jsonl`` gets one object per step: ``step``, ``loss`` (mean over the global batch's targets),
``lr``, ``grad_norm`` (before clipping), ``tokens`` (input tokens of the step, all ranks), ``targets``,
``tokens_per_s``, ``elapsed_s``, plus ``aux_loss`` for MoE models, ``skipped`` when a non-finite step was skipped,
and the row source's running ``counters()`` (the built-in ones: ``malformed_skipped`` documents, and for SFT
``overlong_truncated`` / ``overlong_dropped`` examples).
Lines are appended and flushed; a torn last line (a crash mid-write) is ignored by readers and replaced when the
run resumes from a checkpoint, which carries the log up to its step.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from qwen3.train.settings import SettingsError
from qwen3.utils.atomic import atomic_write_text

METRICS_FILE = "metrics.jsonl"
# Numbers a stage logs that the progress bar and log lines show too when a record has them (RL: GRPO's reward).
SHOWN = {"reward_mean": "reward", "accuracy": "acc", "val_accuracy": "val_acc"}
TENSORBOARD_MISSING = (
    "tensorboard = true needs the tensorboard package: pip install 'qwen3[train]', or set tensorboard = false"
)


def tensorboard_writer_class() -> type:
    """torch's ``SummaryWriter``; ``SettingsError`` when the tensorboard package (the ``train`` extra) is missing."""
    try:
        # Imported first and by name: torch.utils.tensorboard may already be cached in sys.modules.
        import tensorboard  # noqa: F401
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise SettingsError(TENSORBOARD_MISSING) from None
    return SummaryWriter


def read_metrics(path: str | Path) -> list[dict[str, Any]]:
    """The records of a metrics.jsonl (or of a run directory's), skipping a torn last line."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


class MetricsLogger:
    def __init__(
        self,
        run_dir: str | Path,
        total_steps: int,
        stage: str,
        enabled: bool = True,
        tensorboard: bool = False,
        log_every: int = 10,
        progress: bool | None = None,
    ):
        self.path = Path(run_dir) / METRICS_FILE
        self.total_steps, self.stage, self.enabled, self.log_every = total_steps, stage, enabled, log_every
        self._file = None
        self._progress = self._task = self._writer = None
        self._started = (time.perf_counter(), 0)
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (open for the whole run)
        if tensorboard:
            self._writer = tensorboard_writer_class()(str(Path(run_dir) / "tensorboard"))
        if progress if progress is not None else sys.stderr.isatty():
            self._start_progress()

    def reset_to(self, text: str) -> None:
        """Replace the log with ``text`` (the copy in the checkpoint a run resumes from)."""
        if not self.enabled:
            return
        self._file.close()
        atomic_write_text(self.path, text)
        self._file = open(self.path, "a", encoding="utf-8")  # noqa: SIM115

    def text(self) -> str:
        if self._file is not None:
            self._file.flush()
        return self.path.read_text(encoding="utf-8") if self.path.is_file() else ""

    def _start_progress(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(
                "loss {task.fields[loss]}{task.fields[shown]}  lr {task.fields[lr]}  {task.fields[speed]} tok/s  ETA"
            ),
            TimeRemainingColumn(),
        )
        self._progress.start()
        self._task = self._progress.add_task(
            self.stage, total=self.total_steps, loss="-", lr="-", speed="-", shown=""
        )

    def start(self, step: int) -> None:
        """The run starts (or resumes) after ``step`` completed steps."""
        self._started = (time.perf_counter(), step)
        if self._progress is not None:
            self._progress.update(self._task, completed=step)

    def log(self, record: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        step = record["step"]
        if self._writer is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)):
                    self._writer.add_scalar(f"train/{key}", value, step)
        fields = {
            "loss": f"{record['loss']:.4f}",
            "lr": f"{record['lr']:.2e}",
            "speed": f"{record['tokens_per_s']:,.0f}",
            "shown": "".join(f"  {label} {record[key]:.3f}" for key, label in SHOWN.items() if key in record),
        }
        if self._progress is not None:
            self._progress.update(self._task, completed=step, **fields)
        elif step % self.log_every == 0 or step == self.total_steps:
            print(
                f"[{self.stage}] step {step}/{self.total_steps}  loss {fields['loss']}{fields['shown']}  "
                f"lr {fields['lr']}  {fields['speed']} tok/s  eta {self._eta(step)}",
                file=sys.stderr,
                flush=True,
            )

    def message(self, text: str) -> None:
        if not self.enabled:
            return
        if self._progress is not None:
            self._progress.console.print(text)
        else:
            print(text, file=sys.stderr, flush=True)

    def _eta(self, step: int) -> str:
        started_at, first_step = self._started
        if step <= first_step:
            return "-"
        seconds = (time.perf_counter() - started_at) / (step - first_step) * (self.total_steps - step)
        return time.strftime("%H:%M:%S", time.gmtime(int(seconds)))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()
        if self._writer is not None:
            self._writer.close()
        if self._file is not None:
            self._file.close()
            self._file = None
