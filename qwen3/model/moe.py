"""Qwen3 sparse MoE block (report §2: 128 experts, 8 active, no shared experts) and the load-balancing losses
(the global-batch loss of Qiu et al. 2025, arXiv 2501.11873, that §2 names; the Switch-Transformer auxiliary loss
of transformers' Qwen3-MoE).

Routing: router logits in the model dtype, softmax over all experts in fp32, top-k, renormalise the k weights when
``norm_topk_prob``, cast back. No shared expert, no capacity limit, no dropped tokens. Experts are stored stacked
(``gate_proj``/``up_proj`` [E, I, H], ``down_proj`` [E, H, I]); tokens are sorted by expert so that each expert
runs one matmul per projection over all its tokens ("grouped_mm": one ``torch._grouped_mm`` call per projection
for all experts; "loop": a Python loop over the experts that received tokens). "reference" is the plain
mask-per-expert formulation the others are tested against.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

MOE_IMPLS = ("auto", "grouped_mm", "loop", "reference")


def route(router_logits: Tensor, top_k: int, normalize: bool) -> tuple[Tensor, Tensor]:
    """[N, E] logits -> (weights [N, k] in the logits' dtype, expert indices [N, k])."""
    probs = F.softmax(router_logits, dim=-1, dtype=torch.float32)
    weights, experts = probs.topk(top_k, dim=-1)
    if normalize:
        weights = weights / weights.sum(dim=-1, keepdim=True)
    return weights.to(router_logits.dtype), experts


class Experts(nn.Module):
    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.num_experts = num_experts
        self.gate_proj = nn.Parameter(torch.empty(num_experts, intermediate_size, hidden_size))
        self.up_proj = nn.Parameter(torch.empty(num_experts, intermediate_size, hidden_size))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))
        self.impl = "auto"

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, impl={self.impl!r}"

    def forward(self, x: Tensor, weights: Tensor, experts: Tensor) -> Tensor:
        """x [N, H]; weights, experts [N, k] -> sum_j weights_j * Expert_{experts_j}(x), [N, H]."""
        impl = resolve_moe_impl(self.impl, x)
        if impl == "reference":
            return self._reference(x, weights, experts)
        top_k = experts.shape[1]
        order = experts.reshape(-1).argsort(stable=True)  # (token, slot) pairs grouped by expert
        counts = torch.bincount(experts.reshape(-1), minlength=self.num_experts)
        tokens = order // top_k
        grouped = x[tokens]
        if impl == "grouped_mm":
            out = self._grouped_mm(grouped, counts)
        else:
            out = self._loop(grouped, counts)
        out = out * weights.reshape(-1)[order].unsqueeze(-1)
        return torch.zeros_like(x).index_add_(0, tokens, out)

    def _grouped_mm(self, grouped: Tensor, counts: Tensor) -> Tensor:
        offsets = counts.cumsum(0).to(torch.int32)
        gate = torch._grouped_mm(grouped, self.gate_proj.transpose(1, 2), offs=offsets)
        up = torch._grouped_mm(grouped, self.up_proj.transpose(1, 2), offs=offsets)
        return torch._grouped_mm(F.silu(gate) * up, self.down_proj.transpose(1, 2), offs=offsets)

    def _loop(self, grouped: Tensor, counts: Tensor) -> Tensor:
        pieces = []
        for expert, segment in enumerate(grouped.split(counts.tolist())):
            if segment.shape[0]:
                pieces.append(self._expert(expert, segment))
        return torch.cat(pieces) if pieces else grouped.new_zeros(grouped.shape)

    def _expert(self, expert: int, x: Tensor) -> Tensor:
        hidden = F.silu(F.linear(x, self.gate_proj[expert])) * F.linear(x, self.up_proj[expert])
        return F.linear(hidden, self.down_proj[expert])

    def _reference(self, x: Tensor, weights: Tensor, experts: Tensor) -> Tensor:
        out = torch.zeros_like(x)
        for expert in range(self.num_experts):
            token, slot = torch.where(experts == expert)
            if token.numel():
                out.index_add_(0, token, self._expert(expert, x[token]) * weights[token, slot, None])
        return out


def resolve_moe_impl(impl: str, x: Tensor) -> str:
    """The kernel for ``impl``: "auto" is grouped_mm on the CPU (measured: bench/bench_moe.py, docs/model.md) and the expert loop
    elsewhere: torch._grouped_mm on CUDA needs bf16 and sm90+ and has not been measured here."""
    if impl not in MOE_IMPLS:
        raise ValueError(f"moe_impl {impl!r} is not one of {MOE_IMPLS}")
    if impl != "auto":
        return impl
    return "grouped_mm" if x.device.type == "cpu" and hasattr(torch, "_grouped_mm") else "loop"


class SparseMoeBlock(nn.Module):
    def __init__(
        self, hidden_size: int, num_experts: int, top_k: int, intermediate_size: int, norm_topk_prob: bool
    ):
        super().__init__()
        self.top_k = top_k
        self.norm_topk_prob = norm_topk_prob
        self.gate = nn.Linear(hidden_size, num_experts, bias=False)  # the router
        self.experts = Experts(num_experts, hidden_size, intermediate_size)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """x [B, T, H] -> (output [B, T, H], router logits [B*T, E])."""
        flat = x.reshape(-1, x.shape[-1])
        router_logits = self.gate(flat)
        weights, experts = route(router_logits, self.top_k, self.norm_topk_prob)
        return self.experts(flat, weights, experts).view_as(x), router_logits


# ----- load-balancing losses -----
def _selection_stats(
    router_logits: Sequence[Tensor], num_experts: int, top_k: int, attention_mask: Tensor | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Per layer: how many tokens picked each expert in their top-k ([L, E], no grad), the summed softmax
    probabilities ([L, E], differentiable), and the number of tokens counted (padding excluded)."""
    device = router_logits[0].device
    valid = None if attention_mask is None else attention_mask.reshape(-1).to(device, torch.float32)
    counts, prob_sums = [], []
    for logits in router_logits:
        probs = F.softmax(logits, dim=-1, dtype=torch.float32)
        chosen = probs.topk(top_k, dim=-1).indices.reshape(-1)
        weight = torch.ones(logits.shape[0], device=device) if valid is None else valid
        counts.append(
            torch.zeros(num_experts, device=device).index_add_(0, chosen, weight.repeat_interleave(top_k))
        )
        prob_sums.append((probs * weight.unsqueeze(-1)).sum(0))
    tokens = torch.tensor(float(router_logits[0].shape[0]), device=device) if valid is None else valid.sum()
    return torch.stack(counts).detach(), torch.stack(prob_sums), tokens


def _balance_loss(frequency: Tensor, probability: Tensor, num_experts: int, per_layer: bool) -> Tensor:
    """E * sum_e f_e * P_e. ``per_layer`` False pools f and P over layers first (transformers'
    load_balancing_loss_func); True forms the loss in each layer and averages (Megatron-style)."""
    if per_layer:
        return num_experts * (frequency * probability).sum(-1).mean()
    return num_experts * (frequency.mean(0) * probability.mean(0)).sum()


def load_balancing_loss(
    router_logits: Sequence[Tensor],
    num_experts: int,
    top_k: int,
    attention_mask: Tensor | None = None,
    per_layer: bool = False,
) -> Tensor:
    """Switch-Transformer auxiliary loss over one micro-batch, equal to transformers' ``load_balancing_loss_func``.

    router_logits: one [tokens, E] tensor per sparse layer; attention_mask [B, T] (1 = real token)."""
    counts, prob_sums, tokens = _selection_stats(router_logits, num_experts, top_k, attention_mask)
    return _balance_loss(counts / tokens, prob_sums / tokens, num_experts, per_layer)


def global_batch_load_balancing_loss(
    micro_batches: Sequence[Sequence[Tensor]],
    num_experts: int,
    top_k: int,
    attention_masks: Sequence[Tensor | None] | None = None,
    per_layer: bool = False,
) -> Tensor:
    """Global-batch LBL (Qiu et al. 2025, arXiv 2501.11873) over several micro-batches: expert-selection
    frequencies f come from all micro-batches together; each micro-batch's loss uses its own mean probabilities P
    and is weighted by its share of the tokens. The sum equals ``load_balancing_loss`` over the concatenation."""
    masks = attention_masks or [None] * len(micro_batches)
    stats = [_selection_stats(logits, num_experts, top_k, mask) for logits, mask in zip(micro_batches, masks)]
    total_tokens = sum(tokens for _, _, tokens in stats)
    frequency = sum(counts for counts, _, _ in stats) / total_tokens
    return sum(
        tokens / total_tokens * _balance_loss(frequency, prob_sums / tokens, num_experts, per_layer)
        for _, prob_sums, tokens in stats
    )


class GlobalBatchLoadBalancer:
    """Global-batch LBL across gradient-accumulation micro-batches and data-parallel ranks.

    Call ``reset()`` at the start of each optimizer step and ``step_loss(router_logits)`` once per micro-batch.
    The per-layer selection counts ([L, E] plus the token count: a few hundred numbers) are all-reduced over
    ``process_group`` and accumulated; the returned loss is E * sum_e f_e * P_e with f the frequencies accumulated
    so far over the global batch and P this micro-batch's (differentiable) mean router probabilities.

    Exact: across data-parallel ranks within one micro-batch step, f is the global frequency, as in the paper.
    Approximate under gradient accumulation: micro-batch j sees the counts of micro-batches 1..j only (later ones
    do not exist yet); the last one sees the whole global batch. ``global_batch_load_balancing_loss`` is the exact
    form when all micro-batches' router logits are available at once.
    """

    def __init__(
        self, num_experts: int, top_k: int, process_group: object | None = None, per_layer: bool = False
    ):
        self.num_experts = num_experts
        self.top_k = top_k
        self.process_group = process_group
        self.per_layer = per_layer
        self.reset()

    def reset(self) -> None:
        self.counts: Tensor | None = None
        self.tokens: Tensor | None = None

    def step_loss(self, router_logits: Sequence[Tensor], attention_mask: Tensor | None = None) -> Tensor:
        counts, prob_sums, tokens = _selection_stats(
            router_logits, self.num_experts, self.top_k, attention_mask
        )
        synced = torch.cat([counts.reshape(-1), tokens.detach().reshape(1)])
        if self.process_group is not None:
            torch.distributed.all_reduce(synced, group=self.process_group)
        self.counts = synced[:-1].view_as(counts) + (0 if self.counts is None else self.counts)
        self.tokens = synced[-1] + (0 if self.tokens is None else self.tokens)
        return _balance_loss(self.counts / self.tokens, prob_sums / tokens, self.num_experts, self.per_layer)
