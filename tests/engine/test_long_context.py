"""Long context: YaRN from rope_scaling (parity with transformers), Dual Chunk Attention (equal to plain attention
within one chunk, equal to a brute-force per-pair construction, and running beyond the trained length)."""

from __future__ import annotations

import pytest
import torch

from qwen3.engine import LLM, SamplingParams
from qwen3.engine.dca import DualChunkAttention
from qwen3.model.rope import apply_rotary, default_inv_freq

from .conftest import make_llm, make_model, random_prompt
from .test_parity import transformers_greedy

YARN = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": 16}


def tokens(llm: LLM, prompt, max_tokens=30) -> list[int]:
    params = SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True)
    return llm.generate([prompt], params)[0].outputs[0].token_ids


def test_yarn_greedy_equals_transformers():
    prompt = random_prompt(20, seed=2)  # 20 + 30 tokens: far beyond YaRN's original 16 positions
    expected = transformers_greedy(make_model(rope_scaling=YARN, max_position_embeddings=64), prompt, 30)
    llm = make_llm(model=make_model(rope_scaling=YARN, max_position_embeddings=64), max_model_len=None)
    assert llm.engine.max_model_len == 64  # original x factor
    assert tokens(llm, prompt) == expected


def test_rope_scaling_override_equals_a_yarn_checkpoint():
    prompt = random_prompt(20, seed=2)
    checkpoint = make_llm(model=make_model(rope_scaling=YARN, max_position_embeddings=64))
    override = make_llm(model=make_model(max_position_embeddings=64), rope_scaling=YARN)
    plain = make_llm(model=make_model(max_position_embeddings=64))
    assert tokens(override, prompt) == tokens(checkpoint, prompt) != tokens(plain, prompt)


def brute_force_dca(q_raw, k_raw, v, chunk, trained, inv_freq):
    """Per (query i, key j) pair: rotate q at its DCA position for that pair and k at j mod chunk."""
    _, length, dim = q_raw.shape

    def rotated(x, positions):
        angles = positions[..., None].float() * inv_freq
        angles = torch.cat((angles, angles), -1)
        return x * angles.cos() + torch.cat((-x[..., dim // 2 :], x[..., : dim // 2]), -1) * angles.sin()

    i = torch.arange(length)[:, None].expand(length, length)
    j = torch.arange(length)[None, :].expand(length, length)
    gap = i // chunk - j // chunk
    q_pos = torch.where(
        gap == 0, i % chunk, torch.where(gap == 1, (chunk + i % chunk).clamp(max=trained - 1), trained - 1)
    )
    q_pairs = rotated(q_raw[:, :, None, :], q_pos)  # [H, T, T, D]
    k_rot = rotated(k_raw, torch.arange(length) % chunk)  # [H, T, D]
    scores = (q_pairs * k_rot[:, None]).sum(-1) * dim**-0.5
    scores = scores.masked_fill(j > i, float("-inf"))
    return scores.softmax(-1) @ v


def test_dca_matches_the_per_pair_definition():
    heads, length, dim, chunk, trained = 2, 40, 16, 12, 16
    gen = torch.Generator().manual_seed(0)
    q_raw, k_raw, v = (torch.randn(heads, length, dim, generator=gen) for _ in range(3))
    inv_freq = default_inv_freq(100.0, dim)
    dca = DualChunkAttention(chunk, trained, inv_freq, query_block=7)
    positions = torch.arange(length)
    within = dca.model_positions(positions)
    angles = within[:, None].float() * inv_freq
    cos, sin = torch.cat((angles, angles), -1).cos()[None], torch.cat((angles, angles), -1).sin()[None]
    q_in, k_in = apply_rotary(q_raw[None], cos, sin), apply_rotary(k_raw[None], cos, sin)
    ours = dca.prefill(q_in, k_in, v[None], positions)[0]
    expected = brute_force_dca(q_raw, k_raw, v, chunk, trained, inv_freq)
    assert torch.allclose(ours, expected, atol=1e-5)
    # Decoding the last query alone gives the same row.
    last = dca.decode(q_in[:, :, -1:], k_in, v[None], positions[-1:])[0, :, 0]
    assert torch.allclose(last, expected[:, -1], atol=1e-5)


def dca_llm(model=None, **engine):
    engine.setdefault("dca_chunk_size", 48)
    model = model or make_model(max_position_embeddings=64)
    return make_llm(
        model=model, dual_chunk_attention=True, max_model_len=engine.pop("max_model_len", 256), **engine
    )


def test_dca_equals_plain_attention_within_one_chunk():
    prompt = random_prompt(20, seed=4)  # 20 + 25 < 48 tokens
    plain = make_llm(model=make_model(max_position_embeddings=64))
    assert tokens(dca_llm(), prompt, 25) == tokens(plain, prompt, 25)


def test_dca_runs_beyond_the_trained_length():
    llm = dca_llm()
    assert llm.engine.resolved.trained_length == 64
    prompt = random_prompt(100, seed=5)  # 100 + 120 tokens, 3.4x the trained 64
    out = tokens(llm, prompt, 120)
    assert len(out) == 120
    # Chunked prefill and decode see the same attention as one big prefill.
    assert tokens(dca_llm(max_num_batched_tokens=16), prompt, 120) == out
    # and it differs from plain attention, which sees distances it was never trained on
    plain = make_llm(model=make_model(max_position_embeddings=64), max_model_len=256)
    assert tokens(plain, prompt, 120) != out


def test_dca_with_yarn():
    model = make_model(rope_scaling=YARN, max_position_embeddings=64)
    llm = dca_llm(model=model, dca_chunk_size=12)
    assert llm.engine.resolved.trained_length == 16  # YaRN's original length
    prompt = random_prompt(8, seed=6)
    plain = make_llm(model=make_model(rope_scaling=YARN, max_position_embeddings=64))
    assert tokens(llm, prompt, 3) == tokens(plain, prompt, 3)  # 11 tokens fit in one chunk of 12
    assert len(tokens(llm, random_prompt(60, seed=7), 40)) == 40


def test_dca_chunk_larger_than_trained_length():
    with pytest.raises(ValueError, match="dca_chunk_size 100 must be in"):
        dca_llm(dca_chunk_size=100)
