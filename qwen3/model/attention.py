"""Scaled dot-product attention with GQA over given keys and values: the one attention function that the model's
layers and every KV cache (``StaticKVCache``, the engine's paged cache) call, so they cannot drift apart."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from qwen3.model.blocked_attention import BlockedMask, blocked_attention


def attend(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | BlockedMask | None = None,
    causal: bool = False,
    dropout: float = 0.0,
) -> Tensor:
    """Scaled dot-product attention with GQA: q [B, Hq, T, D]; k, v [B, Hkv, S, D]; mask [B, 1, T, S] bool (True
    = may attend), or a ``BlockedMask`` of one (packed documents). Scale head_dim ** -0.5."""
    if isinstance(mask, BlockedMask):
        return blocked_attention(q, k, v, mask, dropout)
    return F.scaled_dot_product_attention(
        q,
        k,
        v,
        attn_mask=mask,
        is_causal=causal and mask is None,
        dropout_p=dropout,
        scale=q.shape[-1] ** -0.5,
        enable_gqa=k.shape[1] != q.shape[1],
    )
