"""Learning-rate schedules as pure functions of the step (the scheduler's whole state is the step number).

``lr_at(config, peak_lr, step, total_steps)`` gives the learning rate of optimizer step ``step`` (0-based):
linear warmup from ``peak_lr / warmup_steps`` to ``peak_lr``, then cosine (SGDR without restarts), warmup-stable-
decay (MiniCPM) or constant; see ``qwen3.train.config.ScheduleConfig`` for the papers behind each.
"""

from __future__ import annotations

import math

from qwen3.train.config import ScheduleConfig


def lr_at(config: ScheduleConfig, peak_lr: float, step: int, total_steps: int) -> float:
    if step < config.warmup_steps:
        return peak_lr * (step + 1) / config.warmup_steps
    min_lr = peak_lr * config.min_lr_ratio
    if config.kind == "constant":
        return peak_lr
    if config.kind == "cosine":
        progress = _progress(step, config.warmup_steps, total_steps)
        return min_lr + (peak_lr - min_lr) * _decay(progress, "cosine")
    # wsd: the decay phase is the last `decay_fraction` of all steps (never the warmup).
    decay_steps = round(total_steps * config.decay_fraction)
    decay_start = max(total_steps - decay_steps, config.warmup_steps)
    if decay_steps == 0 or step < decay_start:
        return peak_lr
    progress = _progress(step, decay_start, total_steps)
    return min_lr + (peak_lr - min_lr) * _decay(progress, config.decay_shape)


def _progress(step: int, start: int, total_steps: int) -> float:
    """0 at ``start``, 1 at the last step (``total_steps - 1``)."""
    span = total_steps - 1 - start
    return 1.0 if span <= 0 else min(1.0, (step - start) / span)


def _decay(progress: float, shape: str) -> float:
    """1 -> 0 as progress goes 0 -> 1."""
    if shape == "cosine":
        return 0.5 * (1 + math.cos(math.pi * progress))
    return 1.0 - progress
