"""Rotary position embeddings: rotate-half RoPE (GPT-NeoX layout) with inverse frequencies in fp32, and static
YaRN (Peng et al. 2023, arXiv 2309.00071) as Qwen3 uses it for 4x context (report §3.2; the model cards' rope_scaling factor 4.0).

YaRN blends position interpolation (``inv_freq / factor``) for low-frequency dimensions with the unchanged
frequencies for high-frequency ones, over a linear ramp between the dimensions that complete ``beta_fast`` and
``beta_slow`` rotations within ``original_max_position_embeddings``; cos and sin are then scaled by
``attention_factor`` (default ``0.1 ln(factor) + 1``). The user's ``factor`` is used as given: transformers before
PR #40320 replaced it by max_position_embeddings / original_max_position_embeddings (1.25 instead of 4 for Qwen3).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from qwen3.model.config import Qwen3Config


def default_inv_freq(theta: float, dim: int, device: torch.device | str | None = None) -> Tensor:
    """1 / theta^(2i/dim) for i < dim/2, computed in fp32."""
    exponents = torch.arange(0, dim, 2, dtype=torch.int64, device=device).to(torch.float32) / dim
    return 1.0 / (theta**exponents)


def yarn_inv_freq(
    theta: float, dim: int, scaling: dict, device: torch.device | str | None = None
) -> tuple[Tensor, float]:
    factor = float(scaling["factor"])
    original_length = scaling["original_max_position_embeddings"]
    beta_fast = scaling.get("beta_fast") or 32
    beta_slow = scaling.get("beta_slow") or 1

    def dim_for_rotations(rotations: float) -> float:
        # The rotary dimension whose wavelength fits `rotations` times into the original context.
        return dim * math.log(original_length / (rotations * 2 * math.pi)) / (2 * math.log(theta))

    low, high = dim_for_rotations(beta_fast), dim_for_rotations(beta_slow)
    if scaling.get("truncate", True):
        low, high = math.floor(low), math.ceil(high)
    low, high = max(low, 0), min(high, dim - 1)
    if low == high:
        high += 0.001  # avoid a zero-width ramp
    ramp = ((torch.arange(dim // 2, dtype=torch.float32, device=device) - low) / (high - low)).clamp(0, 1)
    # 1 for high-frequency dimensions (extrapolate), 0 for low-frequency ones (interpolate).
    keep_original = 1 - ramp

    wavelength_base = theta ** (
        torch.arange(0, dim, 2, dtype=torch.int64, device=device).to(torch.float32) / dim
    )
    extrapolated = 1.0 / wavelength_base
    interpolated = 1.0 / (factor * wavelength_base)
    inv_freq = interpolated * (1 - keep_original) + extrapolated * keep_original
    return inv_freq, _yarn_attention_factor(scaling, factor)


def _yarn_attention_factor(scaling: dict, factor: float) -> float:
    if scaling.get("attention_factor") is not None:
        return float(scaling["attention_factor"])

    def mscale(scale: float, m: float = 1.0) -> float:
        return 1.0 if scale <= 1 else 0.1 * m * math.log(scale) + 1.0

    if scaling.get("mscale") and scaling.get("mscale_all_dim"):
        return mscale(factor, scaling["mscale"]) / mscale(factor, scaling["mscale_all_dim"])
    return mscale(factor)


def rope_parameters(config: Qwen3Config, device: torch.device | str | None = None) -> tuple[Tensor, float]:
    """(inv_freq [head_dim // 2] fp32, attention_scaling applied to cos and sin)."""
    if config.rope_scaling is None:
        return default_inv_freq(config.rope_theta, config.head_dim, device), 1.0
    return yarn_inv_freq(config.rope_theta, config.head_dim, config.rope_scaling, device)


class RotaryEmbedding(nn.Module):
    """cos/sin tables for given absolute positions; inv_freq is a non-persistent fp32 buffer."""

    def __init__(self, config: Qwen3Config):
        super().__init__()
        self.config = config
        # Always computed on the CPU, even while the model is built on the meta device (where the math would
        # import torch._dynamo); ``reset_buffers`` or ``.to()`` moves it.
        inv_freq, self.attention_scaling = rope_parameters(config, "cpu")
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def _apply(self, fn, recurse: bool = True):
        # Module.to(dtype) / .half() / .bfloat16() cast every floating buffer; rounded frequencies would misplace
        # every position (at position 10,000 a bf16 inv_freq is off by whole radians), so a dtype cast leaves
        # inv_freq in fp32, as init_model builds it and as transformers keeps it. Moves between devices apply.
        saved = self.inv_freq
        super()._apply(fn, recurse)
        if self.inv_freq.dtype != saved.dtype:
            self.inv_freq = saved.to(self.inv_freq.device)
        return self

    def reset_buffers(self, device: torch.device | str) -> None:
        """Recompute inv_freq on ``device`` (after building the model on the meta device)."""
        self.inv_freq = rope_parameters(self.config, device)[0]

    def forward(self, positions: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """positions [B, T] -> cos, sin [B, T, head_dim] in ``dtype`` (angles computed in fp32)."""
        angles = positions[..., None].to(torch.float32) * self.inv_freq.to(torch.float32)
        angles = torch.cat((angles, angles), dim=-1)
        cos, sin = angles.cos() * self.attention_scaling, angles.sin() * self.attention_scaling
        return cos.to(dtype), sin.to(dtype)


def rotate_half(x: Tensor) -> Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rotary(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """x [B, H, T, D]; cos, sin [B, T, D]."""
    cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)
    return x * cos + rotate_half(x) * sin
