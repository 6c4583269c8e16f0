"""``ModelRunner``: turns a scheduled batch into model inputs, runs the model over the KV cache, and returns the
logits of the rows that need a token.

- decode: input ids [B, 1] (each running sequence's pending token), positions [B, 1];
- prefill: the pending tokens of several sequences packed into one row [1, N]; logits only for the last token of
  each sequence whose pending tokens are all in after this step (a chunk in the middle of a prompt needs none).

Logits are returned as the LM head produced them (the model dtype; the sampler widens them to fp32 where it needs
to, and greedy rows take the argmax of the bf16 values directly) with the rows beyond the tokenizer's vocabulary set
to -inf: the released embeddings have padding rows (151,936 rows for 151,669 tokens) that must never be sampled.
"""

from __future__ import annotations

import torch
from torch import Tensor

from qwen3.engine.config import ResolvedConfig
from qwen3.engine.dca import DualChunkAttention
from qwen3.engine.fast_weights import build_forward
from qwen3.engine.kv_cache import Segment, SlotKVCache
from qwen3.engine.scheduler import ScheduledBatch
from qwen3.model.model import Qwen3ForCausalLM


class ModelRunner:
    def __init__(
        self, model: Qwen3ForCausalLM, resolved: ResolvedConfig, vocab_limit: int, shared: bool = False
    ):
        self.model = model
        self.shared = shared
        weight = model.lm_head.weight
        self.device, self.dtype = weight.device, weight.dtype
        self.vocab_limit = vocab_limit
        engine = resolved.engine
        self.dual_chunk = None
        if engine.dual_chunk_attention:
            assert engine.dca_chunk_size is not None
            self.dual_chunk = DualChunkAttention(
                engine.dca_chunk_size, resolved.trained_length, model.model.rotary_emb.inv_freq
            )
        self.weights = engine.weights
        self.forward = build_forward(model, engine.weights, shared)
        self.cache = SlotKVCache(
            model.config,
            resolved.num_slots,
            resolved.max_model_len,
            self.dtype,
            self.device,
            self.dual_chunk,
            decode_kernel=self.forward.name != "reference",
            prefill_kernel=self.forward.name != "reference",
        )

    def sync_weights(self) -> None:
        """Rebuild the fast weights (packed / int8 copies, fused views) from the model's current parameters."""
        self.forward = build_forward(self.model, self.weights, self.shared)

    @torch.inference_mode()
    def run(self, batch: ScheduledBatch) -> Tensor | None:
        """Run one step; logits [R, vocab] for the R sequences that complete (None when none does)."""
        if batch.is_prefill:
            ids, positions, rows = self._prepare_prefill(batch)
        else:
            ids, positions, rows = self._prepare_decode(batch)
        if self.dual_chunk is not None:
            positions = self.dual_chunk.model_positions(positions)
        logits = None
        if not batch.is_prefill and hasattr(self.forward, "decode_logits"):
            logits = self.forward.decode_logits(ids, positions, self.cache)
        if logits is None:
            hidden = self.forward.hidden_states(ids, positions, self.cache, decode=not batch.is_prefill)
            if rows is not None:
                if not rows:
                    return None
                hidden = hidden[0, rows]
            else:
                hidden = hidden[:, -1]
            logits = self.forward.logits(hidden)
        if self.vocab_limit < logits.shape[-1]:
            logits[:, self.vocab_limit :] = float("-inf")
        return logits

    def _prepare_decode(self, batch: ScheduledBatch) -> tuple[Tensor, Tensor, None]:
        tokens = [seq.token_ids[-1] for seq in batch.seqs]
        starts = [seq.num_computed_tokens for seq in batch.seqs]
        self.cache.begin_decode(starts)
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)[:, None]
        positions = self.cache.seq_lens[:, None]
        return ids, positions, None

    def _prepare_prefill(self, batch: ScheduledBatch) -> tuple[Tensor, Tensor, list[int]]:
        tokens: list[int] = []
        positions: list[int] = []
        segments, rows = [], []
        for i, (seq, count) in enumerate(zip(batch.seqs, batch.num_tokens)):
            start = seq.num_computed_tokens
            segments.append(Segment(seq.slot, start, count, len(tokens)))
            tokens += seq.token_ids[start : start + count]
            positions += range(start, start + count)
            if batch.completes(i):
                rows.append(len(tokens) - 1)
        self.cache.begin_prefill(segments)
        ids = torch.tensor(tokens, dtype=torch.long, device=self.device)[None]
        return ids, torch.tensor(positions, dtype=torch.long, device=self.device)[None], rows
