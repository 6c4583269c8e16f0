"""Training losses. A loss function maps (model, micro-batch) to a ``LossOutput`` whose ``loss_sum`` is a SUM over
the micro-batch; the trainer divides it by a denominator computed over the whole global batch (all micro-batches,
all ranks) before any backward, so gradient accumulation and world size do not change the loss or its gradient.

Which denominator is the loss's choice, its ``normalization`` attribute (a ``Normalization``; default "tokens"):

- "tokens": the number of target tokens (labels != IGNORE). SFT, pre-training, DAPO's token-level mean.
- "sequences": the number of sequences with a target (a packed row holds one per document id). The loss sums each
  sequence's own token mean (``reduce_tokens`` does it), so the result is GRPO's mean of per-sequence means.
- "constant": sequences x ``length`` (Dr. GRPO, Liu et al. 2025, arXiv 2503.20783: a fixed generation budget
  instead of each response's length, which removes the length bias). The loss sums over tokens.

``allow_empty``: a global batch with no target at all is a step with zero loss and zero gradient instead of an
error (RL: every rollout of the batch masked out, e.g. all truncated with ``mask_truncated``); SFT keeps the error,
which there means broken data.

``[loss] type`` names a registered factory (``LOSSES``; a stage adds its own with ``register_loss``) and
``[loss.options]`` its keyword arguments, checked against the factory's signature (``check_loss_options``).
"causal_lm" is next-token cross-entropy over targets != IGNORE (pre-training, and SFT with assistant-only
targets). Its LM head + cross-entropy runs fused in chunks of rows (``linear_cross_entropy``):
only rows with a target go through the head, each chunk's logits are turned into gradients at once and dropped,
so the [tokens, vocab] logits never exist whole (bench/bench_train.py measures the speed; docs/train.md).
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from qwen3.train.batch import IGNORE, Batch, Row
from qwen3.train.settings import SettingsError, convert_value

NORMALIZATIONS = ("tokens", "sequences", "constant")


@dataclass
class LossOutput:
    loss_sum: Tensor  # scalar, summed over this micro-batch's targets
    router_logits: tuple[Tensor, ...] = ()  # MoE: one [tokens, E] per sparse layer (the trainer adds the LBL)
    metrics: dict[str, Tensor] = field(default_factory=dict)  # sums over target tokens, logged as token means


LossFn = Callable[[torch.nn.Module, Batch], LossOutput]
LOSSES: dict[str, Callable[..., LossFn]] = {}


@dataclass(frozen=True)
class Normalization:
    """What a loss's sum is divided by (module docstring). ``length``: the per-sequence constant of "constant";
    ``allow_empty``: a batch without targets is a zero step, not an error."""

    kind: str = "tokens"
    length: int | None = None
    allow_empty: bool = False

    def __post_init__(self) -> None:
        if self.kind not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {', '.join(NORMALIZATIONS)}, got {self.kind!r}")
        if (self.kind == "constant") != (self.length is not None):
            raise ValueError("normalization 'constant' needs a length > 0 (and only it takes one)")
        if self.length is not None and (not isinstance(self.length, int) or self.length <= 0):
            raise ValueError(f"normalization length must be an integer > 0, got {self.length!r}")

    def denominator(self, rows: Sequence[Row]) -> float:
        """The global batch's denominator (every rank holds the whole global batch's rows)."""
        return self._of(sum(row.num_targets for row in rows), sum(count_sequences(row) for row in rows))

    def denominator_of_mask(self, mask: Tensor) -> float:
        """The denominator of one batch given as a ``[B, T]`` target mask, one sequence per row."""
        return self._of(int(mask.sum()), int(mask.bool().any(dim=-1).sum()))

    def _of(self, tokens: int, sequences: int) -> float:
        return float(tokens if self.kind == "tokens" else sequences * (self.length or 1))


TOKENS = Normalization()


def count_sequences(row: Row) -> int:
    """Sequences of ``row`` with at least one target: its documents when packed, else the row itself."""
    if row.document_ids is None:
        return int(row.num_targets > 0)
    return len({doc for doc, label in zip(row.document_ids, row.labels) if label != IGNORE})


def normalization_of(loss_fn: LossFn) -> Normalization:
    return getattr(loss_fn, "normalization", TOKENS)


def with_normalization(loss_fn: LossFn, normalization: Normalization) -> LossFn:
    """Mark ``loss_fn`` (a function or callable object) with how the trainer must normalise its sum."""
    loss_fn.normalization = normalization  # type: ignore[attr-defined]
    return loss_fn


def reduce_tokens(values: Tensor, batch: Batch, normalization: Normalization = TOKENS) -> Tensor:
    """The micro-batch sum of per-token ``values [B, T]`` over targets that ``normalization`` expects: a plain sum,
    or for "sequences" the sum over sequences (row x document id) of each sequence's mean."""
    return reduce_masked(values, batch.labels != IGNORE, normalization, batch.document_ids)


def reduce_masked(
    values: Tensor, mask: Tensor, normalization: Normalization = TOKENS, document_ids: Tensor | None = None
) -> Tensor:
    """``reduce_tokens`` with the targets given as a ``[B, T]`` mask (and optional document ids)."""
    mask = mask.bool()
    if normalization.kind != "sequences":
        return (values * mask).sum()
    rows = torch.arange(mask.shape[0], device=mask.device)[:, None].expand_as(mask)
    documents = document_ids if document_ids is not None else torch.zeros_like(mask, dtype=torch.long)
    keys = rows[mask] * (int(documents.max()) + 2) + documents[mask] + 1
    _, sequence = torch.unique(keys, return_inverse=True)
    count = int(sequence.max()) + 1 if sequence.numel() else 0
    sums = torch.zeros(count, dtype=values.dtype, device=values.device).index_add(0, sequence, values[mask])
    lengths = torch.bincount(sequence, minlength=count).to(values.dtype)
    return (sums / lengths).sum()


def register_loss(name: str) -> Callable[[Callable[..., LossFn]], Callable[..., LossFn]]:
    def add(factory: Callable[..., LossFn]) -> Callable[..., LossFn]:
        LOSSES[name] = factory
        return factory

    return add


def loss_factory(loss_type: str) -> Callable[..., LossFn]:
    """The registered factory of ``loss_type`` (importing qwen3.train.plugins' modules first if it is not
    registered: stages register their losses)."""
    if loss_type not in LOSSES:
        from qwen3.train.plugins import import_plugins

        import_plugins()
    if loss_type not in LOSSES:
        raise SettingsError(f"loss.type {loss_type!r} is not one of {', '.join(LOSSES)}")
    return LOSSES[loss_type]


def check_loss_options(loss_type: str, options: dict[str, Any]) -> dict[str, Any]:
    """``options`` checked against the factory's keyword arguments (names and annotated types); returns them
    converted (an int where a float is declared becomes a float). Raises ``SettingsError`` naming the key."""
    factory = loss_factory(loss_type)
    parameters = inspect.signature(factory).parameters
    hints = typing.get_type_hints(factory)
    checked = {}
    for name, value in options.items():
        if name not in parameters or parameters[name].kind not in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            known = ", ".join(parameters) or "none"
            raise SettingsError(
                f"loss.options.{name}: not an option of loss {loss_type!r} (options: {known})"
            )
        where = f"loss.options.{name}"
        checked[name] = convert_value(hints[name], value, where) if name in hints else value
    return checked


def make_loss(loss_type: str, **options: Any) -> LossFn:
    """The loss ``loss_type`` built with ``options`` (checked first); bad values raise ``SettingsError``."""
    checked = check_loss_options(loss_type, options)
    try:
        return loss_factory(loss_type)(**checked)
    except ValueError as err:
        raise SettingsError(f"loss {loss_type!r}: {err}") from None


@register_loss("causal_lm")
def causal_lm(chunk_size: int = 512, normalization: str = "tokens", length: int | None = None) -> LossFn:
    """Next-token cross-entropy. ``chunk_size`` rows per chunk of the fused head + loss (0: plain torch, the
    reference path); ``normalization`` / ``length``: see ``Normalization`` ("sequences" averages each sequence
    first, as some SFT recipes do)."""
    if not isinstance(chunk_size, int) or chunk_size < 0:
        raise ValueError(f"chunk_size must be an integer >= 0, got {chunk_size!r}")
    norm = Normalization(normalization, length)

    def loss(model: torch.nn.Module, batch: Batch) -> LossOutput:
        out = model.hidden_states(batch.input_ids, document_ids=batch.document_ids, output_router_logits=True)
        hidden = out.hidden_states.flatten(0, 1)
        labels = batch.labels.flatten()
        if norm.kind == "sequences":
            from qwen3.train.logprobs import token_logprobs

            logp = token_logprobs(hidden, model.lm_head.weight, labels, 1.0, chunk_size or 512)
            loss_sum = reduce_tokens(-logp.view_as(batch.labels), batch, norm)
        elif chunk_size:
            loss_sum = linear_cross_entropy(hidden, model.lm_head.weight, labels, chunk_size)
        else:
            logits = model.lm_head(hidden)
            loss_sum = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="sum")
        return LossOutput(loss_sum, out.router_logits)

    return with_normalization(loss, norm)


def linear_cross_entropy(hidden: Tensor, weight: Tensor, labels: Tensor, chunk_size: int = 512) -> Tensor:
    """sum_i CE(hidden[i] @ weight.T, labels[i]) over labels != IGNORE, equal to
    ``F.cross_entropy(F.linear(hidden, weight), labels, ignore_index=IGNORE, reduction="sum")``.

    Under autocast the matmuls run in the autocast dtype and softmax in fp32, as autocast would do unfused."""
    return _LinearCrossEntropy.apply(hidden, weight, labels, chunk_size)


def add_head_grads(
    grad: Tensor, h: Tensor, w: Tensor, grad_hidden: Tensor, rows: Any, grad_weight: Tensor
) -> None:
    """One chunk's share of a fused LM-head loss's gradients, given ``grad`` wrt its logits (``h @ w.T``):
    ``grad_hidden[rows] = grad @ w`` and ``grad_weight += grad.T @ h`` (accumulated in fp32)."""
    grad_hidden[rows] = (grad @ w).to(grad_hidden.dtype)
    if grad.dtype == torch.float32:
        grad_weight.addmm_(grad.T, h)
    else:
        grad_weight += (grad.T @ h).float()


class _LinearCrossEntropy(torch.autograd.Function):
    """Forward computes the loss and both gradients chunk by chunk (grad of CE wrt logits = softmax - onehot);
    backward only scales them by the incoming gradient."""

    @staticmethod
    def forward(ctx, hidden: Tensor, weight: Tensor, labels: Tensor, chunk_size: int) -> Tensor:  # type: ignore[override]
        device = hidden.device.type
        compute = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        rows = (labels != IGNORE).nonzero().squeeze(1)
        grad_hidden = torch.zeros_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        with torch.autocast(device, enabled=False):
            w = weight.to(compute)
            for chunk in rows.split(chunk_size):
                h = hidden[chunk].to(compute)
                target = labels[chunk]
                logits = (h @ w.T).float()
                target_logit = logits.gather(1, target[:, None])
                # Softmax in place (one pass fewer than logsumexp + exp): CE = log sum exp(l - max) + max - l_t.
                peak = logits.amax(dim=-1, keepdim=True)
                grad = logits.sub_(peak).exp_()
                norm = grad.sum(dim=-1, keepdim=True)
                total += (norm.log() + peak - target_logit).sum()
                grad.div_(norm)
                grad[torch.arange(len(chunk), device=grad.device), target] -= 1.0
                add_head_grads(grad.to(compute), h, w, grad_hidden, chunk, grad_weight)
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_output, grad_weight * grad_output, None, None
