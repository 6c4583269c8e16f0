"""The training loop. A stage supplies rows (a ``RowSource``) and a loss (``[loss]`` or a ``LossFn``); the
trainer owns everything else: global batches, gradient accumulation, distribution, the MoE load-balancing loss,
clipping, the schedule, metrics, non-finite steps, checkpoints, resuming, and step hooks.

Normalisation: every rank draws the same global batch of rows (``rows_per_step``) and takes its slice, so the
loss's denominator D (``Normalization.denominator`` of the whole global batch: its targets, its sequences, or
sequences x a constant) and the number of tokens N are known everywhere without communication, before any
backward. A micro-batch contributes ``loss_sum / D`` (and, for MoE, ``coef x LBL x its tokens / N``), times the
world size because DDP and FSDP average gradients over ranks. The step's loss is therefore the same whatever the
micro-batch size, accumulation or world size; only float summation order differs. The loss's metrics are token
means (divided by the global target count).

Hooks: objects passed as ``hooks=[...]`` with any of ``on_step_start(trainer, step)`` (before the step's rows are
drawn; ``step`` is the number of the step about to run), ``on_step_end(trainer, step, metrics)`` (after the
update, before the record is logged: a hook may add entries to ``metrics``) and ``on_checkpoint(trainer, step)``
(after a checkpoint was written, ``trainer.last_checkpoint``). A hook with ``state_dict()`` /
``load_state_dict(state)`` is saved in checkpoints and restored on resume.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from qwen3.train import build, checkpoint, distributed
from qwen3.train.batch import Batch, Row, RowSource, collate
from qwen3.train.config import TrainConfig
from qwen3.train.loss import LossFn, make_loss, normalization_of
from qwen3.train.metrics import MetricsLogger, tensorboard_writer_class
from qwen3.train.schedule import lr_at
from qwen3.utils.atomic import atomic_write_json


class TrainingError(RuntimeError):
    """Training cannot continue (e.g. a non-finite loss); the message names the step."""


class TrainStep(nn.Module):
    """model + loss in one module, so DDP/FSDP see the whole computation (FSDP gathers the LM head inside it)."""

    def __init__(self, model: nn.Module, loss_fn: LossFn, balancer: Any | None, aux_coef: float):
        super().__init__()
        self.model, self.loss_fn, self.balancer, self.aux_coef = model, loss_fn, balancer, aux_coef
        self.metric_names: list[str] = []  # of the last LossOutput.metrics, logged like the loss

    def forward(self, batch: Batch, loss_scale: float, aux_scale: float) -> tuple[Tensor, Tensor, Tensor]:
        """(objective to backpropagate, [loss sum, *the loss's metric sums], LBL). ``loss_scale`` = world /
        the loss's global denominator; ``aux_scale`` = world x this micro-batch's share of the global batch's
        tokens."""
        out = self.loss_fn(self.model, batch)
        objective = out.loss_sum * loss_scale
        aux = torch.zeros((), device=objective.device)
        if out.router_logits and self.balancer is not None:
            aux = self.balancer.step_loss(out.router_logits, batch.attention_mask)
            objective = objective + self.aux_coef * aux * aux_scale
        sums = torch.stack(
            [out.loss_sum.detach().float(), *(out.metrics[k].detach().float() for k in sorted(out.metrics))]
        )
        self.metric_names = sorted(out.metrics)
        return objective, sums, aux.detach().float()


@dataclass
class TrainResult:
    step: int
    losses: list[float] = field(default_factory=list)  # of the steps run by this call
    checkpoint: Path | None = None
    skipped_steps: int = 0


class Trainer:
    """``Trainer(config).fit()``. ``rows`` replaces the configured data with any ``RowSource``; ``source`` with a
    list/iterable of documents (pre-training) or chat examples (SFT) that go through the configured pipeline.
    ``loss_fn`` replaces ``config.loss``; ``hooks`` see each step (module docstring). Checkpoints exist in ``run_dir`` only with ``resume`` (continue
    from the newest complete one) or ``overwrite`` (delete them)."""

    def __init__(
        self,
        config: TrainConfig,
        *,
        rows: RowSource | None = None,
        source: Iterable[Any] | None = None,
        loss_fn: LossFn | None = None,
        resume: bool = False,
        overwrite: bool = False,
        env: distributed.DistEnv | None = None,
        progress: bool | None = None,
        hooks: Iterable[Any] = (),
    ):
        loss_fn = loss_fn or make_loss(config.loss.type, **config.loss.options)  # bad options fail first
        self.hooks = list(hooks)
        self.normalization = normalization_of(loss_fn)
        self.last_checkpoint: Path | None = None
        if config.tensorboard:
            tensorboard_writer_class()  # a missing package fails here, on every rank, before any work
        self.config = config
        self.env = env or distributed.init_distributed(config.device)
        self.run_dir = Path(config.run_dir)
        cuda = self.env.device.type == "cuda"
        if config.precision == "bf16" and cuda and not torch.cuda.is_bf16_supported():
            raise TrainingError("precision = 'bf16' but this GPU has no bf16 support; use precision = 'fp32'")
        self.accum = config.grad_accum_steps(self.env.world_size)
        self.rows_per_step = config.rows_per_step(self.env.world_size)
        checkpoint.seed_everything(config.seed)
        self.resume_from = self._find_resume() if resume else None
        if not resume:
            self._check_fresh(overwrite)
        weights = self._weights_source()
        self.model = build.build_model(config.model, self.env.device, config.data.seq_len, weights)
        self.tokenizer = build.build_tokenizer(
            config.data, self.model.config.vocab_size, weights or _as_dir(config.model.name)
        )
        self.rows = rows or build.build_rows(
            config.data, self.tokenizer, self.model.config.vocab_size, source
        )
        self.pad_id = build.pad_id(self.tokenizer)
        self.module = distributed.wrap(
            TrainStep(self.model, loss_fn, self._balancer(), self._aux_coef()),
            config.distributed, self.env, list(self.model.model.layers), self.model.config.is_moe,
        )  # fmt: skip
        self.optimizer = build.build_optimizer(self.module, config.optim, self.env.device)
        self.step, self.skipped_steps = 0, 0
        self.metrics = MetricsLogger(
            self.run_dir,
            config.steps,
            config.stage,
            self.env.is_main,
            config.tensorboard,
            config.log_every,
            progress,
        )
        self._restore()

    # ------------------------------------------------------------------------------------------------ setup
    def _find_resume(self) -> Path | None:
        if self.env.is_main:
            checkpoint.clean_stale(self.run_dir)
        return distributed.broadcast_object(checkpoint.latest_checkpoint(self.run_dir), self.env)

    def _check_fresh(self, overwrite: bool) -> None:
        """A fresh run must not mix its checkpoints with an earlier run's in the same directory."""
        existing = distributed.broadcast_object(checkpoint.latest_checkpoint(self.run_dir), self.env)
        if existing is None:
            return
        if not overwrite:
            raise TrainingError(
                f"{self.run_dir} already holds checkpoints (newest {existing.name}): resume it (--resume), "
                "choose another run_dir, or pass --overwrite to delete them"
            )
        if self.env.is_main:
            import shutil

            shutil.rmtree(checkpoint.checkpoints_dir(self.run_dir))
        if self.env.distributed:
            torch.distributed.barrier()

    def _weights_source(self) -> Path | None:
        if self.resume_from is not None:
            return checkpoint.model_dir(self.resume_from)
        if self.config.init_from:
            return checkpoint.model_dir(checkpoint.resolve_init(self.config.init_from))
        return None

    def _balancer(self) -> Any | None:
        if not self.model.config.is_moe:
            return None
        from qwen3.model.moe import GlobalBatchLoadBalancer

        group = torch.distributed.group.WORLD if self.env.distributed else None
        return GlobalBatchLoadBalancer(
            self.model.config.num_experts, self.model.config.num_experts_per_tok, group
        )

    def _aux_coef(self) -> float:
        return float(self.model.config.router_aux_loss_coef or 0.0) if self.model.config.is_moe else 0.0

    def _restore(self) -> None:
        """Resume everything from the checkpoint, or start fresh (optionally with an earlier stage's moments)."""
        source = self.resume_from
        if source is None and self.config.init_from and self.config.init_optimizer:
            source = checkpoint.resolve_init(self.config.init_from)
        if source is not None:
            state = checkpoint.load_optimizer_file(source)
            if state is not None:
                distributed.load_optimizer_state(self.module, self.optimizer, state)
        if self.resume_from is None:
            if self.env.is_main:
                atomic_write_json(self.run_dir / "train_config.json", self.config.to_dict())
                self.metrics.reset_to("")
            return
        trainer_state = checkpoint.load_trainer_state(self.resume_from)
        self.step, self.skipped_steps = int(trainer_state["step"]), int(trainer_state.get("skipped_steps", 0))
        self.rows.load_state_dict(trainer_state["data"])
        for hook, state in zip(self._stateful_hooks(), trainer_state.get("hooks", [])):
            hook.load_state_dict(state)
        checkpoint.load_rng_file(self.resume_from)
        self.metrics.reset_to((self.resume_from / "metrics.jsonl").read_text(encoding="utf-8"))
        self.metrics.message(f"resumed from {self.resume_from} at step {self.step}")

    # ------------------------------------------------------------------------------------------------- loop
    def fit(self) -> TrainResult:
        result = TrainResult(self.step)
        self.metrics.start(self.step)
        started = time.perf_counter()
        last_saved = self.step if self.resume_from is not None else None
        try:
            while self.step < self.config.steps:
                self._call_hooks("on_step_start", self.step + 1)
                rows = [self.rows.next_row() for _ in range(self.rows_per_step)]
                record = self.run_step(rows, started)
                if hasattr(self.rows, "counters"):  # the same on every rank: all draw the whole global batch
                    record.update(self.rows.counters())
                self._call_hooks("on_step_end", self.step, record)
                result.losses.append(record["loss"])
                self.metrics.log(record)
                every = self.config.checkpoint.every
                if every and self.step % every == 0:
                    result.checkpoint, last_saved = self.save(), self.step
            if self.config.checkpoint.save_final and last_saved != self.step:
                result.checkpoint = self.save()
        finally:
            self.metrics.close()
        result.step, result.skipped_steps = self.step, self.skipped_steps
        return result

    def _call_hooks(self, name: str, *args: Any) -> None:
        for hook in self.hooks:
            method = getattr(hook, name, None)
            if method is not None:
                method(self, *args)

    def _stateful_hooks(self) -> list[Any]:
        return [
            hook for hook in self.hooks if hasattr(hook, "state_dict") and hasattr(hook, "load_state_dict")
        ]

    def run_step(self, rows: list[Row], started: float | None = None) -> dict[str, Any]:
        """One optimizer step on the global batch ``rows`` (the same list on every rank; ``rows_per_step`` of
        them); returns the step's record (not logged). ``fit`` calls it; a stage may too (several updates on one
        batch of rollouts)."""
        if not rows or len(rows) % self.env.world_size:
            raise TrainingError(
                f"step {self.step + 1}: {len(rows)} rows do not split evenly over {self.env.world_size} rank(s)"
            )
        t0 = time.perf_counter()
        lr = lr_at(self.config.schedule, self.config.optim.lr, self.step, self.config.steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        targets = sum(row.num_targets for row in rows)
        tokens = sum(len(row.input_ids) for row in rows)
        denominator = self.normalization.denominator(rows)
        if targets == 0 or denominator <= 0:
            if not (targets == 0 and self.normalization.allow_empty):
                raise TrainingError(f"step {self.step + 1}: the global batch has no target tokens")
            denominator = 1.0  # every loss sum is 0: a step with zero gradient (Normalization.allow_empty)
        sums = self._accumulate(self._my_micro_batches(rows), denominator, tokens)
        sums = distributed.all_reduce_sum(sums, self.env).tolist()
        aux, loss, extra = (
            sums[0] / tokens,
            sums[1] / denominator,
            [value / max(targets, 1) for value in sums[2:]],
        )
        grad_norm = self._clip()
        self.step += 1
        skipped = not (math.isfinite(loss) and math.isfinite(grad_norm))
        if skipped:
            self._non_finite(loss, grad_norm)
        else:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        now = time.perf_counter()
        record = {"step": self.step, "loss": loss, "lr": lr, "grad_norm": grad_norm, "tokens": tokens,
                  "targets": targets, "tokens_per_s": tokens / (now - t0),
                  "elapsed_s": now - (t0 if started is None else started)}  # fmt: skip
        record.update(zip(distributed.unwrap(self.module).metric_names, extra))
        if self.model.config.is_moe:
            record["aux_loss"] = aux
        if skipped:
            record["skipped"] = True
        return record

    def _my_micro_batches(self, rows: list[Row]) -> list[list[Row]]:
        per_rank = len(rows) // self.env.world_size
        mine = rows[self.env.rank * per_rank : (self.env.rank + 1) * per_rank]
        size = self.config.micro_batch_size
        return [mine[i : i + size] for i in range(0, len(mine), size)]

    def _accumulate(self, micro_batches: list[list[Row]], denominator: float, tokens: int) -> Tensor:
        """Forward/backward every micro-batch; returns [token-weighted sum of aux losses, sum of loss sums, sums of
        the loss's metrics] (kept on the device: no host sync until the step's all-reduce)."""
        world = self.env.world_size
        sums: Tensor | None = None
        if self.model.config.is_moe:
            self.module_balancer().reset()
        autocast = torch.autocast(
            self.env.device.type, torch.bfloat16, enabled=self.config.precision == "bf16"
        )
        for index, rows in enumerate(micro_batches):
            batch = collate(rows, self.pad_id).to(self.env.device)
            share = sum(len(row.input_ids) for row in rows) / tokens  # of the global batch's tokens
            last = index == len(micro_batches) - 1
            with distributed.gradient_sync(self.module, last):
                with autocast:
                    objective, loss_sums, aux = self.module(batch, world / denominator, world * share)
                objective.backward()
            step_sums = torch.cat([(aux * share * tokens).reshape(1), loss_sums]).double()
            sums = step_sums if sums is None else sums + step_sums
        return sums

    def module_balancer(self) -> Any:
        return distributed.unwrap(self.module).balancer

    def _clip(self) -> float:
        limit = self.config.optim.grad_clip or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(self.module.parameters(), limit)
        if hasattr(norm, "full_tensor"):  # FSDP2: a DTensor
            norm = norm.full_tensor()
        return float(norm)

    def _non_finite(self, loss: float, grad_norm: float) -> None:
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm} (loss {loss})"
        if self.config.on_nan == "skip":
            self.skipped_steps += 1
            self.metrics.message(f"step {self.step}: non-finite {what}; step skipped (on_nan = 'skip')")
            return
        latest = checkpoint.latest_checkpoint(self.run_dir)
        raise TrainingError(
            f"step {self.step}: non-finite {what}. Last checkpoint: {latest or 'none'}. Lower optim.lr, check the "
            "data, or set on_nan=skip to skip such steps."
        )

    # ------------------------------------------------------------------------------------------- checkpoints
    def save(self) -> Path | None:
        """Write a checkpoint of the current step (collective: every rank calls it; rank 0 writes)."""
        weights = distributed.model_state(self.module) if self._sharded else None  # collective
        optimizer_state = distributed.optimizer_state(self.module, self.optimizer)  # collective under FSDP
        path = None
        if self.env.is_main:
            path = checkpoint.save_checkpoint(
                self.run_dir,
                self.step,
                self.model if weights is None else distributed.assemble_model(self.model, weights),
                optimizer_state,
                {
                    "data": self.rows.state_dict(),
                    "skipped_steps": self.skipped_steps,
                    "stage": self.config.stage,
                    "hooks": [hook.state_dict() for hook in self._stateful_hooks()],
                },
                self.config.to_dict(),
                self.metrics.text(),
                self.tokenizer,
                self.config.checkpoint.keep_last,
            )
        if self.env.distributed:
            torch.distributed.barrier()
        self.last_checkpoint = path
        self._call_hooks("on_checkpoint", self.step)
        return path

    @property
    def _sharded(self) -> bool:
        return self.env.distributed and self.config.distributed == "fsdp"


def _as_dir(name: str) -> Path | None:
    return Path(name) if (Path(name) / "config.json").is_file() else None
