"""Attention over packed documents, query block by query block.

Packing several documents into one row (``document_ids``) makes most of the causal mask's lower triangle False,
but SDPA with a mask still computes every masked score, and on the CPU its flash kernel cannot even skip causal
blocks at T <= 512 (its key blocks are 512 long). ``block_mask`` cuts a [B, 1, T, T] boolean mask into blocks of
query rows, each paired with the first key any of its rows may see (over the batch), so a block attends only to
keys [first, end). The result is exact: only scores the mask sets to -inf are skipped.

On the CPU the backward pass is our own (``_BlockedAttention``): the flash kernel's backward has a fixed cost per
call that made 8 small blocks as slow as one full T x T call, while the same gradients from a few batched
matmuls per block are faster (the measurement: docs/benchmarks.md, "Measured design choices"). Scores and
softmax are recomputed in fp32, as the kernel does; the matmuls producing gradients run in the inputs' dtype.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

QUERY_BLOCK = 64  # rows per block (64 beat 128 and 256 on qwen3-debug-5m, 8 x 512, in bf16 and fp32)
# A private op (it returns each row's log-sum-exp, which the backward needs); a torch without it takes the per-block
# SDPA path, differentiated by autograd.
CPU_FLASH = "_scaled_dot_product_flash_attention_for_cpu"


@dataclass
class BlockedMask:
    """``blocks``: (query start, query end, first key, mask[:, :, query start:end, first key:query end])."""

    blocks: list[tuple[int, int, int, Tensor]]
    _additive: dict[torch.dtype, list[Tensor]] = field(default_factory=dict, repr=False)

    def additive(self, dtype: torch.dtype) -> list[Tensor]:
        """Each block's mask as 0 / -inf in ``dtype`` (what the flash kernel takes), built once per forward."""
        if dtype not in self._additive:
            self._additive[dtype] = [
                torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill_(~mask, float("-inf"))
                for *_, mask in self.blocks
            ]
        return self._additive[dtype]


def block_mask(mask: Tensor, block: int = QUERY_BLOCK) -> Tensor | BlockedMask:
    """[B, 1, T, T] bool (True = may attend; every row sees at least itself) -> a ``BlockedMask``, or the mask
    itself when T fits in one block."""
    length = mask.shape[-1]
    if length <= block:
        return mask
    starts = range(0, length, block)
    visible = mask[:, 0].any(dim=0)  # [T, T]: may some row of the batch attend query i -> key j
    seen = torch.stack([visible[start : start + block].any(dim=0) for start in starts])
    first_keys = seen.to(torch.uint8).argmax(dim=1).tolist()  # one host sync per forward
    return BlockedMask(
        [
            (
                start,
                min(start + block, length),
                first,
                mask[:, :, start : start + block, first : start + block],
            )
            for start, first in zip(starts, first_keys)
        ]
    )


def blocked_attention(q: Tensor, k: Tensor, v: Tensor, mask: BlockedMask, dropout: float = 0.0) -> Tensor:
    """``attend`` for a ``BlockedMask``: q [B, Hq, T, D]; k, v [B, Hkv, T, D] -> [B, Hq, T, D]."""
    if q.device.type != "cpu" or dropout or not hasattr(torch.ops.aten, CPU_FLASH):
        return per_block_sdpa(q, k, v, mask, dropout)
    dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else q.dtype
    return _BlockedAttention.apply(q.to(dtype), k.to(dtype), v.to(dtype), mask)


def per_block_sdpa(q: Tensor, k: Tensor, v: Tensor, mask: BlockedMask, dropout: float = 0.0) -> Tensor:
    """One SDPA call per block, differentiated by autograd (GPUs, and attention dropout)."""
    outputs = [
        F.scaled_dot_product_attention(
            q[:, :, start:end],
            k[:, :, first:end],
            v[:, :, first:end],
            attn_mask=block,
            dropout_p=dropout,
            scale=q.shape[-1] ** -0.5,
            enable_gqa=k.shape[1] != q.shape[1],
        )
        for start, end, first, block in mask.blocks
    ]
    return torch.cat(outputs, dim=2)


class _BlockedAttention(torch.autograd.Function):
    """Forward: the CPU flash kernel per block (it returns the log-sum-exp of each row). Backward, per block, with
    the kv heads' query groups stacked (GQA): P = exp(q k^T scale + mask - lse), dV = P^T dO, dP = dO v^T,
    dS = P (dP - rowsum(dO * O)), dQ = dS k scale, dK = dS^T q scale."""

    @staticmethod
    def forward(ctx, q: Tensor, k: Tensor, v: Tensor, mask: BlockedMask) -> Tensor:  # type: ignore[override]
        scale = q.shape[-1] ** -0.5
        flash = getattr(torch.ops.aten, CPU_FLASH)
        outputs, lses = [], []
        for (start, end, first, _), additive in zip(mask.blocks, mask.additive(q.dtype)):
            out, lse = flash(
                q[:, :, start:end], k[:, :, first:end], v[:, :, first:end], attn_mask=additive, scale=scale
            )
            outputs.append(out)
            lses.append(lse)
        out = torch.cat(outputs, dim=2)
        ctx.mask, ctx.scale = mask, scale
        ctx.save_for_backward(q, k, v, out, torch.cat(lses, dim=2))
        return out

    @staticmethod
    def backward(ctx, grad_out: Tensor):  # type: ignore[override]
        # backward() called inside an autocast region would otherwise run the fp32 score matmuls in bf16.
        with torch.autocast(grad_out.device.type, enabled=False):
            return _BlockedAttention._backward(ctx, grad_out)

    @staticmethod
    def _backward(ctx, grad_out: Tensor) -> tuple[Tensor, Tensor, Tensor, None]:
        q, k, v, out, lse = ctx.saved_tensors
        batch, heads, _, dim = q.shape
        kv_heads = k.shape[1]
        group = heads // kv_heads
        exact = torch.promote_types(q.dtype, torch.float32)  # scores, softmax, sums (fp64 stays fp64)
        grad_q = torch.empty_like(q)
        grad_k = torch.zeros(k.shape, dtype=exact, device=k.device)
        grad_v = torch.zeros(v.shape, dtype=exact, device=v.device)
        row_dot = (grad_out.to(exact) * out.to(exact)).sum(-1)  # rowsum(dO * O) [B, Hq, T]
        for (start, end, first, _), additive in zip(ctx.mask.blocks, ctx.mask.additive(q.dtype)):
            rows = end - start
            stacked = (batch, kv_heads, group * rows, dim)  # the query heads sharing one kv head, stacked
            per_head = (batch, kv_heads, group, rows, -1)
            q_block = q[:, :, start:end].reshape(stacked)
            grad_block = grad_out[:, :, start:end].reshape(stacked)
            k_block, v_block = k[:, :, first:end], v[:, :, first:end]
            scores = (q_block.to(exact) @ k_block.to(exact).transpose(-1, -2)).view(per_head)
            scores = (
                scores * ctx.scale
                + additive.unsqueeze(1)
                - lse[:, :, start:end].reshape(per_head[:-1] + (1,))
            )
            probs = scores.exp_()
            grad_probs = (grad_block.to(exact) @ v_block.to(exact).transpose(-1, -2)).view(per_head)
            grad_scores = probs * (grad_probs - row_dot[:, :, start:end].reshape(per_head[:-1] + (1,)))
            probs = probs.view(stacked[:-1] + (-1,)).to(q.dtype)
            grad_scores = (grad_scores * ctx.scale).view(stacked[:-1] + (-1,)).to(q.dtype)
            grad_v[:, :, first:end] += probs.transpose(-1, -2) @ grad_block
            grad_k[:, :, first:end] += grad_scores.transpose(-1, -2) @ q_block
            grad_q[:, :, start:end] = (grad_scores @ k_block).view(batch, heads, rows, dim)
        return grad_q, grad_k.to(k.dtype), grad_v.to(v.dtype), None
