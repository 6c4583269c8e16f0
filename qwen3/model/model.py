"""The Qwen3 transformer (dense and MoE), read top to bottom: embedding, decoder layers (pre-norm attention and
MLP/MoE with residuals), final RMSNorm, LM head. Parameter names equal the Hugging Face checkpoint names except
the stacked MoE experts (see ``qwen3.model.weights`` for the explicit mapping).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from qwen3.model.blocked_attention import BlockedMask, block_mask
from qwen3.model.cache import KVCache
from qwen3.model.config import Qwen3Config
from qwen3.model.layers import MLP, Attention, RMSNorm
from qwen3.model.moe import MOE_IMPLS, Experts, SparseMoeBlock
from qwen3.model.rope import RotaryEmbedding


@dataclass
class CausalLMOutput:
    logits: Tensor  # [B, T, vocab]
    router_logits: tuple[Tensor, ...] = ()  # one [B*T, E] per sparse layer


@dataclass
class DecoderOutput:
    hidden_states: Tensor  # [B, T, H], after the final norm
    router_logits: tuple[Tensor, ...] = ()


class DecoderLayer(nn.Module):
    def __init__(self, config: Qwen3Config, layer_idx: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config, layer_idx)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.is_sparse = config.layer_is_sparse(layer_idx)
        if self.is_sparse:
            self.mlp = SparseMoeBlock(
                config.hidden_size,
                config.num_experts,
                config.num_experts_per_tok,
                config.moe_intermediate_size,
                config.norm_topk_prob,
            )
        else:
            self.mlp = MLP(config.hidden_size, config.intermediate_size)

    def forward(
        self, h: Tensor, cos: Tensor, sin: Tensor, mask: Tensor | BlockedMask | None, cache: KVCache | None
    ) -> tuple[Tensor, Tensor | None]:
        h = h + self.self_attn(self.input_layernorm(h), cos, sin, mask, cache)
        if self.is_sparse:
            out, router_logits = self.mlp(self.post_attention_layernorm(h))
            return h + out, router_logits
        return h + self.mlp(self.post_attention_layernorm(h)), None


class Qwen3Model(nn.Module):
    def __init__(self, config: Qwen3Config):
        super().__init__()
        # An explicit weight skips nn.Embedding's own init: init_weights() runs later, and on the meta device its
        # normal_() would import torch._dynamo (+80 MB RSS, ~1 s) just to build an empty model.
        embedding = torch.empty(config.vocab_size, config.hidden_size)
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size, _weight=embedding)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config)
        self.gradient_checkpointing = False  # recompute each layer in backward (training only)

    def forward(
        self,
        input_ids: Tensor,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        document_ids: Tensor | None = None,
    ) -> DecoderOutput:
        if cache is not None and document_ids is not None:
            raise ValueError("document_ids (packed sequences) cannot be combined with a KV cache")
        positions = default_positions(input_ids, positions, cache, document_ids)
        mask = None if document_ids is None else block_mask(document_mask(document_ids))
        h = self.embed_tokens(input_ids)
        cos, sin = self.rotary_emb(positions, h.dtype)
        router_logits = []
        for layer in self.layers:
            if self.gradient_checkpointing and self.training and cache is None:
                h, logits = checkpoint(layer, h, cos, sin, mask, None, use_reentrant=False)
            else:
                h, logits = layer(h, cos, sin, mask, cache)
            if logits is not None:
                router_logits.append(logits)
        return DecoderOutput(self.norm(h), tuple(router_logits))


def default_positions(
    input_ids: Tensor, positions: Tensor | None, cache: KVCache | None, document_ids: Tensor | None
) -> Tensor:
    """Caller's positions, else 0..T-1 restarting at each document, else offset by the cache's lengths."""
    if positions is not None:
        if positions.shape != input_ids.shape:
            raise ValueError(
                f"positions shape {tuple(positions.shape)} != input_ids shape {tuple(input_ids.shape)}"
            )
        return positions
    batch, length = input_ids.shape
    steps = torch.arange(length, device=input_ids.device).expand(batch, length)
    if document_ids is not None:
        starts = torch.ones_like(document_ids, dtype=torch.bool)
        starts[:, 1:] = document_ids[:, 1:] != document_ids[:, :-1]
        first = torch.where(starts, steps, torch.zeros_like(steps)).cummax(dim=1).values
        return steps - first
    if cache is not None:
        return steps + cache.seq_lens.to(input_ids.device)[:, None]
    return steps


def document_mask(document_ids: Tensor) -> Tensor:
    """[B, T] document ids -> [B, 1, T, T] bool: causal and within the same document."""
    length = document_ids.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=document_ids.device).tril()
    same = document_ids[:, :, None] == document_ids[:, None, :]
    return (same & causal).unsqueeze(1)


class Qwen3ForCausalLM(nn.Module):
    """``forward(input_ids)`` -> logits [B, T, vocab]. ``hidden_states(...)`` and ``lm_head`` let callers compute
    logits only for the rows they need (engine) or in chunks (trainer)."""

    def __init__(self, config: Qwen3Config):
        super().__init__()
        self.config = config
        self.model = Qwen3Model(config)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.generation_config: dict | None = None  # generation_config.json of the checkpoint, if any
        if self.lm_head.weight.device.type != "meta":
            self.init_weights()

    def forward(
        self,
        input_ids: Tensor,
        *,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        document_ids: Tensor | None = None,
        output_router_logits: bool = False,
    ) -> Tensor | CausalLMOutput:
        """Logits [B, T, vocab]: ``lm_head`` over :meth:`hidden_states` (one body for both)."""
        out = self.hidden_states(
            input_ids, positions=positions, cache=cache, document_ids=document_ids, output_router_logits=True
        )
        logits = self.lm_head(out.hidden_states)
        return CausalLMOutput(logits, out.router_logits) if output_router_logits else logits

    def hidden_states(
        self,
        input_ids: Tensor,
        *,
        positions: Tensor | None = None,
        cache: KVCache | None = None,
        document_ids: Tensor | None = None,
        output_router_logits: bool = False,
    ) -> Tensor | DecoderOutput:
        """The final-norm hidden states [B, T, H] (with the MoE router logits when asked), before the LM head."""
        out = self.model(input_ids, positions, cache, document_ids)
        return out if output_router_logits else out.hidden_states

    def set_moe_impl(self, impl: str) -> None:
        """Choose the experts' kernel: "auto", "grouped_mm", "loop" or "reference" (see qwen3.model.moe)."""
        if impl not in MOE_IMPLS:
            raise ValueError(f"moe_impl {impl!r} is not one of {MOE_IMPLS}")
        for module in self.modules():
            if isinstance(module, Experts):
                module.impl = impl

    @torch.no_grad()
    def init_weights(self, generator: torch.Generator | None = None) -> None:
        """transformers-style init: weights ~ N(0, initializer_range), norms 1. Random numbers are drawn on the
        CPU in fp32 in parameter order, so a seeded generator gives the same model on any device and dtype."""
        std = self.config.initializer_range
        for name, param in self.named_parameters():
            if name.endswith("norm.weight"):
                param.fill_(1.0)
            elif param.device.type == "cpu" and param.dtype == torch.float32:
                param.normal_(0.0, std, generator=generator)
            else:
                param.copy_(torch.empty(param.shape).normal_(0.0, std, generator=generator))
        self.model.rotary_emb.reset_buffers(self.lm_head.weight.device)
