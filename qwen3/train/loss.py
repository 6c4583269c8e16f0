"""Training losses. A loss function maps (model, micro-batch) to a ``LossOutput`` whose ``loss_sum`` is SUMMED
over the micro-batch's targets; the trainer divides by the number of targets in the whole global batch (all
micro-batches, all ranks), so gradient accumulation and world size do not change the loss or its gradient.

``loss_type`` strings name the registered loss factories (``LOSSES``); a stage adds its own with
``register_loss``. "causal_lm" is next-token cross-entropy over targets != IGNORE (pre-training, and SFT with
assistant-only targets). Its LM head + cross-entropy runs fused in chunks of rows (``linear_cross_entropy``):
only rows with a target go through the head, each chunk's logits are turned into gradients at once and dropped,
so the [tokens, vocab] logits never exist whole (bench/bench_train.py measures the speed; docs/train.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from qwen3.train.batch import IGNORE, Batch


@dataclass
class LossOutput:
    loss_sum: Tensor  # scalar, summed over this micro-batch's targets
    router_logits: tuple[Tensor, ...] = ()  # MoE: one [tokens, E] per sparse layer (the trainer adds the LBL)
    metrics: dict[str, Tensor] = field(default_factory=dict)  # extra sums to log (divided like the loss)


LossFn = Callable[[torch.nn.Module, Batch], LossOutput]
LOSSES: dict[str, Callable[..., LossFn]] = {}


def register_loss(name: str) -> Callable[[Callable[..., LossFn]], Callable[..., LossFn]]:
    def add(factory: Callable[..., LossFn]) -> Callable[..., LossFn]:
        LOSSES[name] = factory
        return factory

    return add


def make_loss(loss_type: str, **options: object) -> LossFn:
    if loss_type not in LOSSES:
        raise ValueError(f"loss_type {loss_type!r} is not one of {', '.join(LOSSES)}")
    return LOSSES[loss_type](**options)


@register_loss("causal_lm")
def causal_lm(chunk_size: int = 512) -> LossFn:
    def loss(model: torch.nn.Module, batch: Batch) -> LossOutput:
        out = model.hidden_states(batch.input_ids, document_ids=batch.document_ids, output_router_logits=True)
        hidden = out.hidden_states.flatten(0, 1)
        labels = batch.labels.flatten()
        if chunk_size:
            loss_sum = linear_cross_entropy(hidden, model.lm_head.weight, labels, chunk_size)
        else:
            logits = model.lm_head(hidden)
            loss_sum = F.cross_entropy(logits.float(), labels, ignore_index=IGNORE, reduction="sum")
        return LossOutput(loss_sum, out.router_logits)

    return loss


def linear_cross_entropy(hidden: Tensor, weight: Tensor, labels: Tensor, chunk_size: int = 512) -> Tensor:
    """sum_i CE(hidden[i] @ weight.T, labels[i]) over labels != IGNORE, equal to
    ``F.cross_entropy(F.linear(hidden, weight), labels, ignore_index=IGNORE, reduction="sum")``.

    Under autocast the matmuls run in the autocast dtype and softmax in fp32, as autocast would do unfused."""
    return _LinearCrossEntropy.apply(hidden, weight, labels, chunk_size)


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
                grad = grad.to(compute)
                grad_hidden[chunk] = (grad @ w).to(hidden.dtype)
                if compute == torch.float32:
                    grad_weight.addmm_(grad.T, h)
                else:
                    grad_weight += (grad.T @ h).float()
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_output: Tensor):  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_output, grad_weight * grad_output, None, None
