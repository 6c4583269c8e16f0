"""Qwen3 pre-training as three chained stages (report §3.2).

- S1 "general": the broad corpus at a 4,096-token context, RoPE base 10,000.
- S2 "reasoning": more STEM/code/reasoning/synthetic data, same context, "accelerate the learning rate decay".
- S3 "long context": RoPE base raised from 10,000 to 1,000,000 (ABF, Xiong et al. 2023) and the sequence length
  from 4,096 to 32,768, continuing training on long documents.

The three are registered stages (qwen3.train.stages) "s1", "s2", "s3" with chain defaults. A chain config is a
``TrainConfig`` table (shared by all stages) plus ``[stages.s1]``, ``[stages.s2]``, ``[stages.s3]`` tables
overriding it per stage (typically ``steps`` and ``data.paths``); links run in registration order, and any other
stage registered with ``defaults`` can be a link too. A table with ``stage = "s2"`` (no ``[stages]``) runs that
stage alone, as a chain of one link: its defaults override the table (to change one, write the chain form with a
``[stages.s2]`` table). Stage k runs in
``RUN_DIR/<name>`` and starts from stage k-1's final checkpoint: its weights and, by default, its AdamW moments,
so the chain behaves like one run whose data changes. The report publishes no learning rates, batch sizes or
schedules (NOT FOUND); our defaults express its words as a warmup-stable-decay schedule (MiniCPM):

| stage | schedule | rope_theta | seq_len |
|---|---|---|---|
| s1 | warmup, then constant at ``optim.lr`` (``wsd``, ``decay_fraction`` 0) | 10,000 | ``data.seq_len`` |
| s2 | no warmup, decays over the whole stage to ``min_lr_ratio`` x lr (``wsd``, ``decay_fraction`` 1) | 10,000 | same |
| s3 | constant at the lr S2 ended with (S2's own lr and schedule) | 1,000,000 | 8 x ``data.seq_len`` |

Any of these can be overridden in the stage's table.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from qwen3.train.config import TrainConfig
from qwen3.train.schedule import lr_at
from qwen3.train.settings import SettingsError
from qwen3.train.stages import STAGES, chain_stages, register_stage, run_trainer

PRETRAIN_STAGES = {"s1": "general", "s2": "reasoning", "s3": "long context"}  # report section 3.2
ABF_ROPE_THETA = 1_000_000.0  # S3 (report section 3.2)
BASE_ROPE_THETA = 10_000.0  # S1, S2
LONG_CONTEXT_FACTOR = 8  # 4,096 -> 32,768


def is_chain(table: dict[str, Any]) -> bool:
    return "stages" in table


def stage_defaults(name: str, base: TrainConfig, previous: TrainConfig | None = None) -> dict[str, Any]:
    """What the report says about stage ``name``, as overrides of the shared config. S3 continues at the learning
    rate the ``previous`` stage (normally S2, with its own overrides) ended with."""
    if name == "s1":
        return {
            "stage": "s1",
            "model": {"rope_theta": BASE_ROPE_THETA},
            "schedule": {"kind": "wsd", "decay_fraction": 0.0},
        }
    if name == "s2":
        return {
            "stage": "s2",
            "model": {"rope_theta": BASE_ROPE_THETA},
            "init_optimizer": True,
            "schedule": {"kind": "wsd", "warmup_steps": 0, "decay_fraction": 1.0},
        }
    return {"stage": "s3", "model": {"rope_theta": ABF_ROPE_THETA}, "init_optimizer": True,
            "data": {"seq_len": base.data.seq_len * LONG_CONTEXT_FACTOR},
            "optim": {"lr": final_lr(previous or base)},
            "schedule": {"kind": "constant", "warmup_steps": 0}}  # fmt: skip


def final_lr(config: TrainConfig) -> float:
    """The learning rate of a stage's last step."""
    return lr_at(config.schedule, config.optim.lr, config.steps - 1, config.steps)


def chain_configs(table: dict[str, Any]) -> list[TrainConfig]:
    """One ``TrainConfig`` per stage listed under ``stages`` (in registration order: s1, s2, s3), each initialised
    from the previous stage's run directory (its newest checkpoint, the final one once the stage has finished)."""
    table = copy.deepcopy(table)
    stages = table.pop("stages")
    if not isinstance(stages, dict) or not stages:
        raise SettingsError("stages: expected tables [stages.s1], [stages.s2], [stages.s3]")
    order = chain_stages()
    unknown = sorted(set(stages) - set(order))
    if unknown:
        raise SettingsError(f"stages: unknown stage {unknown[0]!r}; stages: {', '.join(order)}")
    base = TrainConfig.from_dict(table)
    root = Path(base.run_dir)
    configs: list[TrainConfig] = []
    for name in (s for s in order if s in stages):
        previous = configs[-1] if configs else None
        defaults = STAGES[name].defaults
        assert defaults is not None
        merged = _merge(_merge(table, defaults(base, previous)), stages[name] or {})
        merged["run_dir"] = str(root / name)
        if configs:
            merged["init_from"] = configs[-1].run_dir
        try:
            configs.append(TrainConfig.from_dict(merged))
        except SettingsError as err:
            raise SettingsError(f"stages.{name}: {err}") from None
    return configs


def run_chain(
    configs: Sequence[TrainConfig],
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
) -> list[Any]:
    """Run the stages in order. With ``resume``, finished stages are skipped and an interrupted one resumes."""
    from qwen3.train.checkpoint import latest_checkpoint, load_trainer_state
    from qwen3.train.trainer import Trainer

    results = []
    for config in configs:
        latest = latest_checkpoint(config.run_dir) if resume else None
        if latest is not None and load_trainer_state(latest)["step"] >= config.steps:
            continue
        trainer = Trainer(config, resume=resume, overwrite=overwrite, progress=progress)
        results.append(trainer.fit())
    return results


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def alone(name: str, table: dict[str, Any]) -> dict[str, Any]:
    """The table of stage ``name`` run by itself, as a chain link without overrides: defaults over the table."""
    return _merge(table, stage_defaults(name, TrainConfig.from_dict(table)))


def _register(name: str) -> None:
    def check(table: dict[str, Any]) -> list[TrainConfig]:
        return [TrainConfig.from_dict(alone(name, table))]

    def run(table: dict[str, Any], **options: Any) -> Any:
        return run_trainer(alone(name, table), **options)

    def defaults(base: TrainConfig, previous: TrainConfig | None = None) -> dict[str, Any]:
        return stage_defaults(name, base, previous)

    register_stage(name, check=check, defaults=defaults, description=PRETRAIN_STAGES[name])(run)


for _name in PRETRAIN_STAGES:
    _register(_name)
