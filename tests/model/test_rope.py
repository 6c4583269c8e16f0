import pytest
import torch

from qwen3.engine.loading import load_model_and_tokenizer
from qwen3.model.checkpoint import init_model
from qwen3.model.presets import get_preset


def _inv_freq(model) -> torch.Tensor:
    return model.model.rotary_emb.inv_freq


@pytest.mark.parametrize(
    "cast", [lambda m: m.to(torch.bfloat16), lambda m: m.half(), lambda m: m.to("cpu", torch.bfloat16)]
)
def test_a_dtype_cast_keeps_ropes_frequencies_in_fp32(cast):
    model = init_model(get_preset("qwen3-debug-tiny"))
    before = _inv_freq(model).clone()
    cast(model)
    assert model.lm_head.weight.dtype != torch.float32  # the weights were cast
    assert _inv_freq(model).dtype == torch.float32
    assert torch.equal(_inv_freq(model), before)


def test_a_cast_model_places_positions_like_a_model_built_in_that_dtype():
    config = get_preset("qwen3-debug-tiny")
    cast = init_model(config).to(torch.bfloat16)
    built = init_model(config, torch.bfloat16)
    positions = torch.tensor([[0, 1, 4095, 30000]])
    for got, want in zip(
        cast.model.rotary_emb(positions, torch.float32), built.model.rotary_emb(positions, torch.float32)
    ):
        assert torch.equal(got, want)


def test_the_engine_casting_a_ready_model_keeps_ropes_frequencies_in_fp32():
    model, _ = load_model_and_tokenizer(init_model(get_preset("qwen3-debug-tiny")), dtype="bfloat16")
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert _inv_freq(model).dtype == torch.float32
