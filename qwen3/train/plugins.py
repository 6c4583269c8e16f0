"""The modules that register training stages and losses when imported, and the one function that imports them.

It sits below both registries (qwen3/train/stages.py and loss.py import it, it imports neither), so looking a
name up in either registry can load the stage modules without an import cycle: the stage modules themselves
import the trainer, its config and its losses.
"""

from __future__ import annotations

import importlib
import importlib.util

# The built-in pre-training stages first, then the post-training stages (each registers its stage and losses).
PLUGIN_MODULES = (
    "qwen3.train.pretrain",
    "qwen3.train.cold_start",
    "qwen3.train.grpo",
    "qwen3.train.fusion",
    "qwen3.train.distill",
    "qwen3.train.reward_model",
    "qwen3.train.general_rl",
)


def import_plugins() -> None:
    """Import every module of ``PLUGIN_MODULES`` that is present (each registers its stages and losses)."""
    for module in PLUGIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)
