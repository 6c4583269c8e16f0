"""Weight layouts for fast inference, built as a view of the reference model (not a second model definition).

``ReferenceForward`` runs the model module itself; it is what tests compare every other path with.
``FusedForward`` runs the same layers (the model's own RMSNorm modules, RoPE, attention over the cache, MoE
blocks) with q/k/v fused into one projection and gate/up into another, so a decode step makes 4 matrix products
per dense layer instead of 7. The fused q/k/v and gate/up tensors take over the model's storage: the model's
``q_proj.weight`` etc. become views into them, so the reference model keeps working and no memory is duplicated.
With ``shared=True`` (a module a trainer also optimises: its parameters' storage must not change behind the
optimizer, DDP or FSDP) the fused tensors are copies instead, which ``LLMEngine.sync_weights`` rebuilds after
each update; ``ReferenceForward`` reads the parameters in place.

How the projections run (``weights``):
- "fused": ``F.linear``;
- "packed": oneDNN prepacked weights (``torch.ops.mkldnn._reorder_linear_weight`` + ``_linear_pointwise``, what
  inductor's CPU freezing uses), which read bf16 weights at batch 1 much faster than ``F.linear`` on this CPU. The
  packed copy is extra memory; the reference weights stay. Decode batches of several sequences in bf16 run the C
  step's GEMM on a second, pair-packed copy (``FusedForward._gemm_packs``);
- "int8": per-output-channel symmetric int8 weights (scale = max |w| / 127), lm_head included (embeddings stay
  as they are): decode steps of one or two rows run the C kernel of ``qwen3.engine.cpu_kernels`` (fp32
  accumulation), larger batches and prefill ``torch.ops.aten._weight_int8pack_mm`` (activations in bf16).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qwen3.engine import cpu_kernels
from qwen3.engine.cpu_kernels import FUSED_DTYPES
from qwen3.model.model import Qwen3ForCausalLM
from qwen3.model.rope import apply_rotary


class ReferenceForward:
    name = "reference"

    def __init__(self, model: Qwen3ForCausalLM):
        self.model = model

    def hidden_states(self, ids: Tensor, positions: Tensor, cache, decode: bool = False) -> Tensor:
        return self.model.hidden_states(ids, positions=positions, cache=cache)

    def logits(self, hidden: Tensor) -> Tensor:
        return self.model.lm_head(hidden)


# -- linear kernels ----------------------------------------------------------------------------------------------
# The overload itself: calling it skips the packet's overload resolution (about a microsecond a call).
_LINEAR_POINTWISE = (
    torch.ops.mkldnn._linear_pointwise.default if torch.backends.mkldnn.is_available() else None
)


class PlainLinear:
    def __init__(self, weight: Tensor):
        self.weight = weight
        self.out_features = weight.shape[0]

    def __call__(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight)


class PackedLinear:
    """oneDNN's blocked layout, faster than ``F.linear`` on this CPU from decode (bf16 matrix-vector) to prefill.

    oneDNN builds and caches one primitive (with its own buffers) per input row count, so a server that saw every
    prefill length would grow until the 1024-entry primitive cache fills. Inputs are therefore padded to the next
    of a fixed set of row buckets (at most 1.5x the rows), and inputs longer than the largest bucket run as slices
    of that size: memory stays bounded by len(ROW_BUCKETS) primitives per weight.
    """

    ROW_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
    _BUCKET_SET = frozenset(ROW_BUCKETS)

    def __init__(self, weight: Tensor, batch_hint: int = 1):
        self.weight = weight  # the model's own tensor (kept for the C decode step; no copy)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight.detach(), batch_hint)
        self.out_features = weight.shape[0]

    def __call__(self, x: Tensor) -> Tensor:
        # A decode step: one call, nothing to reshape or pad.
        if x.dim() == 2 and x.shape[0] in self._BUCKET_SET:
            return _LINEAR_POINTWISE(x, self.packed, None, "none", [], "")
        flat = x.reshape(-1, x.shape[-1])
        largest = self.ROW_BUCKETS[-1]
        parts = [self._bucketed(flat[start : start + largest]) for start in range(0, flat.shape[0], largest)]
        out = parts[0] if len(parts) == 1 else torch.cat(parts)
        return out.view(*x.shape[:-1], self.out_features)

    def _bucketed(self, rows: Tensor) -> Tensor:
        count = rows.shape[0]
        bucket = next(b for b in self.ROW_BUCKETS if b >= count)
        if bucket != count:
            rows = torch.cat([rows, rows.new_zeros(bucket - count, rows.shape[1])])
        return _LINEAR_POINTWISE(rows, self.packed, None, "none", [], "")[:count]


class Int8Linear:
    """Per-output-channel symmetric int8 weights. Decode batches (at most ``KERNEL_ROWS`` rows) use the C kernel
    of ``qwen3.engine.cpu_kernels`` when it is available; everything else ``torch._weight_int8pack_mm``."""

    KERNEL_ROWS = 2  # beyond this the kernel is compute-bound and int8pack_mm is as fast

    def __init__(self, weight: Tensor):
        w = weight.detach().float()
        scales = w.abs().amax(dim=1).clamp(min=1e-12) / 127.0
        self.weight = torch.round(w / scales[:, None]).clamp(-127, 127).to(torch.int8).contiguous()
        self.scales = scales.contiguous()
        self.scales_bf16 = scales.to(torch.bfloat16)
        self.out_features, self.in_features = self.weight.shape
        self.use_kernel = (
            weight.device.type == "cpu" and self.in_features % 64 == 0 and cpu_kernels.library() is not None
        )

    def dequantized(self) -> Tensor:
        return self.weight.float() * self.scales[:, None]

    def __call__(self, x: Tensor) -> Tensor:
        rows = x.numel() // self.in_features
        if self.use_kernel and rows <= self.KERNEL_ROWS:
            return cpu_kernels.woq_int8_matmul(x, self.weight, self.scales)
        flat = x.reshape(-1, self.in_features).to(torch.bfloat16).contiguous()
        out = torch.ops.aten._weight_int8pack_mm(flat, self.weight, self.scales_bf16)
        return out.view(*x.shape[:-1], self.out_features).to(x.dtype)


def packing_supported(weight: Tensor) -> bool:
    if weight.device.type != "cpu" or not torch.backends.mkldnn.is_available():
        return False
    if weight.dtype == torch.bfloat16:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return weight.dtype == torch.float32


def kernel_linear(linear) -> cpu_kernels._Linear:
    """The C decode step's view of a projection: its int8 weight and scales, or the model's float weight."""
    if isinstance(linear, Int8Linear):
        return cpu_kernels.linear_spec(linear.weight, linear.scales)
    return cpu_kernels.linear_spec(linear.weight.detach())


def make_linear(weight: Tensor, kind: str):
    if kind == "packed" and packing_supported(weight):
        return PackedLinear(weight)
    if kind == "int8":
        return Int8Linear(weight)
    return PlainLinear(weight)


# -- the fused view --------------------------------------------------------------------------------------------
def fuse_rows(modules: list[nn.Linear], in_place: bool = True) -> Tensor:
    """Concatenate the weights of ``modules`` along the output dimension and point each module's weight at its rows
    of the result (``param.data``: the same Parameter objects, requires_grad unchanged), so the fused tensor is the
    only copy and in-place updates of the model's weights (an optimizer step, ``load_state_dict``) reach it. Modules
    already fused (views of one tensor, in order) are left as they are. ``in_place=False`` returns a copy and leaves
    the modules untouched (a shared module)."""
    weights = [m.weight.detach() for m in modules]
    base = weights[0]._base
    if base is not None and all(w._base is base for w in weights) and _consecutive_rows(weights, base):
        return base
    fused = torch.cat(weights, dim=0)
    if not in_place:
        return fused
    start = 0
    for module in modules:
        rows = module.weight.shape[0]
        module.weight.data = fused[start : start + rows]
        start += rows
    return fused


def _consecutive_rows(weights: list[Tensor], base: Tensor) -> bool:
    offset = base.storage_offset()
    for w in weights:
        if w.storage_offset() != offset:
            return False
        offset += w.numel()
    return offset == base.storage_offset() + base.numel()


@dataclass
class FusedLayer:
    layer: nn.Module  # the model's DecoderLayer (norms, MoE block)
    qkv: object
    o: object
    gate_up: object | None  # None for sparse (MoE) layers
    down: object | None
    split: tuple[int, int, int]


class FusedForward:
    def __init__(self, model: Qwen3ForCausalLM, kind: str = "fused", shared: bool = False):
        self.model = model
        self.name = kind
        config = model.config
        self.head_dim = config.head_dim
        self.layers: list[FusedLayer] = []
        for layer in model.model.layers:
            attn = layer.self_attn
            qkv = fuse_rows([attn.q_proj, attn.k_proj, attn.v_proj], in_place=not shared)
            split = (attn.q_proj.weight.shape[0], attn.k_proj.weight.shape[0], attn.v_proj.weight.shape[0])
            gate_up = down = None
            if not layer.is_sparse:
                gate_up = make_linear(fuse_rows([layer.mlp.gate_proj, layer.mlp.up_proj], not shared), kind)
                down = make_linear(layer.mlp.down_proj.weight.detach(), kind)
            self.layers.append(
                FusedLayer(
                    layer,
                    make_linear(qkv, kind),
                    make_linear(attn.o_proj.weight.detach(), kind),
                    gate_up,
                    down,
                    split,
                )
            )
        self.lm_head = make_linear(model.lm_head.weight.detach(), kind)
        self._step: cpu_kernels.DecodeStep | None = None  # built for the first cache that runs it
        self._step_cache = None
        self._packs: tuple | bool | None = None  # pair-packed weights of the GEMM path (_gemm_packs)
        self._rope: tuple[nn.Module, Tensor, Tensor] | None = None  # (rotary module, cos, sin) of rope_tables

    def hidden_states(self, ids: Tensor, positions: Tensor, cache, decode: bool = False) -> Tensor:
        decoder = self.model.model
        if (
            decode
            and getattr(cache, "decode_kernel", False)
            and self.model.lm_head.weight.dtype in FUSED_DTYPES
        ):
            return self._decode_with_kernels(ids, positions, cache)
        h = decoder.embed_tokens(ids)
        cos, sin = decoder.rotary_emb(positions, h.dtype)
        for index, fused in enumerate(self.layers):
            h = self._layer(index, fused, h, cos, sin, cache)
        return decoder.norm(h)

    def _layer(self, index: int, fused: FusedLayer, h: Tensor, cos: Tensor, sin: Tensor, cache) -> Tensor:
        layer = fused.layer
        qkv = fused.qkv(layer.input_layernorm(h))
        out = self._attention(index, fused, qkv, cos, sin, cache)
        h = h + fused.o(out.transpose(1, 2).reshape(h.shape[0], h.shape[1], -1))
        x = layer.post_attention_layernorm(h)
        if fused.gate_up is None:
            return h + layer.mlp(x)[0]
        gate, up = fused.gate_up(x).chunk(2, dim=-1)
        return h + fused.down(F.silu(gate) * up)

    def _attention(
        self, index: int, fused: FusedLayer, qkv: Tensor, cos: Tensor, sin: Tensor, cache
    ) -> Tensor:
        """qkv [B, T, (Hq + 2 Hkv) * D] -> attention output [B, Hq, T, D] (QK-norm, RoPE, cache)."""
        attn = fused.layer.self_attn
        batch, length, _ = qkv.shape
        q, k, v = qkv.split(fused.split, dim=-1)
        heads = (batch, length, -1, self.head_dim)
        q = attn.q_norm(q.view(heads)).transpose(1, 2)
        k = attn.k_norm(k.view(heads)).transpose(1, 2)
        v = v.view(heads).transpose(1, 2)
        return cache.attend(index, apply_rotary(q, cos, sin), apply_rotary(k, cos, sin), v)

    def decode_logits(self, ids: Tensor, positions: Tensor, cache) -> Tensor | None:
        """Logits [B, vocab] of a decode step in one C call over all layers (dense models, CPU kernels available,
        a batch ``DecodeStep`` takes); None when that does not apply and the layer-by-layer path must run."""
        rows, step = ids.shape[0], cpu_kernels.DecodeStep
        if step.MAX_ROWS < rows < step.GEMM_MIN_ROWS or not getattr(cache, "decode_kernel", False):
            return None
        if any(fused.gate_up is None for fused in self.layers):
            return None  # MoE layers run in torch
        if self._step_cache is not cache:
            self._step, self._step_cache = self._build_step(cache), cache
        if rows > step.MAX_ROWS and self._step.packed is None and self._gemm_packs():
            self._step.use_packed(*self._packs)
        if not self._step.accepts(rows):
            return None
        h = self.model.model.embed_tokens(ids[:, 0])
        cos, sin = self.rope_tables(cache.decode_span)
        return self._step(h, cos, sin, cache.decode_positions, cache.decode_span)

    def rope_tables(self, length: int) -> tuple[Tensor, Tensor]:
        """cos, sin [P, D] (P >= length) of the model's rotary embedding for positions 0..P-1, in the model dtype:
        the C kernels read the rows of a step's positions instead of a step computing its own. Computed by the
        same module (the same values), grown by doubling, rebuilt when the module is replaced (rope scaling)."""
        rotary = self.model.model.rotary_emb
        if self._rope is None or self._rope[0] is not rotary or self._rope[1].shape[0] < length:
            rows = max(256, 1 << (length - 1).bit_length())
            positions = torch.arange(rows, device=rotary.inv_freq.device)[None]
            cos, sin = rotary(positions, self.model.lm_head.weight.dtype)
            self._rope = (rotary, cos[0].contiguous(), sin[0].contiguous())
        return self._rope[1], self._rope[2]

    def _gemm_packs(self) -> bool:
        """Build, once, the pair-packed copies of every projection for the step's GEMM path. They are copies, so
        only the "packed" layout makes them (it holds copies anyway, and ``sync_weights`` rebuilds them; "fused"
        promises to read the model's own storage). They are made when a many-row step first runs, and only for
        bf16 weights of shapes the GEMM takes, on a CPU with AVX512-BF16, with room in memory for them twice over
        (as "auto" asks of oneDNN's packed copy)."""
        if self._packs is None:
            self._packs = False
            if self.name != "packed":
                return False
            linears = [[f.qkv, f.o, f.gate_up, f.down] for f in self.layers]
            weights = [getattr(linear, "weight", None) for layer in linears for linear in layer]
            weights.append(getattr(self.lm_head, "weight", None))
            packable = all(w is not None and cpu_kernels.can_pack(w) for w in weights)
            if packable and cpu_kernels.gemm_available():
                size = sum(w.numel() * w.element_size() for w in weights)
                if available_memory() > 2 * size:
                    packs = [cpu_kernels.pack_pairs(w) for w in weights]
                    self._packs = ([tuple(packs[i : i + 4]) for i in range(0, len(packs) - 1, 4)], packs[-1])
        return bool(self._packs)

    def _build_step(self, cache) -> cpu_kernels.DecodeStep:
        layers = []
        for fused in self.layers:
            layer, attn = fused.layer, fused.layer.self_attn
            layers.append(
                cpu_kernels.DenseLayerWeights(
                    kernel_linear(fused.qkv),
                    kernel_linear(fused.o),
                    kernel_linear(fused.gate_up),
                    kernel_linear(fused.down),
                    layer.input_layernorm.weight.detach(),
                    layer.post_attention_layernorm.weight.detach(),
                    attn.q_norm.weight.detach(),
                    attn.k_norm.weight.detach(),
                )
            )
        final_norm = self.model.model.norm.weight.detach()
        return cpu_kernels.DecodeStep(
            layers, final_norm, kernel_linear(self.lm_head), cache, self.model.config
        )

    def _decode_with_kernels(self, ids: Tensor, positions: Tensor, cache) -> Tensor:
        """The decode step with the element-wise work of each layer in C (qwen3.engine.cpu_kernels): per layer
        four projections and four kernel calls instead of about sixty small torch ops."""
        decoder = self.model.model
        batch = ids.shape[0]
        h = decoder.embed_tokens(ids[:, 0])
        cos, sin = self.rope_tables(cache.decode_span)
        delta = None
        for index, fused in enumerate(self.layers):
            layer = fused.layer
            attn, norm = layer.self_attn, layer.input_layernorm
            h, x = cpu_kernels.add_rms_norm(h, delta, norm.weight, norm.eps)
            qkv = fused.qkv(x)
            out = cache.decode_layer(
                index, qkv, attn.q_norm.weight, attn.k_norm.weight, cos, sin, attn.q_norm.eps
            )
            if out is None:  # beyond the kernel's limits: the torch attention
                rows = qkv.view(batch, 1, -1)
                out = self._attention(index, fused, rows, cos[positions], sin[positions], cache)
                out = out.reshape(batch, -1)
            norm = layer.post_attention_layernorm
            h, x = cpu_kernels.add_rms_norm(h, fused.o(out), norm.weight, norm.eps)
            if fused.gate_up is None:
                delta = layer.mlp(x[:, None])[0][:, 0]
            else:
                delta = fused.down(cpu_kernels.silu_mul(fused.gate_up(x)))
        _, x = cpu_kernels.add_rms_norm(h, delta, decoder.norm.weight, decoder.norm.eps)
        return x[:, None]

    def logits(self, hidden: Tensor) -> Tensor:
        return self.lm_head(hidden)


def build_forward(model: Qwen3ForCausalLM, weights: str, shared: bool = False):
    """The forward for ``EngineConfig.weights``. "auto": packed where oneDNN supports the dtype and the packed
    copy fits in memory twice over (it comes on top of the model's weights), else fused. ``shared``: never
    re-point the model's parameters (``fuse_rows(in_place=False)``)."""
    if weights == "reference":
        return ReferenceForward(model)
    if weights == "auto":
        weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
        roomy = available_memory() > 2 * weight_bytes
        weights = "packed" if packing_supported(model.lm_head.weight) and roomy else "fused"
    return FusedForward(model, weights, shared)


def available_memory() -> int:
    """MemAvailable of /proc/meminfo in bytes (0 where unknown, which keeps "auto" on the fused layout)."""
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
