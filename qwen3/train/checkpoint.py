"""Training checkpoints: ``RUN_DIR/checkpoints/step-XXXXXXXX/``, written atomically, newest ``keep_last`` kept.

A checkpoint directory holds

- ``model/``: the Hugging Face model directory (``qwen3.save_model``; plus the tokenizer when one is used), so
  ``qwen3.load_model``, the engine and transformers read it directly (a reward model's checkpoint holds
  ``reward_model/`` instead: ``write_checkpoint`` writes any model's);
- ``optimizer.pt``: the full AdamW state keyed by parameter name (any world size can load it);
- ``rng.pt``: Python, NumPy and torch (CPU, CUDA) generator states;
- ``trainer_state.json``: step, data position, counters; written last;
- ``train_config.json``: the run's ``TrainConfig``; ``metrics.jsonl``: the log up to this step.

Everything is built in a temporary sibling that is renamed into place (``atomic_directory``): a kill -9 in the
middle of a save leaves only a ``.tmp-*`` directory, which the next run removes, and the previous checkpoint
intact. ``latest_checkpoint`` returns the newest complete one. Files are read with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import os
import random
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

# The layout of a run directory lives below the engine and the trainer; re-exported for the trainer's users.
from qwen3.model.run_dir import STATE_FILE, checkpoints_dir, latest_checkpoint, list_checkpoints
from qwen3.model.run_dir import model_dir as model_dir
from qwen3.utils.atomic import (
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temporaries,
)

CONFIG_FILE = "train_config.json"
# Test hook "STEP:PATH": the save of checkpoint STEP writes PATH and then waits halfway through (model and
# optimizer written, trainer state not), so a test can SIGKILL the process in the middle of a save.
PAUSE_ENV = "QWEN3_TEST_PAUSE_IN_SAVE"


def step_dir(run_dir: str | Path, step: int) -> Path:
    return checkpoints_dir(run_dir) / f"step-{step:08d}"


def save_checkpoint(
    run_dir: str | Path,
    step: int,
    model: torch.nn.Module,
    optimizer_state: dict[str, Any],
    trainer_state: dict[str, Any],
    config: dict[str, Any],
    metrics_text: str,
    tokenizer: Any | None = None,
    keep_last: int = 3,
) -> Path:
    """Write checkpoint ``step`` (rank 0 only; ``model`` is an unwrapped ``Qwen3ForCausalLM`` with full weights)."""
    from qwen3.model.checkpoint import save_model

    def write_model(tmp: Path) -> None:
        save_model(model, tmp / "model")
        if tokenizer is not None:
            _save_tokenizer(tokenizer, tmp / "model")

    state = {**trainer_state, "step": step, "saved_at": time.time()}
    return write_checkpoint(
        run_dir, step, write_model, optimizer_state, state, config, metrics_text, keep_last
    )


def write_checkpoint(
    run_dir: str | Path,
    step: int,
    write_model: Callable[[Path], Any],
    optimizer_state: dict[str, Any],
    state: dict[str, Any],
    config: dict[str, Any],
    metrics_text: str,
    keep_last: int = 3,
) -> Path:
    """The layout of every checkpoint, whatever model it holds: ``write_model(tmp)`` writes the weights into the
    temporary directory, then come the optimizer, RNG, config and log files, and ``state`` (the trainer-state
    file) last, so a directory without it is an incomplete save."""
    target = step_dir(run_dir, step)
    with atomic_directory(target) as tmp:
        write_model(tmp)
        torch.save(optimizer_state, tmp / "optimizer.pt")
        torch.save(rng_state(), tmp / "rng.pt")
        atomic_write_json(tmp / CONFIG_FILE, config)
        atomic_write_text(tmp / "metrics.jsonl", metrics_text)
        _pause_for_tests(step)
        atomic_write_json(tmp / STATE_FILE, state)
    prune(run_dir, keep_last)
    return target


def _save_tokenizer(tokenizer: Any, model_dir: Path) -> None:
    from qwen3.chat import qwen3_template

    tokenizer.save_pretrained(model_dir, chat_template=qwen3_template())


def _pause_for_tests(step: int) -> None:
    at_step, _, marker = os.environ.get(PAUSE_ENV, "").partition(":")
    if marker and int(at_step) == step:
        Path(marker).write_text(str(os.getpid()))
        time.sleep(3600)


def prune(run_dir: str | Path, keep_last: int) -> None:
    for old in list_checkpoints(run_dir)[:-keep_last]:
        shutil.rmtree(old, ignore_errors=True)


def clean_stale(run_dir: str | Path) -> list[Path]:
    """Remove leftovers of saves that were interrupted (``.tmp-*`` siblings)."""
    return remove_stale_temporaries(checkpoints_dir(run_dir))


def resolve_init(path: str | Path) -> Path:
    """``init_from`` -> a checkpoint directory (with ``model/``) or a Hugging Face model directory."""
    from qwen3.train.settings import SettingsError

    path = Path(path)
    if not path.exists():
        raise SettingsError(f"init_from {str(path)!r}: no such file or directory")
    if (path / STATE_FILE).is_file() or (path / "config.json").is_file():
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise SettingsError(
            f"init_from {str(path)!r}: not a checkpoint (step-* with {STATE_FILE}), a run directory with "
            "checkpoints, or a Hugging Face model directory"
        )
    return latest


def load_trainer_state(checkpoint: Path) -> dict[str, Any]:
    import json

    return json.loads((checkpoint / STATE_FILE).read_text(encoding="utf-8"))


def load_optimizer_file(checkpoint: Path) -> dict[str, Any] | None:
    path = checkpoint / "optimizer.pt"
    return torch.load(path, map_location="cpu", weights_only=True) if path.is_file() else None


# ------------------------------------------------------------------------------------------------ RNG state
def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    version, internal, gauss = random.getstate()
    numpy_state = np.random.get_state(legacy=False)
    state = {
        "python": [version, list(internal), gauss],
        "numpy": {"key": numpy_state["state"]["key"].tolist(), "pos": int(numpy_state["state"]["pos"])},
        "numpy_extra": [numpy_state["has_gauss"], numpy_state["gauss"]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    has_gauss, gauss_value = state["numpy_extra"]
    np.random.set_state(
        {
            "bit_generator": "MT19937",
            "state": {"key": np.array(state["numpy"]["key"], dtype=np.uint32), "pos": state["numpy"]["pos"]},
            "has_gauss": has_gauss,
            "gauss": gauss_value,
        }
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_rng_file(checkpoint: Path) -> None:
    path = checkpoint / "rng.pt"
    if path.is_file():
        set_rng_state(torch.load(path, map_location="cpu", weights_only=True))
