"""Per-token log-probabilities (and entropies) of targets under the LM head, chunked, with a backward.

RL and distillation losses need ``log p(target)`` of every completion token (importance ratios, KL to a reference,
teacher matching), not only the cross-entropy sum that ``linear_cross_entropy`` returns. ``token_logprobs`` gives
them per token without ever holding the whole ``[N, V]`` logits: the forward keeps only each row's log-sum-exp
(and entropy), the backward recomputes one chunk of logits at a time and turns the incoming per-token gradients
into gradients of the hidden states and of the head. Where the fp32 log-probabilities of all rows fit in
``save_limit`` bytes (256 MiB by default: a micro-batch of a few thousand tokens of an 8k vocabulary) the forward
keeps them instead and the backward skips the recomputation, one [rows, V] x H matrix product of four. An output
that takes no part in the loss (the entropy, when only logged) gets no gradient work.

The distribution is ``softmax(hidden @ weight.T / temperature)`` in fp32 (matmuls in the autocast dtype under
autocast), the one the engine samples from in ``logprobs_mode="processed"``. With ``top_k`` / ``top_p`` it is
truncated and renormalised by the engine's own rule (``qwen3.engine.sampler.filtered_logits``: top-k, then top-p
over the top-k renormalised), applied to each row's logits here; the target is always kept (the engine drew it,
so it was in the engine's kept set; only a tie at the boundary, between the engine's float64 sums and these fp32
ones, could differ). The kept set is piecewise constant: no gradient flows through it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qwen3.train.batch import IGNORE

SAVE_LIMIT = 256 << 20  # bytes of fp32 log-probabilities the forward may keep for the backward


def token_logprobs(
    hidden: Tensor,
    weight: Tensor,
    targets: Tensor,
    temperature: float = 1.0,
    chunk_size: int = 512,
    with_entropy: bool = False,
    *,
    top_k: int = 0,
    top_p: float = 1.0,
    save_limit: int = SAVE_LIMIT,
) -> Tensor | tuple[Tensor, Tensor]:
    """fp32 ``[N]`` log p(targets[i] | hidden[i]) (0 where the target is ``IGNORE``) for ``hidden [N, H]``,
    ``weight [V, H]``; with ``with_entropy`` also the ``[N]`` entropy of each row's distribution (0 at IGNORE).
    Both are differentiable with respect to ``hidden`` and ``weight``. ``top_k`` (0: off) / ``top_p`` (1: off)
    truncate each row's distribution as the engine's sampler does; ``save_limit``: bytes of log-probabilities
    kept for the backward instead of recomputing them (0: always recompute; module docstring)."""
    if hidden.dim() != 2 or weight.dim() != 2 or hidden.shape[1] != weight.shape[1]:
        raise ValueError(f"token_logprobs: hidden {tuple(hidden.shape)} and weight {tuple(weight.shape)} "
                         "must be [N, H] and [V, H]")  # fmt: skip
    if targets.shape != hidden.shape[:1]:
        raise ValueError(f"token_logprobs: targets {tuple(targets.shape)} must be [{hidden.shape[0]}]")
    if not temperature > 0:
        raise ValueError(f"token_logprobs: temperature must be > 0, got {temperature}")
    if chunk_size <= 0:
        raise ValueError(f"token_logprobs: chunk_size must be > 0, got {chunk_size}")
    if not (isinstance(top_k, int) and top_k >= 0) or not 0 < top_p <= 1:
        raise ValueError(
            f"token_logprobs: top_k must be an integer >= 0 and top_p in (0, 1], got {top_k}, {top_p}"
        )
    truncation = (int(top_k), float(top_p)) if (0 < top_k < weight.shape[0] or top_p < 1.0) else None
    logp, entropy = _TokenLogprobs.apply(
        hidden, weight, targets, float(temperature), int(chunk_size), truncation, int(save_limit)
    )
    return (logp, entropy) if with_entropy else logp


def _compute_dtype(hidden: Tensor) -> torch.dtype:
    device = hidden.device.type
    return torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype


def _chunk_scores(
    h: Tensor, w: Tensor, temperature: float, targets: Tensor, truncation: tuple[int, float] | None
) -> Tensor:
    """logits / temperature of one chunk, in fp32 (fp64 for fp64 inputs, which gradcheck uses); with a
    truncation, the tokens the engine's sampler would drop at -inf (the targets always kept)."""
    logits = (h @ w.T).to(torch.promote_types(h.dtype, torch.float32))
    if temperature != 1.0:
        logits = logits.div_(temperature)
    if truncation is None:
        return logits
    return logits.masked_fill_(~_kept(logits, targets, *truncation), float("-inf"))


def _kept(scores: Tensor, targets: Tensor, top_k: int, top_p: float) -> Tensor:
    """[rows, V] mask of the tokens ``filtered_logits`` keeps (temperature already applied) plus the targets."""
    from qwen3.engine.sampler import filtered_logits
    from qwen3.engine.sampling_params import SamplingParams

    params = [SamplingParams(temperature=1.0, top_k=top_k, top_p=top_p)] * scores.shape[0]
    values, indices = filtered_logits(scores, params)
    keep = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
    if indices is None:
        keep[:] = True
    else:
        keep.scatter_(1, indices, values.isfinite())
    keep[torch.arange(scores.shape[0], device=scores.device), targets] = True
    return keep


class _TokenLogprobs(torch.autograd.Function):
    """Forward: per row, z = logits / T, log p = z - logsumexp(z), H = -sum_j p_j log p_j.
    Backward (recomputing z chunk by chunk): d log p_t / dz = onehot_t - p and dH / dz = -p (log p + H); both go
    through 1/T to the logits, then to hidden (@ weight) and weight (grad.T @ hidden)."""

    @staticmethod
    def forward(ctx, hidden, weight, targets, temperature, chunk_size, truncation, save_limit):  # type: ignore[override]
        ctx.set_materialize_grads(False)  # an unused output (the logged entropy) gets None: no work for it
        compute = _compute_dtype(hidden)
        rows = (targets != IGNORE).nonzero().squeeze(1)
        keep = any(ctx.needs_input_grad[:2]) and len(rows) * weight.shape[0] * 4 <= save_limit
        kept: list[Tensor] = []
        wide = torch.promote_types(compute, torch.float32)
        logp = torch.zeros(hidden.shape[0], dtype=wide, device=hidden.device)
        entropy = torch.zeros_like(logp)
        lse = torch.zeros_like(logp)  # per row, so the backward needs one exp pass, not two
        with torch.no_grad(), torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(compute)
            for chunk in rows.split(chunk_size):
                z = _chunk_scores(hidden[chunk].to(compute), w, temperature, targets[chunk], truncation)
                # One exp pass: e = exp(z - max), lse = max + log sum e, p = e / sum e.
                peak = z.amax(dim=-1, keepdim=True)
                probs = (z - peak).exp_()
                total = probs.sum(dim=-1, keepdim=True)
                norm = peak + total.log()
                lse[chunk] = norm[:, 0]
                log_probs = z.sub_(norm)
                logp[chunk] = log_probs.gather(1, targets[chunk, None])[:, 0]
                # -sum p log p (not lse - sum p z, which cancels badly in fp32); 0 log 0 = 0 where truncated
                entropy[chunk] = -probs.div_(total).mul_(log_probs).nan_to_num_(nan=0.0).sum(dim=-1)
                if keep:
                    kept.append(log_probs)
        ctx.save_for_backward(hidden, weight, targets, rows, entropy, lse)
        ctx.kept = kept if keep else None  # consumed by the (single) backward
        ctx.temperature, ctx.chunk_size, ctx.compute = temperature, chunk_size, compute
        ctx.truncation = truncation
        return logp, entropy

    @staticmethod
    def backward(ctx, grad_logp, grad_entropy):  # type: ignore[override]
        hidden, weight, targets, rows, entropy, lse = ctx.saved_tensors
        temperature, compute = ctx.temperature, ctx.compute
        grad_hidden = torch.zeros_like(hidden) if ctx.needs_input_grad[0] else None
        grad_weight = (
            torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
            if ctx.needs_input_grad[1]
            else None
        )
        if grad_logp is None:
            grad_logp = torch.zeros_like(entropy)
        kept, ctx.kept = ctx.kept, None
        with torch.no_grad(), torch.autocast(hidden.device.type, enabled=False):
            w = weight.to(compute)
            for index, chunk in enumerate(rows.split(ctx.chunk_size)):
                h = hidden[chunk].to(compute)
                if kept is not None:
                    log_probs = kept[index]
                else:
                    log_probs = _chunk_scores(h, w, temperature, targets[chunk], ctx.truncation)
                    log_probs.sub_(lse[chunk, None])
                probs = log_probs.exp()
                # d/dz of  g_lp * log p_t  +  g_H * H  =  -p (g_lp + g_H (log p + H))  +  g_lp onehot_t
                if grad_entropy is not None:
                    weights = log_probs.add_(entropy[chunk, None]).mul_(grad_entropy[chunk, None])
                    grad = probs.mul_(weights.add_(grad_logp[chunk, None])).nan_to_num_(nan=0.0).neg_()
                else:
                    grad = probs.mul_(-grad_logp[chunk, None])
                grad[torch.arange(len(chunk), device=grad.device), targets[chunk]] += grad_logp[chunk]
                if temperature != 1.0:
                    grad.div_(temperature)
                grad = grad.to(compute)
                if grad_hidden is not None:
                    grad_hidden[chunk] = (grad @ w).to(hidden.dtype)
                if grad_weight is not None:
                    grad_weight += (grad.T @ h).float()
        return (
            grad_hidden,
            None if grad_weight is None else grad_weight.to(weight.dtype),
            None,
            None,
            None,
            None,
            None,
        )
