"""The FLOP counter against a hand count and against the models' own parameters."""

from __future__ import annotations

import pytest

from qwen3.model.checkpoint import init_model
from qwen3.model.presets import get_preset
from qwen3.train.flops import ComputeCounter, matmul_params


def test_debug_tiny_by_hand():
    # H=64, I=128, 2 layers, 4 query heads and 2 kv heads of 16, vocab 512, tied.
    attention = 64 * 64 + 2 * (64 * 32) + 64 * 64  # q, k, v, o
    norms = 16 + 16 + 64 + 64  # q_norm, k_norm, two layer norms
    mlp = 3 * 64 * 128
    expected = 2 * (attention + norms + mlp) + 64 + 64 * 512  # final norm, LM head
    assert expected == 106_880
    assert matmul_params(get_preset("qwen3-debug-tiny")) == expected


@pytest.mark.parametrize("preset", ["qwen3-debug-tiny", "qwen3-debug-5m"])
def test_dense_n_is_every_parameter_but_the_input_embedding(preset):
    model = init_model(get_preset(preset).replace(tie_word_embeddings=False))
    total = sum(p.numel() for p in model.parameters())
    assert matmul_params(model.config) == total - model.model.embed_tokens.weight.numel()


def test_moe_counts_only_the_routed_experts():
    config = get_preset("qwen3-debug-moe-tiny")  # 8 experts, top-2, moe width 32
    model = init_model(config)
    total = sum(p.numel() for p in model.parameters()) - model.model.embed_tokens.weight.numel()
    idle_experts = config.num_hidden_layers * (8 - 2) * 3 * 64 * 32
    assert matmul_params(config) == total - idle_experts


def test_counter_sums_6n_per_trained_and_2n_per_forward_token():
    counter = ComputeCounter({"student": 10, "teacher": 20})
    counter.train("student", 100)
    counter.forward("student", 30)  # rollout
    counter.forward("teacher", 100)
    counter.train("student", 50)
    totals = counter.totals()
    assert totals["student_train_tokens"] == 150 and totals["student_forward_tokens"] == 30
    assert totals["student_flops"] == 6 * 10 * 150 + 2 * 10 * 30
    assert totals["teacher_flops"] == 2 * 20 * 100
    assert totals["flops"] == totals["student_flops"] + totals["teacher_flops"]
    restored = ComputeCounter({"student": 10, "teacher": 20})
    restored.load_state_dict(counter.state_dict())
    assert restored.totals() == totals
    with pytest.raises(KeyError, match="unknown model 'critic'"):
        counter.train("critic", 1)
    with pytest.raises(ValueError, match="positive parameter count"):
        ComputeCounter({"student": 0})
