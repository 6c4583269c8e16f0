"""The stage registry: a preset's ``stage = "NAME"`` picks the function that runs it (``qwen3 train PRESET``).

A stage is registered with ``@register_stage(name, check=..., defaults=...)`` on its run function
``run(table, *, resume=False, overwrite=False, env=None, progress=None) -> result``, which receives the whole
config table (a stage may have tables of its own, e.g. ``[grpo]``). ``check(table) -> list[TrainConfig]`` parses
the table without doing any work (bad configs fail before the run; the CLI takes the device from it). Built in:

- "train" (also "pretrain", "sft"): one ``Trainer`` run of a plain ``TrainConfig``; a ``stage`` value that no
  stage registered is a label of such a run;
- "s1", "s2", "s3": Qwen3's pre-training stages (qwen3.train.pretrain), which also have chain ``defaults``;
- a table with ``[stages.NAME]`` sub-tables is a chain of stages with defaults, run in registration order, each
  starting from the previous one's final checkpoint.

Stages of other modules (GRPO, ...) register when their module is imported; ``PLUGIN_MODULES`` are imported
before a name is looked up, so their presets dispatch without any import by the caller.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from qwen3.train.settings import SettingsError

# modules that register stages and losses when imported
PLUGIN_MODULES = (
    "qwen3.train.grpo",
    "qwen3.train.cold_start",
    "qwen3.train.fusion",
    "qwen3.train.distill",
    "qwen3.train.reward_model",
    "qwen3.train.general_rl",
)
DEFAULT_STAGE = "train"


@dataclass(frozen=True)
class Stage:
    name: str
    run: Callable[..., Any]
    check: Callable[[dict[str, Any]], list[Any]]
    defaults: Callable[..., dict[str, Any]] | None = None  # (base, previous) -> overrides, for chains
    description: str = ""


STAGES: dict[str, Stage] = {}


def register_stage(
    name: str,
    *,
    check: Callable[[dict[str, Any]], list[Any]] | None = None,
    defaults: Callable[..., dict[str, Any]] | None = None,
    description: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator registering a stage's run function (module docstring). ``check`` defaults to parsing the table
    as one ``TrainConfig``."""

    def add(run: Callable[..., Any]) -> Callable[..., Any]:
        if name in STAGES and STAGES[name].run is not run:
            raise ValueError(f"stage {name!r} is already registered (by {STAGES[name].run.__module__})")
        STAGES[name] = Stage(name, run, check or check_train_config, defaults, description)
        return run

    return add


def import_plugins() -> None:
    """Import the built-in stages and ``PLUGIN_MODULES`` (those present), which register stages and losses."""
    importlib.import_module("qwen3.train.pretrain")
    for module in PLUGIN_MODULES:
        if importlib.util.find_spec(module) is not None:
            importlib.import_module(module)


def get_stage(name: str) -> Stage | None:
    if name not in STAGES:
        import_plugins()
    return STAGES.get(name)


def stage_for(table: dict[str, Any]) -> Stage:
    """The stage that runs ``table``: the chain for ``[stages.*]``, else its ``stage`` (unregistered: "train")."""
    if "stages" in table:
        import_plugins()
        return CHAIN
    name = table.get("stage", DEFAULT_STAGE)
    if not isinstance(name, str):
        raise SettingsError(f"stage: expected a string, got {name!r}")
    return get_stage(name) or STAGES[DEFAULT_STAGE]


def check_table(table: dict[str, Any]) -> list[Any]:
    """Parse ``table`` the way its stage will (no work): the ``TrainConfig`` of each run it makes."""
    return stage_for(table).check(table)


def run_table(table: dict[str, Any], **options: Any) -> Any:
    """Run ``table`` with its stage; ``options``: resume, overwrite, env, progress."""
    return stage_for(table).run(table, **options)


def chain_stages() -> list[str]:
    """Stages that can be links of a chain (those with defaults), in registration order."""
    import_plugins()
    return [name for name, stage in STAGES.items() if stage.defaults is not None]


# ------------------------------------------------------------------------------------------------ built-ins
def check_train_config(table: dict[str, Any]) -> list[Any]:
    from qwen3.train.config import TrainConfig

    return [TrainConfig.from_dict(table)]


def run_trainer(
    table: dict[str, Any],
    *,
    resume: bool = False,
    overwrite: bool = False,
    env: Any = None,
    progress: bool | None = None,
) -> Any:
    """One ``Trainer`` run of a ``TrainConfig`` table; returns its ``TrainResult``."""
    from qwen3.train.trainer import Trainer

    (config,) = check_train_config(table)
    return Trainer(config, resume=resume, overwrite=overwrite, env=env, progress=progress).fit()


def _check_chain(table: dict[str, Any]) -> list[Any]:
    from qwen3.train.pretrain import chain_configs

    return chain_configs(table)


def _run_chain(table: dict[str, Any], *, env: Any = None, **options: Any) -> Any:
    """Each link makes its own ``Trainer`` (which joins the process group once); ``options``: resume, overwrite,
    progress."""
    from qwen3.train.pretrain import run_chain

    return run_chain(_check_chain(table), **options)


for _name in (DEFAULT_STAGE, "pretrain", "sft"):
    register_stage(_name, description="one Trainer run of a TrainConfig")(run_trainer)
CHAIN = Stage("chain", _run_chain, _check_chain, None, "[stages.*] links run in order")
