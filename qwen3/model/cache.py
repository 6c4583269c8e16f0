"""KV cache hook of the model, and ``StaticKVCache``, a preallocated cache with one length per batch row.

The model calls ``cache.attend(layer_idx, q, k, v)`` in every layer when a cache is given; the cache stores k and v
and runs attention over everything cached for each row. Positions come from the caller; only when ``positions`` is
None does the model read ``cache.seq_lens`` as the offset. The engine implements its own caches (paged, ...)
against the same protocol.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch
from torch import Tensor

from qwen3.model.attention import attend
from qwen3.model.config import Qwen3Config


@runtime_checkable
class KVCache(Protocol):
    seq_lens: Tensor  # [B] tokens cached so far per row (read by the model only when positions is None)

    def attend(self, layer_idx: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        """q [B, Hq, T, D]; k, v [B, Hkv, T, D], already QK-normed and rotated for this step's tokens.
        Store k and v, attend q over everything the sequence has cached (causally), return [B, Hq, T, D]."""
        ...


class StaticKVCache:
    """Buffers [B, Hkv, max_len, D] per layer. Row b's new tokens go to positions seq_lens[b], seq_lens[b]+1, ...

    ``seq_lens`` advances by T for every row once the last layer has stored its keys. For a right-padded prefill
    of prompts with different lengths, call ``set_lengths(true_lengths)`` afterwards: the padding entries beyond
    a row's length are never attended (causality) and are overwritten by the next tokens. ``reset(rows)`` empties
    rows for reuse (continuous batching).
    """

    def __init__(
        self,
        config: Qwen3Config,
        batch_size: int,
        max_len: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ):
        shape = (batch_size, config.num_key_value_heads, max_len, config.head_dim)
        self.num_layers = config.num_hidden_layers
        self.max_len = max_len
        self.keys = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(self.num_layers)]
        self.values = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(self.num_layers)]
        self.seq_lens = torch.zeros(batch_size, dtype=torch.long, device=device)

    @property
    def batch_size(self) -> int:
        return self.seq_lens.shape[0]

    def attend(self, layer_idx: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        batch, _, length, _ = k.shape
        if batch != self.batch_size:
            raise ValueError(f"StaticKVCache holds {self.batch_size} rows, got a batch of {batch}")
        end = int(self.seq_lens.max()) + length
        if end > self.max_len:
            raise ValueError(f"StaticKVCache overflow: {end} positions needed, max_len is {self.max_len}")
        slots = self.seq_lens[:, None] + torch.arange(length, device=k.device)  # [B, T]
        rows = torch.arange(batch, device=k.device)[:, None]
        self.keys[layer_idx][rows, :, slots] = k.transpose(1, 2).to(self.keys[layer_idx].dtype)
        self.values[layer_idx][rows, :, slots] = v.transpose(1, 2).to(self.values[layer_idx].dtype)
        # Query t of row b sees cached positions <= seq_lens[b] + t.
        mask = torch.arange(end, device=k.device) <= slots[:, :, None]  # [B, T, end]
        keys, values = self.keys[layer_idx][:, :, :end], self.values[layer_idx][:, :, :end]
        out = attend(q, keys.to(q.dtype), values.to(q.dtype), mask.unsqueeze(1))
        if layer_idx == self.num_layers - 1:
            self.seq_lens += length
        return out

    def set_lengths(self, lengths: Tensor | list[int]) -> None:
        lengths = torch.as_tensor(lengths, dtype=torch.long, device=self.seq_lens.device)
        if (
            lengths.shape != self.seq_lens.shape
            or bool((lengths < 0).any())
            or bool((lengths > self.max_len).any())
        ):
            raise ValueError(
                f"lengths must be {self.batch_size} values in [0, {self.max_len}], got {lengths.tolist()}"
            )
        self.seq_lens.copy_(lengths)

    def reset(self, rows: Tensor | list[int] | None = None) -> None:
        """Forget the cached tokens of ``rows`` (all rows when None)."""
        if rows is None:
            self.seq_lens.zero_()
        else:
            self.seq_lens[torch.as_tensor(rows, dtype=torch.long, device=self.seq_lens.device)] = 0
