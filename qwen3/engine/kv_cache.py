"""``SlotKVCache``: the engine's preallocated KV cache, implementing the model's ``KVCache`` protocol.

Per layer, keys and values are [num_slots, Hkv, max_model_len, D]; a sequence owns one slot for its lifetime. The
running batch occupies slots 0..B-1 (see ``Scheduler``), so a decode step attends over the view
``keys[:B, :, :max_len_in_batch]`` with one SDPA call and a length mask: nothing is gathered or copied per step.
Queries are grouped per KV head ([B, Hkv, G, D]), so grouped-query attention needs no repeated keys either.

Prefill steps are packed: the model sees one row of N tokens from several sequences; each sequence's queries attend
to its own slot with a causal mask offset by what the slot already holds (chunked prefill). With bf16 on a CPU with
AVX512-BF16 (and no Dual Chunk Attention) that attention is the C kernel ``cpu_kernels.prefill_attention``, faster
than torch's CPU flash attention (docs/benchmarks.md); otherwise SDPA.

On the CPU the buffers are anonymous memory maps: the pages are zero and become resident only when a sequence
writes them, so a slot sized for a long context costs memory in proportion to what it holds (and the engine starts
without zero-filling gigabytes). Elsewhere they are ``torch.zeros``.

Before each forward the runner calls ``begin_decode`` or ``begin_prefill`` with the step's layout. Positions
always come from the runner, so ``seq_lens`` (read by the model only when no positions are given) is informative.
"""

from __future__ import annotations

import math
import mmap
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from qwen3.engine import cpu_kernels
from qwen3.model.attention import attend
from qwen3.model.config import Qwen3Config


@dataclass
class Segment:
    slot: int
    start: int  # tokens the slot held before this step
    length: int  # tokens this step adds
    offset: int  # where they are in the packed row


class SlotKVCache:
    def __init__(
        self,
        config: Qwen3Config,
        num_slots: int,
        max_len: int,
        dtype: torch.dtype,
        device: torch.device | str,
        dual_chunk=None,
        decode_kernel: bool = False,
        prefill_kernel: bool = False,
    ):
        shape = (num_slots, config.num_key_value_heads, max_len, config.head_dim)
        self._maps: list[mmap.mmap] = []  # keeps the CPU buffers' memory maps alive
        self.keys = [self._zeros(shape, dtype, device) for _ in range(config.num_hidden_layers)]
        self.values = [self._zeros(shape, dtype, device) for _ in range(config.num_hidden_layers)]
        self.num_slots, self.max_len = num_slots, max_len
        self.num_kv_heads, self.head_dim = config.num_key_value_heads, config.head_dim
        self.device = torch.device(device)
        self.dual_chunk = dual_chunk  # qwen3.engine.dca.DualChunkAttention or None
        # Decode attention in the C kernel (qwen3.engine.cpu_kernels) instead of SDPA: CPU only, not with DCA.
        self.decode_kernel = (
            decode_kernel
            and self.device.type == "cpu"
            and dual_chunk is None
            and cpu_kernels.library() is not None
        )
        # Prefill attention in the C kernel (AVX512-BF16, bf16 only; see _attend_prefill): same conditions.
        self.prefill_kernel = (
            prefill_kernel
            and self.device.type == "cpu"
            and dual_chunk is None
            and dtype == torch.bfloat16
            and cpu_kernels.gemm_available()
        )
        self.seq_lens = torch.zeros(0, dtype=torch.long, device=device)
        self._decode = True
        self._batch = 0
        self._span = 0
        self._mask: Tensor | None = None
        self._rows: Tensor | None = None
        self._positions: Tensor | None = None
        self._segments: list[Segment] = []
        self._same_length = True

    def _zeros(self, shape: tuple[int, ...], dtype: torch.dtype, device: torch.device | str) -> Tensor:
        if torch.device(device).type != "cpu":
            return torch.zeros(shape, dtype=dtype, device=device)
        memory = mmap.mmap(-1, math.prod(shape) * dtype.itemsize)
        self._maps.append(memory)
        return torch.frombuffer(memory, dtype=dtype).view(shape)

    @property
    def decode_positions(self) -> Tensor:
        """Positions [B] int64 of the tokens the current decode step adds."""
        assert self._positions is not None
        return self._positions

    @property
    def decode_span(self) -> int:
        """Cached positions the longest row of the current decode step attends to."""
        return self._span

    @property
    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values)

    # -- step layout -------------------------------------------------------------------------------------------
    def begin_decode(self, positions: list[int]) -> None:
        """Rows 0..B-1 each add one token at ``positions[b]`` (= what the slot held before)."""
        self._decode = True
        self._batch = len(positions)
        self._span = max(positions) + 1
        self._positions = torch.tensor(positions, dtype=torch.long, device=self.device)
        self.seq_lens = self._positions
        self._same_length = all(p == positions[0] for p in positions)
        # Built by _decode_layout when the torch attention runs (the C kernel needs neither).
        self._rows = self._mask = None

    def _decode_layout(self) -> tuple[Tensor, Tensor | None]:
        """Row indices and attention mask of the decode step (once per step, the first time a layer needs them)."""
        if self._rows is None:
            self._rows = torch.arange(self._batch, device=self.device)
            # Row b sees cached positions <= positions[b]; rows of one length need no mask.
            span = torch.arange(self._span, device=self.device)
            self._mask = (
                None if self._same_length else (span <= self.decode_positions[:, None])[:, None, None, :]
            )
        return self._rows, self._mask

    def begin_prefill(self, segments: list[Segment]) -> None:
        self._decode = False
        self._segments = segments
        slots = [s.slot for s in segments for _ in range(s.length)]
        positions = [s.start + t for s in segments for t in range(s.length)]
        self._rows = torch.tensor(slots, dtype=torch.long, device=self.device)
        self._positions = torch.tensor(positions, dtype=torch.long, device=self.device)
        self.seq_lens = torch.tensor([segments[0].start], dtype=torch.long, device=self.device)

    # -- the KVCache protocol ----------------------------------------------------------------------------------
    def attend(self, layer_idx: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        if self._decode:
            return self._attend_decode(layer_idx, q, k, v)
        return self._attend_prefill(layer_idx, q, k, v)

    def _attend_decode(self, layer_idx: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        batch, heads, _, dim = q.shape
        rows, mask = self._decode_layout()
        keys[rows, :, self._positions] = k[:, :, 0].to(keys.dtype)
        values[rows, :, self._positions] = v[:, :, 0].to(values.dtype)
        cached_k, cached_v = keys[:batch, :, : self._span], values[:batch, :, : self._span]
        if self.dual_chunk is not None:
            return self.dual_chunk.decode(q, cached_k, cached_v, self._positions)
        grouped = q.view(batch, self.num_kv_heads, heads // self.num_kv_heads, dim)
        out = F.scaled_dot_product_attention(
            grouped, cached_k.to(q.dtype), cached_v.to(q.dtype), attn_mask=mask, scale=dim**-0.5
        )
        return out.view(batch, heads, 1, dim)

    def decode_layer(
        self,
        layer_idx: int,
        qkv: Tensor,
        q_norm: Tensor,
        k_norm: Tensor,
        cos: Tensor,
        sin: Tensor,
        eps: float,
    ) -> Tensor | None:
        """The fused decode attention of a layer in one C call: QK-norm and RoPE of the projection output qkv
        [B, (Hq + 2 Hkv) * D] (cos, sin: rotary tables [P, D] read at the step's positions), cache write,
        attention. Returns [B, Hq * D], or None when the kernel cannot run (the caller then takes the torch
        path)."""
        if not self.decode_kernel:
            return None
        heads = qkv.shape[1] // self.head_dim - 2 * self.num_kv_heads
        return cpu_kernels.decode_layer_attention(
            qkv, q_norm, k_norm, cos, sin, self.keys[layer_idx], self.values[layer_idx], self._positions, heads,
            self._span, eps,
        )  # fmt: skip

    def _attend_prefill(self, layer_idx: int, q: Tensor, k: Tensor, v: Tensor) -> Tensor:
        keys, values = self.keys[layer_idx], self.values[layer_idx]
        keys[self._rows, :, self._positions] = k[0].transpose(0, 1).to(keys.dtype)
        values[self._rows, :, self._positions] = v[0].transpose(0, 1).to(values.dtype)
        if self.prefill_kernel and cpu_kernels.prefill_attention_fits(q, keys):
            return self._attend_prefill_kernel(q, keys, values)
        outputs = []
        for seg in self._segments:
            end = seg.start + seg.length
            q_seg = q[:, :, seg.offset : seg.offset + seg.length]
            k_seg = keys[seg.slot : seg.slot + 1, :, :end].to(q.dtype)
            v_seg = values[seg.slot : seg.slot + 1, :, :end].to(q.dtype)
            if self.dual_chunk is not None:
                positions = torch.arange(seg.start, end, device=q.device)
                outputs.append(self.dual_chunk.prefill(q_seg, k_seg, v_seg, positions))
            elif seg.start == 0:
                outputs.append(attend(q_seg, k_seg, v_seg, causal=True))
            else:
                query_pos = torch.arange(seg.start, end, device=q.device)[:, None]
                mask = torch.arange(end, device=q.device)[None, :] <= query_pos
                outputs.append(attend(q_seg, k_seg, v_seg, mask[None, None]))
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=2)

    def _attend_prefill_kernel(self, q: Tensor, keys: Tensor, values: Tensor) -> Tensor:
        """Every segment's causal attention in the C kernel, written into one [1, N, Hq, D] buffer and returned seen
        as [1, Hq, N, D]: the model's transpose back to [1, N, Hq * D] is then free (no copy, no concatenation)."""
        _, heads, length, dim = q.shape
        out = torch.empty(1, length, heads, dim, dtype=q.dtype, device=q.device).transpose(1, 2)
        for seg in self._segments:
            rows = slice(seg.offset, seg.offset + seg.length)
            cpu_kernels.prefill_attention(
                q[:, :, rows], keys, values, seg.slot, seg.start, out=out[:, :, rows]
            )
        return out

    # -- slot management ---------------------------------------------------------------------------------------
    def move(self, src: int, dst: int, length: int) -> None:
        """Copy the first ``length`` cached positions of slot ``src`` into slot ``dst``."""
        for cache in (*self.keys, *self.values):
            cache[dst, :, :length] = cache[src, :, :length]
