"""Stage 2 of Qwen3's post-training: reasoning RL with GRPO (report section 4.2).

The report trains on 3,995 query-verifier pairs with GRPO, "large batch size and a high number of rollouts per
query, along with off-policy training", and keeps the model's entropy steady or rising. Here:

- ``GRPOConfig`` holds every knob (the ``[grpo]`` table of a preset); the rest of the preset is a ``TrainConfig``.
- ``GRPORows`` is the trainer's row source: every ``num_iterations`` optimizer steps it samples a new generation
  batch (``prompts_per_step`` queries x ``num_generations`` rollouts from our engine, in process), scores it with
  the reward functions, normalises the rewards within each group into advantages and turns each rollout into a
  training row whose per-token extras carry the advantage and the old, reference and engine log-probabilities.
  Its ``counters()`` report the rollout metrics of each step and the run's compute (``qwen3.train.flops``).
- ``grpo_loss`` is the one clipped-surrogate objective behind all three ``loss_type`` values; ``grpo_objective``
  the trainer's ``LossFn`` around it (registered as ``loss_type = "grpo"``).
- ``run_grpo`` puts them on the shared ``Trainer`` (``qwen3 train grpo-debug``).

Normalisation is the trainer's own (``qwen3.train.loss.Normalization``), declared by the objective
(``grpo_normalization``): "grpo" -> "sequences" (the loss sums each sequence's token mean, the trainer divides by
the number of sequences of the whole generation batch), "dr_grpo" -> "constant" (token sums over sequences x
``max_new_tokens``), "dapo" -> "tokens" (token sums over all the batch's tokens). The denominators are counted over
the whole global batch before any backward, so the result is exact whatever the micro-batching or the number of
ranks. Tokens without a loss are labelled IGNORE: the prompt, forced tokens, and every token of a rollout masked
by ``mask_truncated``, which therefore drops out of the counts like a rollout never sampled.

Compute: a ``ComputeCounter`` (``qwen3.train.flops``) counts the policy's rollout forwards (2N per token the
engine computed: prompt prefill and each decoded token), every trained token of every update (6N), the recomputed
old log-probabilities (2N) and the reference model's forwards (2N); its running totals are logged with every
step (``policy_train_tokens``, ``policy_forward_tokens``, ``policy_flops``, ``reference_*``, ``flops``), the names
distillation logs. Validation generations are not counted (not training compute).

FSDP2: the policy's parameters are DTensors there, so rollouts come from an inference copy of the model that is
loaded from the gathered full state after every update (``LLMEngine.load_weights``), and the old
log-probabilities are taken with that copy (the same weights); without FSDP the engine shares the module,
unless ``engine_dtype`` asks for another dtype (a copy in that dtype, loaded the same way).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from qwen3.train.batch import IGNORE, Batch, Row, collate
from qwen3.train.distributed import gather, shard
from qwen3.train.flops import ComputeCounter, matmul_params
from qwen3.train.logprobs import token_logprobs
from qwen3.train.loss import (
    LossFn,
    LossOutput,
    Normalization,
    reduce_masked,
    register_loss,
    with_normalization,
)
from qwen3.train.rewards import is_correct, resolve_rewards, weighted_reward
from qwen3.train.rollout import Rollout, RolloutEngine, rollout_seed
from qwen3.train.settings import SettingsError
from qwen3.train.stages import register_stage

LOSS_TYPES = ("grpo", "dr_grpo", "dapo")
TASKS = ("digits",)  # built-in tasks; "world:<family>" takes items from qwen3.world.generate
ENGINE_WEIGHTS = ("auto", "reference", "fused", "packed")
ENGINE_DTYPES = ("auto", "float32", "bfloat16")


@dataclass
class GRPOConfig:
    """GRPO settings (report section 4.2; Shao et al. 2024, DeepSeekMath, arXiv 2402.03300, for GRPO itself).

    Rollouts (report 4.2: "a large batch size and a high number of rollouts per query"):
    - ``prompts_per_step`` queries per generation batch, ``num_generations`` rollouts each (the group).
    - ``max_new_tokens``; ``max_prompt_tokens`` (the engine's context is the sum of the two, within the model's
      positions: a longer prompt leaves fewer new tokens, one past the context is an error); ``temperature`` /
      ``top_p`` / ``top_k`` (0: off) of the rollouts. The trainer's log-probabilities are taken under the same
      distribution: the temperature, then the engine's own top-k / top-p truncation and renormalisation (TRL and
      verl apply the temperature only).
    - ``enable_thinking``: thinking mode through the chat template (None: each item's own switch, else the
      template's default, thinking); ``thinking_budget``: at most this many thinking tokens, then the engine
      forces the stop-thinking text (report section 4.3), whose tokens are never trained on.
    - ``engine_weights``: the engine's weight layout ("reference" reads the policy module in place; the others
      are rebuilt from it after every update); ``max_num_seqs``: rollouts decoded together.
    - ``engine_dtype``: "auto" samples with the policy's own weights (shared module, exact); "bfloat16" (or any
      dtype other than the policy's) gives the engine its own copy in that dtype, loaded from the policy after
      every update: faster decoding on AVX512-BF16 / GPUs, at the price of an engine-trainer mismatch that
      ``tis_cap`` corrects (the report's RL runs sample with an inference engine too).

    Objective:
    - ``loss_type``: "grpo" (each sequence's token mean, then the mean over sequences; Shao et al. 2024),
      "dr_grpo" (token sums divided by sequences x ``max_new_tokens``: no length bias; Liu et al. 2025,
      Understanding R1-Zero-Like Training, arXiv 2503.20783), "dapo" (the mean over all tokens of the batch;
      Yu et al. 2025, DAPO, arXiv 2503.14476).
    - ``scale_rewards``: divide the group-centred rewards by the group's standard deviation (GRPO); Dr. GRPO
      turns this off (difficulty bias).
    - ``epsilon`` / ``epsilon_high``: the clip range [1 - epsilon, 1 + epsilon_high] of the ratio (PPO,
      Schulman et al. 2017); ``epsilon_high`` > ``epsilon`` is DAPO's clip-higher, which keeps entropy from
      collapsing (None: = epsilon).
    - ``num_iterations``: optimizer steps per generation batch. Above 1 the later steps are off-policy (the
      report's "off-policy training"), the ratio taken against the old log-probabilities recomputed by the
      trainer before the first update.
    - ``beta``: weight of the KL penalty to the frozen initial model, the k3 estimator
      exp(ref - logp) - (ref - logp) - 1 (Schulman 2020; as in GRPO). 0 (DAPO, Dr. GRPO): no reference model.
    - ``entropy_coef``: adds -coef x entropy to the per-token loss (the report keeps entropy steady or rising).
    - ``tis_cap``: truncated importance sampling (Yao et al. 2025, "Your efficient RL framework secretly brings
      you off-policy RL training"): each token's loss is weighted by min(pi_trainer_old / pi_engine, cap) to
      correct for the engine sampling at another precision. Both sides' log-probabilities are under the
      distribution the engine sampled from (the engine's "processed" mode; the trainer applies the same
      temperature and top-k / top-p rule in ``token_logprobs``).
    - ``mask_truncated``: rollouts cut off by ``max_new_tokens`` get no loss (DAPO's overlong filtering);
      ``overlong_buffer`` / ``overlong_penalty``: DAPO's soft overlong punishment, a reward going linearly from 0
      to -penalty over the last ``overlong_buffer`` tokens before ``max_new_tokens``.
    - ``dynamic_filtering``: drop groups whose rewards are all equal (zero advantage, no signal) and sample more
      queries until the batch is full (DAPO's dynamic sampling), at most ``filter_max_batches`` extra batches.

    Rewards and data:
    - ``rewards``: names in ``qwen3.train.rewards.REWARDS``, summed with ``reward_weights`` (default 1 each).
    - ``task``: "digits" (a built-in task a freshly initialised debug model learns: reply with digits only) or
      "world:<family>" (``qwen3.world.generate``); ``train_prompts`` / ``eval_prompts`` items of it.
    - ``eval_every``: every k optimizer steps, greedy ``val_accuracy`` on the ``eval_prompts`` validation items
      (0: never).
    """

    prompts_per_step: int = 16
    num_generations: int = 8
    max_new_tokens: int = 128
    max_prompt_tokens: int = 1024
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    enable_thinking: bool | None = None
    thinking_budget: int | None = None
    engine_weights: str = "auto"
    engine_dtype: str = "auto"
    max_num_seqs: int = 128
    loss_type: str = "grpo"
    scale_rewards: bool = True
    epsilon: float = 0.2
    epsilon_high: float | None = None
    num_iterations: int = 1
    beta: float = 0.0
    entropy_coef: float = 0.0
    tis_cap: float | None = None
    mask_truncated: bool = False
    overlong_buffer: int = 0
    overlong_penalty: float = 1.0
    dynamic_filtering: bool = False
    filter_max_batches: int = 4
    rewards: list[str] = field(default_factory=lambda: ["digit_fraction"])
    reward_weights: list[float] | None = None
    task: str = "digits"
    train_prompts: int = 256
    eval_prompts: int = 32
    eval_every: int = 0

    def __post_init__(self) -> None:
        for name in ("prompts_per_step", "num_generations", "max_new_tokens", "num_iterations", "max_num_seqs",
                     "train_prompts", "filter_max_batches", "max_prompt_tokens"):  # fmt: skip
            _at_least(name, getattr(self, name), 1)
        for name in ("eval_every", "overlong_buffer", "top_k", "eval_prompts"):
            _at_least(name, getattr(self, name), 0)
        if self.num_generations < 2:
            raise SettingsError("grpo.num_generations: a group needs at least 2 rollouts, got 1")
        if not self.temperature > 0:
            raise SettingsError(f"grpo.temperature: must be > 0 (RL samples), got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise SettingsError(f"grpo.top_p: must be in (0, 1], got {self.top_p}")
        if self.thinking_budget is not None:
            _at_least("thinking_budget", self.thinking_budget, 0)
        _choice("loss_type", self.loss_type, LOSS_TYPES)
        _choice("engine_weights", self.engine_weights, ENGINE_WEIGHTS)
        _choice("engine_dtype", self.engine_dtype, ENGINE_DTYPES)
        if not 0 < self.epsilon < 1:
            raise SettingsError(f"grpo.epsilon: must be in (0, 1), got {self.epsilon}")
        if self.epsilon_high is not None and not self.epsilon_high > 0:
            raise SettingsError(f"grpo.epsilon_high: must be > 0, got {self.epsilon_high}")
        for name in ("beta", "entropy_coef", "overlong_penalty"):
            if getattr(self, name) < 0:
                raise SettingsError(f"grpo.{name}: must be >= 0, got {getattr(self, name)}")
        if self.tis_cap is not None and not self.tis_cap >= 1:
            raise SettingsError(f"grpo.tis_cap: must be >= 1 (a cap on the weight), got {self.tis_cap}")
        if self.overlong_buffer >= self.max_new_tokens:
            raise SettingsError(
                f"grpo.overlong_buffer: must be < max_new_tokens {self.max_new_tokens}, got {self.overlong_buffer}"
            )
        if not self.rewards:
            raise SettingsError("grpo.rewards: name at least one reward function")
        try:
            resolve_rewards(self.rewards)
        except ValueError as err:
            raise SettingsError(f"grpo.rewards: {err}") from None
        if self.reward_weights is not None and len(self.reward_weights) != len(self.rewards):
            raise SettingsError(
                f"grpo.reward_weights: {len(self.reward_weights)} weights for {len(self.rewards)} rewards"
            )
        if self.task not in TASKS and not self.task.startswith("world:"):
            raise SettingsError(
                f"grpo.task: must be one of {', '.join(TASKS)} or 'world:<family>', got {self.task!r}"
            )

    @property
    def clip_high(self) -> float:
        return self.epsilon if self.epsilon_high is None else self.epsilon_high

    @property
    def rollouts_per_step(self) -> int:
        return self.prompts_per_step * self.num_generations


def _at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SettingsError(f"grpo.{name}: must be an integer >= {low}, got {value!r}")


def _choice(name: str, value: Any, options: Sequence[str]) -> None:
    if value not in options:
        raise SettingsError(f"grpo.{name}: must be one of {', '.join(options)}, got {value!r}")


# ------------------------------------------------------------------------------------------------ the objective
def group_advantages(rewards: Tensor, group_size: int, scale: bool = True, eps: float = 1e-4) -> Tensor:
    """(r - mean of its group) / (std of its group + eps) per rollout; ``rewards`` [groups x group_size] in group
    order. The std is the unbiased one (as TRL); ``scale=False`` keeps only the centring (Dr. GRPO)."""
    if rewards.ndim != 1 or rewards.numel() % group_size:
        raise ValueError(f"rewards of shape {list(rewards.shape)} do not split into groups of {group_size}")
    groups = rewards.double().view(-1, group_size)
    centred = groups - groups.mean(dim=1, keepdim=True)
    if scale:
        centred = centred / (groups.std(dim=1, keepdim=True) + eps)
    return centred.flatten().to(rewards.dtype if rewards.is_floating_point() else torch.float32)


def grpo_normalization(loss_type: str, max_new_tokens: int | None = None) -> Normalization:
    """The trainer's normalisation of each ``loss_type``:

    - "grpo": "sequences", the mean over sequences of each sequence's token mean (Shao et al. 2024);
    - "dr_grpo": "constant", token sums over sequences x ``max_new_tokens`` (Liu et al. 2025);
    - "dapo": "tokens", the token mean of the batch (Yu et al. 2025).

    Sequences and tokens are those with a loss; a batch with none is a zero step (every rollout masked)."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"loss_type {loss_type!r} is not one of {', '.join(LOSS_TYPES)}")
    if loss_type == "dr_grpo" and not (isinstance(max_new_tokens, int) and max_new_tokens > 0):
        raise ValueError(
            f"loss_type 'dr_grpo' needs max_new_tokens > 0 (its constant), got {max_new_tokens!r}"
        )
    kind = {"grpo": "sequences", "dr_grpo": "constant", "dapo": "tokens"}[loss_type]
    return Normalization(kind, max_new_tokens if kind == "constant" else None, allow_empty=True)


@dataclass
class GRPOLoss:
    loss: Tensor  # scalar: loss_sum over this batch's own denominator (the objective of this batch alone)
    loss_sum: Tensor  # scalar: the sum the trainer divides by the global batch's denominator
    per_token: Tensor  # [B, T]
    clipped: Tensor  # [B, T] bool: the clip bound is the active branch
    kl: Tensor  # [B, T] k3 estimate (zeros without a reference)


def grpo_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    loss_type: str = "grpo",
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    max_new_tokens: int | None = None,
    ref_logprobs: Tensor | None = None,
    beta: float = 0.0,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    is_weights: Tensor | None = None,
    document_ids: Tensor | None = None,
) -> GRPOLoss:
    """The clipped surrogate of every ``loss_type``, per token t of sequence i (all tensors [B, T]; ``advantages``
    may be [B]):

        ratio = exp(logp - old_logp)
        l = -min(ratio x A, clip(ratio, 1 - epsilon, 1 + epsilon_high) x A) x is_weight
            + beta x (exp(ref - logp) - (ref - logp) - 1) - entropy_coef x entropy

    summed over the ``mask`` as ``grpo_normalization(loss_type, max_new_tokens)`` says (``loss_sum``: per sequence
    means for "grpo", else token sums; sequences are rows, or (row, document) with ``document_ids``) and divided
    by that normalisation's denominator of this batch (``loss``)."""
    high = epsilon if epsilon_high is None else epsilon_high
    if advantages.ndim == 1:
        advantages = advantages[:, None].expand_as(logprobs)
    ratio = torch.exp(logprobs - old_logprobs)
    unclipped = ratio * advantages
    bounded = torch.clamp(ratio, 1 - epsilon, 1 + high) * advantages
    per_token = -torch.minimum(unclipped, bounded)
    clipped = (bounded < unclipped) & mask.bool()
    if is_weights is not None:
        per_token = per_token * is_weights
    kl = torch.zeros_like(logprobs)
    if ref_logprobs is not None:
        delta = ref_logprobs - logprobs
        kl = torch.exp(delta) - delta - 1
        per_token = per_token + beta * kl
    if entropy is not None and entropy_coef:
        per_token = per_token - entropy_coef * entropy
    normalization = grpo_normalization(loss_type, max_new_tokens)
    per_token = per_token * mask
    loss_sum = reduce_masked(per_token, mask, normalization, document_ids)
    denominator = normalization.denominator_of_mask(mask) or 1.0
    return GRPOLoss(loss_sum / denominator, loss_sum, per_token, clipped, kl * mask)


def sequence_logprobs(
    model: torch.nn.Module,
    batch: Batch,
    temperature: float,
    chunk_size: int = 512,
    with_entropy: bool = False,
    top_k: int = 0,
    top_p: float = 1.0,
) -> tuple[Tensor, Tensor | None, tuple[Tensor, ...]]:
    """[B, T] log-probabilities of the labels (0 where IGNORE) under the sampling distribution (temperature,
    then the engine's top-k / top-p truncation), [B, T] entropies when asked, router logits."""
    out = model.hidden_states(batch.input_ids, output_router_logits=True)
    mask = batch.labels != IGNORE
    hidden, targets = out.hidden_states[mask], batch.labels[mask]
    result = token_logprobs(
        hidden,
        model.lm_head.weight,
        targets,
        temperature,
        chunk_size or 512,
        with_entropy,
        top_k=top_k,
        top_p=top_p,
    )
    logp, entropy = result if with_entropy else (result, None)
    full = torch.zeros(batch.labels.shape, dtype=torch.float32, device=logp.device)
    full = full.masked_scatter(mask, logp)
    full_entropy = None
    if entropy is not None:
        full_entropy = torch.zeros_like(full).masked_scatter(mask, entropy)
    return full, full_entropy, out.router_logits


@register_loss("grpo")
def grpo_objective(
    loss_type: str = "grpo",
    epsilon: float = 0.2,
    epsilon_high: float | None = None,
    temperature: float = 1.0,
    beta: float = 0.0,
    entropy_coef: float = 0.0,
    chunk_size: int = 512,
    top_k: int = 0,
    top_p: float = 1.0,
    max_new_tokens: int | None = None,
) -> LossFn:
    """The trainer's ``LossFn``: reads the extras ``GRPORows`` writes (``advantage``, and when present
    ``old_logprob``, ``ref_logprob``, ``is_weight``); logs ``entropy``, ``kl``, ``clip_fraction`` as token means.
    Declares ``grpo_normalization(loss_type, max_new_tokens)`` to the trainer (``max_new_tokens``: dr_grpo's
    constant)."""
    normalization = grpo_normalization(loss_type, max_new_tokens)

    def loss(model: torch.nn.Module, batch: Batch) -> LossOutput:
        logp, entropy, router_logits = sequence_logprobs(
            model, batch, temperature, chunk_size, True, top_k, top_p
        )
        assert entropy is not None
        mask = batch.labels != IGNORE
        extras = batch.extras
        old = extras["old_logprob"] if "old_logprob" in extras else logp.detach()
        result = grpo_loss(
            logp, old, extras["advantage"], mask, loss_type=loss_type, epsilon=epsilon,
            epsilon_high=epsilon_high, ref_logprobs=extras.get("ref_logprob"), beta=beta,
            entropy=entropy if entropy_coef else entropy.detach(), entropy_coef=entropy_coef,
            is_weights=extras.get("is_weight"), max_new_tokens=max_new_tokens, document_ids=batch.document_ids,
        )  # fmt: skip
        metrics = {
            "entropy": (entropy.detach() * mask).sum(),
            "kl": result.kl.detach().sum(),
            "clip_fraction": result.clipped.sum().float(),
        }
        return LossOutput(result.loss_sum, router_logits, metrics)

    return with_normalization(loss, normalization)


def objective_of(grpo: GRPOConfig, config: Any) -> LossFn:
    """``grpo_objective`` with every knob of ``grpo`` (a ``GRPOConfig``) and the chunk size of the ``TrainConfig``."""
    return grpo_objective(
        grpo.loss_type, grpo.epsilon, grpo.epsilon_high, grpo.temperature, grpo.beta, grpo.entropy_coef,
        loss_chunk_size(config), grpo.top_k, grpo.top_p, grpo.max_new_tokens,
    )  # fmt: skip


# ------------------------------------------------------------------------------------------------------ tasks
def digits_items(count: int, split: str, seed: int = 0) -> list[Any]:
    """The built-in debug task: "reply with digits only", worded in several ways; graded by ``digits_only``."""
    from qwen3.world.items import Item

    openers = (
        "Reply with digits only.",
        "Answer using only digits.",
        "Write a number.",
        "Digits only, please.",
    )
    items = []
    for index in range(count):
        number = (seed * 7919 + index * 104729 + (split == "validation") * 15485863) % 100000
        text = f"{openers[index % len(openers)]} Item {number}."
        items.append(
            Item(family="digits", id=f"{split}-{index}", split=split,
                 messages=[{"role": "user", "content": text}], reference={"check": "digits_only"},
                 enable_thinking=False)
        )  # fmt: skip
    return items


def task_items(config: GRPOConfig, split: str, count: int, seed: int) -> list[Any]:
    if config.task == "digits":
        return digits_items(count, split, seed)
    try:
        from qwen3.world import generate
    except ImportError:
        raise SettingsError(
            f"grpo.task {config.task!r}: this version of qwen3.world has no generate()"
        ) from None
    try:
        return generate(config.task.split(":", 1)[1], split, count, seed=seed)
    except ValueError as err:
        raise SettingsError(f"grpo.task {config.task!r}: {err}") from None


# ------------------------------------------------------------------------------------------------ row source
class GRPORows:
    """The trainer's row source for GRPO (see the module docstring). ``bind(trainer)`` must be called once the
    trainer has built the policy; everything it saves is JSON (the current generation batch, the position in
    the query stream) so a resumed run repeats the uninterrupted one exactly."""

    def __init__(self, config: GRPOConfig, seed: int, train_items: list[Any], eval_items: list[Any]):
        if not train_items:
            raise SettingsError("grpo: no training items")
        self.config, self.seed = config, seed
        self.train_items, self.eval_items = train_items, eval_items
        self.reward_fn = weighted_reward(resolve_rewards(config.rewards), config.reward_weights)
        self.drawn = 0  # queries taken from the stream so far
        self.batches = 0  # generation batches made
        self.steps = 0  # optimizer steps completed
        self.rows: list[dict[str, Any]] = []  # the current generation batch
        self.batch_metrics: dict[str, float] = {}
        self.cursor = 0  # rows handed out from the current pass over the batch
        self.passes = 0  # passes (optimizer steps) made over the current batch
        self.trainer: Any = None
        self.engine: RolloutEngine | None = None
        self.reference: torch.nn.Module | None = None
        self.scorer: torch.nn.Module | None = None  # the module that recomputes old log-probabilities
        self.counter: ComputeCounter | None = None  # made by bind (it needs the model's size)
        self._compute_state: dict[str, Any] | None = None  # a checkpoint's counts, loaded into it by bind
        self._served_at = 0.0

    # -- set-up ----------------------------------------------------------------------------------------------
    def bind(self, trainer: Any) -> None:
        from qwen3.train import build, checkpoint

        config = self.config
        if trainer.rows_per_step != config.rollouts_per_step:
            raise SettingsError(
                f"global_batch_size {trainer.rows_per_step} must equal grpo.prompts_per_step x "
                f"grpo.num_generations = {config.rollouts_per_step}"
            )
        if config.prompts_per_step % trainer.env.world_size:
            raise SettingsError(
                f"grpo.prompts_per_step {config.prompts_per_step} must be a multiple of the world size "
                f"{trainer.env.world_size} (queries are sharded by rank)"
            )
        self.trainer = trainer
        sharded = trainer.env.distributed and trainer.config.distributed == "fsdp"
        policy_dtype = trainer.model.lm_head.weight.dtype
        dtype = policy_dtype if config.engine_dtype == "auto" else getattr(torch, config.engine_dtype)
        need_old = config.num_iterations > 1 or config.tis_cap is not None
        if sharded and dtype != policy_dtype and need_old:
            raise SettingsError(
                f"grpo.engine_dtype {config.engine_dtype!r} under distributed = 'fsdp': the old log-probabilities "
                f"(num_iterations > 1 or tis_cap) are taken with the engine's copy, which must then hold the "
                f"policy's {policy_dtype}; use engine_dtype = 'auto'"
            )
        copied = sharded or dtype != policy_dtype
        self.engine = RolloutEngine(
            inference_copy(trainer.model, trainer.env.device, dtype) if copied else trainer.model,
            trainer.tokenizer, source=trainer.model if copied else None, weights=config.engine_weights,
            max_num_seqs=config.max_num_seqs, seed=self.seed,
            max_model_len=min(trainer.model.config.max_position_embeddings,
                              config.max_prompt_tokens + config.max_new_tokens),
        )  # fmt: skip
        # Under FSDP2 the policy's own forward works only inside the train step; its copy holds the same weights.
        self.scorer = self.engine.model if sharded else trainer.model
        n = matmul_params(trainer.model.config)
        self.counter = ComputeCounter({"policy": n, **({"reference": n} if config.beta > 0 else {})})
        if self._compute_state is not None:
            self.counter.load_state_dict(self._compute_state)
        if config.beta > 0:
            init = trainer.config.init_from
            source = checkpoint.model_dir(checkpoint.resolve_init(init)) if init else None
            self.reference = build.build_model(
                trainer.config.model, trainer.env.device, trainer.config.data.seq_len, source
            ).eval()
            self.reference.requires_grad_(False)

    # -- RowSource -------------------------------------------------------------------------------------------
    def next_row(self) -> Row:
        if self.cursor == len(self.rows):
            if not self.rows or self.passes == self.config.num_iterations:
                self._new_batch()
            self.cursor = 0
            self.passes += 1
        row = self.rows[self.cursor]
        self.cursor += 1
        assert self.counter is not None
        self.counter.train("policy", len(row["input_ids"]))  # every rank draws the whole global batch
        if self.cursor == len(self.rows):
            self._served_at = time.perf_counter()
        return Row(row["input_ids"], row["labels"], None, dict(row["extras"]))

    def counters(self) -> dict[str, float]:
        """The step's metrics (called by the trainer after each optimizer step)."""
        self.steps += 1
        elapsed = time.perf_counter() - self._served_at
        tokens = sum(len(row["input_ids"]) for row in self.rows)
        record = dict(self.batch_metrics)
        record["update_tokens_per_s"] = tokens / elapsed if elapsed > 0 else 0.0
        if self.config.eval_every and self.steps % self.config.eval_every == 0 and self.eval_items:
            record["val_accuracy"] = self.evaluate()
        assert self.counter is not None
        record.update(self.counter.totals())
        return record

    def state_dict(self) -> dict[str, Any]:
        compute = self.counter.state_dict() if self.counter is not None else self._compute_state
        return {"drawn": self.drawn, "batches": self.batches, "steps": self.steps, "rows": self.rows,
                "batch_metrics": self.batch_metrics, "cursor": self.cursor, "passes": self.passes,
                "compute": compute}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in ("drawn", "batches", "steps", "cursor", "passes"):
            setattr(self, key, int(state[key]))
        self.rows, self.batch_metrics = list(state["rows"]), dict(state["batch_metrics"])
        self._compute_state = state.get("compute")
        if self.counter is not None and self._compute_state is not None:
            self.counter.load_state_dict(self._compute_state)

    # -- generation ------------------------------------------------------------------------------------------
    def _new_batch(self) -> None:
        assert self.engine is not None, "GRPORows.bind(trainer) was not called"
        self.engine.sync()
        config = self.config
        start, tokens_before = time.perf_counter(), self.engine.stats.tokens
        forwards_before = self.engine.forward_tokens
        kept: list[list[Rollout]] = []
        dropped: list[list[Rollout]] = []
        drawn_groups = 0
        for _ in range(1 + (config.filter_max_batches if config.dynamic_filtering else 0)):
            groups = self._sample_groups(config.prompts_per_step)
            drawn_groups += len(groups)
            for group in groups:
                varied = len({r.reward for r in group}) > 1
                (kept if varied or not config.dynamic_filtering else dropped).append(group)
            if len(kept) >= config.prompts_per_step:
                break
        kept = (kept + dropped)[: config.prompts_per_step]  # filled up with flat groups if sampling ran dry
        seconds = time.perf_counter() - start
        generated = self._gather_sum(self.engine.stats.tokens - tokens_before)
        assert self.counter is not None
        self.counter.forward("policy", int(self._gather_sum(self.engine.forward_tokens - forwards_before)))
        self.rows = self._rows(kept)
        self.batches += 1
        self.passes = 0
        rollouts = [r for group in kept for r in group]
        rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float64)
        self.batch_metrics = {
            "reward_mean": float(rewards.mean()),
            "reward_std": float(rewards.std()) if len(rewards) > 1 else 0.0,
            "accuracy": sum(r.correct for r in rollouts) / len(rollouts),
            "response_length": sum(len(r.token_ids) for r in rollouts) / len(rollouts),
            "truncated_fraction": sum(r.truncated for r in rollouts) / len(rollouts),
            "filtered_groups": float(drawn_groups - len([g for g in kept if len({r.reward for r in g}) > 1]))
            if config.dynamic_filtering else 0.0,
            "rollout_tokens_per_s": generated / seconds if seconds > 0 else 0.0,
        }  # fmt: skip

    def _sample_groups(self, count: int) -> list[list[Rollout]]:
        """``count`` queries from the stream, this rank's share generated and scored here, all ranks' gathered."""
        # prompts_per_step divides by the world size (bind): every rank an equal share, as GRPO's groups need.
        mine = shard(range(self.drawn, self.drawn + count), self.trainer.env)
        self.drawn += count
        items = [self._item(draw) for draw in mine]
        groups = self.engine.generate(
            [item.messages for item in items],
            self._sampling_params(),
            [rollout_seed(self.seed, draw, 0) for draw in mine],
            [self._thinking(item) for item in items],
            [item.tools for item in items],
        )
        for item, group in zip(items, groups):
            for rollout in group:
                self._score(item, rollout)
        return gather(groups, self.trainer.env)

    def _score(self, item: Any, rollout: Rollout) -> None:
        config = self.config
        rollout.reward = float(self.reward_fn(item, rollout))
        if config.overlong_buffer:
            over = len(rollout.token_ids) - (config.max_new_tokens - config.overlong_buffer)
            if over > 0:
                rollout.reward -= config.overlong_penalty * min(over / config.overlong_buffer, 1.0)
        rollout.correct = bool(is_correct(item, rollout))

    def _item(self, draw: int) -> Any:
        """The stream of queries: the training items in a fresh seeded permutation per epoch."""
        epoch, index = divmod(draw, len(self.train_items))
        order = torch.randperm(
            len(self.train_items), generator=torch.Generator().manual_seed(self.seed + epoch)
        )
        return self.train_items[int(order[index])]

    def _thinking(self, item: Any) -> bool | None:
        return (
            self.config.enable_thinking if self.config.enable_thinking is not None else item.enable_thinking
        )

    def _sampling_params(self, greedy: bool = False) -> Any:
        from qwen3.engine.sampling_params import SamplingParams

        config = self.config
        if greedy:
            return SamplingParams(n=1, temperature=0.0, max_tokens=config.max_new_tokens,
                                  thinking_budget=config.thinking_budget)  # fmt: skip
        return SamplingParams(
            n=config.num_generations, temperature=config.temperature, top_p=config.top_p, top_k=config.top_k,
            max_tokens=config.max_new_tokens, thinking_budget=config.thinking_budget,
        )  # fmt: skip

    # -- rows ------------------------------------------------------------------------------------------------
    def _rows(self, groups: list[list[Rollout]]) -> list[dict[str, Any]]:
        config = self.config
        rollouts = [r for group in groups for r in group]
        rewards = torch.tensor([r.reward for r in rollouts], dtype=torch.float64)
        advantages = group_advantages(rewards, config.num_generations, config.scale_rewards).tolist()
        rows = [_row(r, a, config.mask_truncated) for r, a in zip(rollouts, advantages)]
        self._add_logprobs(rows, rollouts)
        return rows

    @torch.no_grad()
    def _add_logprobs(self, rows: list[dict[str, Any]], rollouts: list[Rollout]) -> None:
        """Old (trainer, before the first update) and reference log-probabilities of this rank's training slice,
        gathered so every rank (and the checkpoint) holds the whole batch; engine-vs-trainer TIS weights."""
        config = self.config
        need_old = config.num_iterations > 1 or config.tis_cap is not None
        if not need_old and self.reference is None:
            return
        mine = shard(range(len(rows)), self.trainer.env)  # prompts_per_step whole groups: even shares
        computed: dict[str, list[list[float]]] = {}
        scored = sum(len(rows[i]["input_ids"]) for i in mine)
        assert self.scorer is not None and self.counter is not None
        if need_old:
            computed["old_logprob"] = self._logprobs(self.scorer, [rows[i] for i in mine])
            self.counter.forward("policy", int(self._gather_sum(scored)))
        if self.reference is not None:
            computed["ref_logprob"] = self._logprobs(self.reference, [rows[i] for i in mine])
            self.counter.forward("reference", int(self._gather_sum(scored)))
        for name, values in computed.items():
            for row, value in zip(rows, gather(values, self.trainer.env)):
                row["extras"][name] = value
        if config.tis_cap is not None:
            for row, rollout in zip(rows, rollouts):
                row["extras"]["is_weight"] = _tis_weights(row, rollout, config.tis_cap)

    def _logprobs(self, model: torch.nn.Module, rows: list[dict[str, Any]]) -> list[list[float]]:
        trainer = self.trainer
        size = trainer.config.micro_batch_size
        out: list[list[float]] = []
        autocast = torch.autocast(trainer.env.device.type, torch.bfloat16,
                                  enabled=trainer.config.precision == "bf16")  # fmt: skip
        for start in range(0, len(rows), size):
            chunk = [Row(r["input_ids"], r["labels"]) for r in rows[start : start + size]]
            batch = collate(chunk, trainer.pad_id).to(trainer.env.device)
            with autocast:
                logp, _, _ = sequence_logprobs(
                    model, batch, self.config.temperature, loss_chunk_size(trainer.config),
                    top_k=self.config.top_k, top_p=self.config.top_p,
                )  # fmt: skip
            out += [values[: len(r.labels)] for values, r in zip(logp.cpu().tolist(), chunk)]
        return out

    # -- validation ------------------------------------------------------------------------------------------
    def evaluate(self) -> float:
        """Greedy accuracy on the validation items (sharded by rank, counted over all)."""
        assert self.engine is not None
        self.engine.sync()
        env = self.trainer.env
        items = self.eval_items[env.rank :: env.world_size]
        groups = self.engine.generate(
            [item.messages for item in items], self._sampling_params(greedy=True), [0] * len(items),
            [self._thinking(item) for item in items], [item.tools for item in items],
        )  # fmt: skip
        correct = sum(is_correct(item, group[0]) for item, group in zip(items, groups))
        return self._gather_sum(correct) / len(self.eval_items)

    # -- collectives -----------------------------------------------------------------------------------------
    def _gather_sum(self, value: float) -> float:
        return float(sum(gather([value], self.trainer.env)))


def inference_copy(model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.nn.Module:
    """A plain module of ``model``'s architecture in ``dtype`` for the engine to own (FSDP2, or an engine dtype
    other than the policy's); its initial weights are overwritten by ``RolloutEngine.sync``, which loads the
    policy's full state into it before every generation batch."""
    from qwen3.model.checkpoint import init_model

    copy = init_model(model.config, dtype, device).requires_grad_(False)  # RoPE's inv_freq stays fp32
    copy.generation_config = model.generation_config
    return copy


def _row(rollout: Rollout, advantage: float, mask_truncated: bool) -> dict[str, Any]:
    """input = prompt + completion minus its last token; label = the completion token each position predicts
    (IGNORE over the prompt, for forced tokens, and everywhere in a truncated rollout with ``mask_truncated``)."""
    prompt, completion = rollout.prompt_ids, rollout.token_ids
    masked = mask_truncated and rollout.truncated
    labels = [IGNORE] * (len(prompt) - 1) + [
        IGNORE if forced or masked else token for token, forced in zip(completion, rollout.forced)
    ]
    padding = [0.0] * (len(prompt) - 1)
    return {
        "input_ids": prompt + completion[:-1],
        "labels": labels,
        "extras": {
            "advantage": [advantage] * len(labels),
            "rollout_logprob": padding + list(rollout.logprobs),
        },
    }


def _tis_weights(row: dict[str, Any], rollout: Rollout, cap: float) -> list[float]:
    old, engine = row["extras"]["old_logprob"], row["extras"]["rollout_logprob"]
    return [
        min(math.exp(o - e), cap) if label != IGNORE else 0.0
        for o, e, label in zip(old, engine, row["labels"])
    ]


# ------------------------------------------------------------------------------------------------------ runner
def split_table(table: dict[str, Any]) -> tuple[GRPOConfig, dict[str, Any]]:
    """A preset's ``[grpo]`` table as a ``GRPOConfig``, and the rest (a ``TrainConfig`` table) with the global
    batch set to one generation batch."""
    from qwen3.train.settings import from_table

    rest = copy.deepcopy(table)
    grpo = from_table(GRPOConfig, rest.pop("grpo", {}), "grpo")
    given = rest.get("global_batch_size")
    if given is not None and given != grpo.rollouts_per_step:
        raise SettingsError(
            f"global_batch_size {given} must equal grpo.prompts_per_step x grpo.num_generations = "
            f"{grpo.rollouts_per_step} (or be left out)"
        )
    rest["global_batch_size"] = grpo.rollouts_per_step
    rest.setdefault("stage", "grpo")
    return grpo, rest


def loss_chunk_size(config: Any) -> int:
    """Rows per chunk of the LM head in the loss: ``[loss.options] chunk_size`` (512 when not set)."""
    loss = getattr(config, "loss", None)
    if loss is not None and not isinstance(loss, str):
        return int(loss.options.get("chunk_size", 512))
    return int(getattr(config, "loss_chunk_size", 512))


def make_trainer(
    table: dict[str, Any], *, resume: bool = False, overwrite: bool = False, env: Any = None,
    progress: bool | None = None,
) -> Any:  # fmt: skip
    """A ``Trainer`` running GRPO from a preset table (``[grpo]`` + ``TrainConfig`` keys), ready to ``fit()``."""
    from qwen3.train.config import TrainConfig
    from qwen3.train.trainer import Trainer

    grpo, rest = split_table(table)
    config = TrainConfig.from_dict(rest)
    rows = GRPORows(
        grpo, config.seed, task_items(grpo, "train", grpo.train_prompts, config.seed),
        task_items(grpo, "validation", grpo.eval_prompts, config.seed) if grpo.eval_prompts else [],
    )  # fmt: skip
    trainer = Trainer(config, rows=rows, loss_fn=objective_of(grpo, config), resume=resume, overwrite=overwrite, env=env,
                      progress=progress)  # fmt: skip
    rows.bind(trainer)
    return trainer


def check_grpo(table: dict[str, Any]) -> list[Any]:
    """Parse a GRPO preset without doing any work: [its TrainConfig] (bad ``[grpo]`` values raise here)."""
    from qwen3.train.config import TrainConfig

    return [TrainConfig.from_dict(split_table(table)[1])]


@register_stage("grpo", check=check_grpo, description="reasoning RL with GRPO (report section 4.2)")
def run_grpo(table: dict[str, Any], **options: Any) -> Any:
    """Train with GRPO (``qwen3 train grpo-debug``); ``options``: resume, overwrite, env, progress. Returns the
    ``TrainResult``."""
    return make_trainer(table, **options).fit()
