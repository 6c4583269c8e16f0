"""Helpers shared by the model tests: tiny configs and the bridge to transformers' Qwen3 models."""

from __future__ import annotations

import pytest
import torch

from qwen3.model.checkpoint import init_model
from qwen3.model.config import Qwen3Config
from qwen3.model.model import Qwen3ForCausalLM
from qwen3.model.presets import get_preset
from qwen3.model.weights import export_tensor, hf_tensors


def tiny(preset: str = "qwen3-debug-tiny", **changes) -> Qwen3Config:
    return get_preset(preset).replace(**changes)


def tiny_model(config: Qwen3Config, seed: int = 0) -> Qwen3ForCausalLM:
    model = init_model(config, torch.float32, "cpu", seed)
    # Random norm weights too, so that a transposed or misplaced norm cannot go unnoticed.
    with torch.no_grad():
        gen = torch.Generator().manual_seed(seed + 1)
        for name, param in model.named_parameters():
            if name.endswith("norm.weight"):
                param.copy_(1 + 0.1 * torch.randn(param.shape, generator=gen))
    return model


def to_transformers(model: Qwen3ForCausalLM):
    """A transformers Qwen3ForCausalLM / Qwen3MoeForCausalLM with the same config and weights (eager attention)."""
    import transformers

    hf_config = transformers.AutoConfig.for_model(**model.config.to_dict())
    hf_config._attn_implementation = "eager"
    hf = transformers.AutoModelForCausalLM.from_config(hf_config, dtype=torch.float32).eval()
    params = dict(model.named_parameters())
    shapes = {name: tuple(p.shape) for name, p in params.items()}
    state = {spec.name: export_tensor(spec, params) for spec in hf_tensors(shapes, "stacked")}
    result = hf.load_state_dict(state, strict=False)
    allowed_missing = {"lm_head.weight"} if model.config.tie_word_embeddings else set()
    assert set(result.missing_keys) <= allowed_missing and not result.unexpected_keys, result
    return hf


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a.float() - b.float()).abs().max().item()


@pytest.fixture
def tokens() -> torch.Tensor:
    return torch.randint(0, 512, (2, 12), generator=torch.Generator().manual_seed(0))
