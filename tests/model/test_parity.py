"""Logits parity with transformers' Qwen3ForCausalLM / Qwen3MoeForCausalLM given the same weights (fp32)."""

import pytest
import torch

from qwen3.model.rope import rope_parameters

from .conftest import max_diff, tiny, tiny_model, to_transformers

YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}
CASES = {
    "dense-tied": tiny(),
    "dense-untied": tiny(tie_word_embeddings=False),
    "moe-norm-topk": tiny("qwen3-debug-moe-tiny", norm_topk_prob=True),
    "moe-no-norm-topk": tiny("qwen3-debug-moe-tiny", norm_topk_prob=False),
    "moe-mlp-only-and-step": tiny(
        "qwen3-debug-moe-tiny", num_hidden_layers=4, decoder_sparse_step=2, mlp_only_layers=[3]
    ),
    "dense-yarn": tiny(rope_scaling=YARN, max_position_embeddings=64),
    "moe-yarn": tiny("qwen3-debug-moe-tiny", rope_scaling=YARN, max_position_embeddings=64),
}


def _logits(config, length=40, seed=0):
    config = config.replace(initializer_range=0.1)
    model = tiny_model(config, seed)
    tokens = torch.randint(0, config.vocab_size, (2, length), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return model, tokens, model(tokens)


@pytest.mark.parametrize("case", list(CASES))
def test_logits_match_transformers(case):
    model, tokens, ours = _logits(CASES[case])  # 40 positions: beyond YaRN's original 16
    hf = to_transformers(model)
    with torch.no_grad():
        theirs = hf(tokens).logits
    assert ours.shape == (2, 40, model.config.vocab_size)
    assert max_diff(ours, theirs) <= 1e-4


@pytest.mark.parametrize(
    ("case", "variant"),
    [("moe-norm-topk", "moe-no-norm-topk"), ("dense-yarn", "dense-tied"), ("dense-tied", "dense-untied")],
)
def test_the_parity_cases_are_distinguishable(case, variant):
    """The 1e-4 tolerance is far below the effect of each feature the parity tests cover."""
    assert max_diff(_logits(CASES[case])[2], _logits(CASES[variant])[2]) > 1e-2


def test_router_logits_match_transformers():
    model, tokens, _ = _logits(CASES["moe-mlp-only-and-step"])
    hf = to_transformers(model)
    with torch.no_grad():
        ours = model(tokens, output_router_logits=True).router_logits
        theirs = hf(tokens, output_router_logits=True).router_logits
    assert len(ours) == len(theirs) == 1  # layers 1 (sparse), 0/2 (off-step) and 3 (mlp_only) dense
    assert max_diff(ours[0], theirs[0]) <= 1e-5


def test_yarn_inverse_frequencies_equal_transformers_for_qwen3_long_context():
    from transformers import Qwen3Config as HFConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    from qwen3.model.presets import get_preset

    scaling = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768}
    config = get_preset("qwen3-8b").replace(rope_scaling=scaling)
    hf_config = HFConfig(**{**config.to_dict(), "max_position_embeddings": 131072})
    theirs, their_scale = ROPE_INIT_FUNCTIONS["yarn"](hf_config, "cpu")
    ours, our_scale = rope_parameters(config)
    assert torch.equal(ours, theirs) and ours.dtype == torch.float32
    assert our_scale == pytest.approx(their_scale) and our_scale == pytest.approx(
        0.1 * torch.log(torch.tensor(4.0)).item() + 1
    )
    # The user's factor is honoured (old transformers used max_pos / original = 40960 / 32768 = 1.25 instead).
    assert (
        ours[-1].item() == pytest.approx(theirs[-1].item())
        and ours[-1] < rope_parameters(get_preset("qwen3-8b"))[0][-1] / 3.9
    )


def test_bfloat16_forward_runs_and_keeps_dtype():
    model = tiny_model(tiny("qwen3-debug-moe-tiny")).to(torch.bfloat16)
    tokens = torch.randint(0, 512, (2, 8))
    with torch.no_grad():
        logits = model(tokens)
    assert logits.dtype == torch.bfloat16 and torch.isfinite(logits).all()
    assert model.hidden_states(tokens).shape == (2, 8, 64)


@pytest.mark.parametrize("impl", ["grouped_mm", "loop"])
@pytest.mark.parametrize("shape", [(3, 7), (1, 1)])  # (1, 1): most experts get no token
def test_moe_implementations_match_reference_in_values_and_gradients(impl, shape):
    config = tiny("qwen3-debug-moe-tiny", initializer_range=0.1)
    tokens = torch.randint(0, 512, shape, generator=torch.Generator().manual_seed(1))
    results = {}
    for name in ("reference", impl):
        model = tiny_model(config)
        model.set_moe_impl(name)
        logits = model(tokens)
        logits.sum().backward()  # .sum() hands an expanded (stride-0) gradient to the experts' backward
        results[name] = (logits.detach(), {n: p.grad for n, p in model.named_parameters()})
    (ref_logits, ref_grads), (logits, grads) = results["reference"], results[impl]
    assert max_diff(logits, ref_logits) <= 1e-5
    for name, grad in ref_grads.items():
        assert max_diff(grads[name], grad) <= 1e-4, name


def test_gradient_checkpointing_gives_the_same_gradients():
    config = tiny("qwen3-debug-moe-tiny", initializer_range=0.1)
    tokens = torch.randint(0, 512, (2, 6))
    grads = []
    for checkpointing in (False, True):
        model = tiny_model(config).train()
        model.model.gradient_checkpointing = checkpointing
        model(tokens).square().mean().backward()
        grads.append({n: p.grad for n, p in model.named_parameters()})
    for name, grad in grads[0].items():
        assert max_diff(grads[1][name], grad) <= 1e-6, name


def test_forward_is_the_lm_head_over_hidden_states(monkeypatch):
    """One body: logits and router logits come from ``hidden_states``, so the two can never drift apart."""
    model = tiny_model(tiny("qwen3-debug-moe-tiny"))
    tokens = torch.randint(0, 512, (2, 8))
    positions = torch.arange(8).expand(2, 8) + 3
    with torch.no_grad():
        states = model.hidden_states(tokens, positions=positions, output_router_logits=True)
        out = model(tokens, positions=positions, output_router_logits=True)
        torch.testing.assert_close(out.logits, model.lm_head(states.hidden_states), rtol=0, atol=0)
        assert len(out.router_logits) == len(states.router_logits) == 2
        seen = []
        original = type(model).hidden_states
        monkeypatch.setattr(
            type(model), "hidden_states", lambda self, *a, **kw: seen.append(kw) or original(self, *a, **kw)
        )
        model(tokens, positions=positions)
    assert seen and seen[0]["positions"] is positions
