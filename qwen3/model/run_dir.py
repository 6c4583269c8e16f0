"""The layout of a training run directory, as far as loading a model from it needs to know.

``RUN_DIR/checkpoints/step-XXXXXXXX/`` holds one checkpoint; it is complete once its ``trainer_state.json`` exists
(written last), and its ``model/`` is a Hugging Face model directory. The trainer (qwen3/train/checkpoint.py) writes
this layout; the engine, the server and ``qwen3.load_model`` callers read models out of it through
:func:`resolve_model_dir`, without depending on the training package.
"""

from __future__ import annotations

import re
from pathlib import Path

STEP_DIR = re.compile(r"^step-(\d{8})$")
STATE_FILE = "trainer_state.json"


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints (``trainer_state.json`` present), oldest first."""
    root = checkpoints_dir(run_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if STEP_DIR.match(p.name) and (p / STATE_FILE).is_file()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    found = list_checkpoints(run_dir)
    return found[-1] if found else None


def model_dir(checkpoint: Path) -> Path:
    """The Hugging Face directory inside a training checkpoint, or the path itself for a plain model directory."""
    return checkpoint / "model" if (checkpoint / STATE_FILE).is_file() else checkpoint


def resolve_model_dir(path: str | Path) -> Path:
    """What ``qwen3 generate``/``chat``/``serve`` and ``qwen3.LLM`` accept as a model: a Hugging Face directory as
    it is, a training checkpoint (``step-*``) as its ``model/``, a run directory as its newest complete
    checkpoint's ``model/``. Anything else is returned unchanged (the loader names the problem)."""
    path = Path(path)
    if (path / "config.json").is_file():
        return path
    if (path / STATE_FILE).is_file():
        return model_dir(path)
    latest = latest_checkpoint(path)
    return model_dir(latest) if latest is not None else path
