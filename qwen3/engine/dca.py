"""Dual Chunk Attention (An et al. 2024, "Training-Free Long-Context Scaling of Large Language Models",
arXiv 2402.17463), in plain torch.

With trained length ``c`` and chunk size ``s`` (<= c), the sequence is cut into chunks of ``s`` tokens and every
relative distance the model sees stays below ``c``:

- keys are rotated at their position within the chunk, ``j mod s``;
- intra-chunk attention (query and key in the same chunk): the query is rotated at ``i mod s``, so distances are
  exact;
- successive-chunk attention (key in the chunk just before): the query is rotated at ``min(s + i mod s, c - 1)``,
  exact for the first ``c - s`` queries of a chunk (the local window) and capped after that;
- inter-chunk attention (any earlier chunk): the query is rotated at ``c - 1``.

The three scores are put together per (query, key) pair before one softmax, which is what merging the three
partial attentions gives. A sequence that fits in one chunk gets exactly the ordinary attention.

The runner gives the model positions ``p mod s``, so the model's own RoPE rotates keys (and the intra-chunk
queries) correctly; the successive and inter-chunk queries are derived here by rotating the query further by the
position difference. That rotation uses the model's ``inv_freq`` without the attention factor, so with YaRN in the
config DCA runs on YaRN's frequencies and keeps YaRN's attention temperature (the factor already multiplies the
model's cos/sin): YaRN stretches what one chunk can cover, DCA repeats chunks beyond it.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qwen3.model.rope import rotate_half


class DualChunkAttention:
    def __init__(self, chunk_size: int, trained_length: int, inv_freq: Tensor, query_block: int = 256):
        if not 0 < chunk_size <= trained_length:
            raise ValueError(f"chunk_size {chunk_size} must be in [1, trained_length={trained_length}]")
        self.chunk_size = chunk_size
        self.trained_length = trained_length
        self.inv_freq = inv_freq.float()
        self.query_block = query_block

    def model_positions(self, positions: Tensor) -> Tensor:
        """The positions the model's RoPE should use: the position within the chunk."""
        return positions % self.chunk_size

    def prefill(self, q: Tensor, k: Tensor, v: Tensor, q_positions: Tensor) -> Tensor:
        """q [1, Hq, T, D] at absolute positions ``q_positions`` [T]; k, v [1, Hkv, S, D] for positions 0..S-1."""
        blocks = [
            self._attend(q[:, :, i : i + self.query_block], k, v, q_positions[i : i + self.query_block])
            for i in range(0, q.shape[2], self.query_block)
        ]
        return torch.cat(blocks, dim=2)

    def decode(self, q: Tensor, k: Tensor, v: Tensor, positions: Tensor) -> Tensor:
        """q [B, Hq, 1, D]; k, v [B, Hkv, S, D]; row b's query is at ``positions[b]`` and sees keys 0..positions[b]."""
        rows = []
        for b, position in enumerate(positions.tolist()):
            end = position + 1
            rows.append(
                self._attend(q[b : b + 1], k[b : b + 1, :, :end], v[b : b + 1, :, :end], positions[b : b + 1])
            )
        return torch.cat(rows, dim=0)

    def _attend(self, q: Tensor, k: Tensor, v: Tensor, q_positions: Tensor) -> Tensor:
        s, c = self.chunk_size, self.trained_length
        _, heads, length, dim = q.shape
        kv_heads, span = k.shape[1], k.shape[2]
        within = q_positions % s
        q_succ = self._rotate(q, (within + s).clamp(max=c - 1) - within)
        q_inter = self._rotate(q, (c - 1) - within)
        k_positions = torch.arange(span, device=q.device)
        distance_in_chunks = (q_positions // s)[:, None] - (k_positions // s)[None, :]  # [T, S]

        def scores(query: Tensor) -> Tensor:
            grouped = query.float().view(1, kv_heads, heads // kv_heads, length, dim)
            return grouped @ k.float()[:, :, None].transpose(-1, -2)  # [1, Hkv, G, T, S]

        combined = torch.where(
            distance_in_chunks == 0,
            scores(q),
            torch.where(distance_in_chunks == 1, scores(q_succ), scores(q_inter)),
        )
        causal = k_positions[None, :] <= q_positions[:, None]
        combined = combined.masked_fill(~causal, float("-inf")) * dim**-0.5
        probs = combined.softmax(dim=-1)
        out = probs @ v.float()[:, :, None]  # [1, Hkv, G, T, D]
        return out.reshape(1, heads, length, dim).to(q.dtype)

    def _rotate(self, x: Tensor, delta: Tensor) -> Tensor:
        """Rotate x [1, H, T, D] (rotate-half RoPE) further by ``delta`` [T] positions."""
        angles = delta[:, None].float() * self.inv_freq.to(x.device)
        angles = torch.cat((angles, angles), dim=-1)
        x32 = x.float()
        return (x32 * angles.cos() + rotate_half(x32) * angles.sin()).to(x.dtype)
