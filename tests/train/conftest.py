"""Shared helpers for the training tests: small configs on qwen3-debug-tiny and reading a run's losses."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest

from qwen3.train.config import TrainConfig
from qwen3.train.metrics import read_metrics

REPO_ROOT = Path(__file__).resolve().parents[2]


def tiny_config(run_dir: Path | str, **overrides: Any) -> TrainConfig:
    """qwen3-debug-tiny on token patterns: 64-token rows, 4 per step, ~20 ms a step on one CPU core."""
    table: dict[str, Any] = {
        "run_dir": str(run_dir),
        "steps": 8,
        "micro_batch_size": 4,
        "log_every": 1000,
        "model": {"name": "qwen3-debug-tiny"},
        "data": {"synthetic": "patterns", "synthetic_documents": 400, "seq_len": 64},
        "optim": {"lr": 3e-3},
        "schedule": {"warmup_steps": 2},
        "checkpoint": {"every": 0, "keep_last": 3},
    }
    for key, value in overrides.items():
        node = table
        *parents, leaf = key.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return TrainConfig.from_dict(table)


def run_losses(run_dir: Path | str) -> list[float]:
    return [record["loss"] for record in read_metrics(run_dir)]


def child_env(**extra: str) -> dict[str, str]:
    """Environment for subprocesses: this checkout first on the path, two threads."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1", **extra}
    return env


def python_command(*args: str) -> list[str]:
    return [sys.executable, *args]


def torchrun_config(table: dict, config_file: Path, processes: int = 2) -> None:
    """Run a training config (written to ``config_file``) under torchrun with ``processes`` gloo ranks."""
    import json
    import subprocess

    config_file.write_text(json.dumps(table))
    command = python_command(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes),
        "-m", "qwen3.train", str(config_file), "--no-progress",
    )  # fmt: skip
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


@pytest.fixture
def cpu_threads():
    """Pin intra-op threads (the golden numbers were produced with 2)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)
