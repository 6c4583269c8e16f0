"""The C decode kernels against the torch computations they replace."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from qwen3.engine import SamplingParams, cpu_kernels
from qwen3.engine.fast_weights import FusedForward, Int8Linear
from qwen3.model.layers import RMSNorm
from qwen3.model.rope import RotaryEmbedding, apply_rotary

from .conftest import make_llm, make_model, random_prompt

pytestmark = pytest.mark.skipif(cpu_kernels.library() is None, reason="no C compiler / CPU kernels here")
DTYPES = [torch.float32, torch.bfloat16]


def ulp_close(ours: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, ulps: float = 2.0) -> None:
    """Within a few units in the last place of ``dtype`` (bf16 has 8 bits of mantissa)."""
    eps = torch.finfo(dtype).eps
    scale = expected.float().abs().clamp(min=1e-3)
    assert ((ours.float() - expected.float()).abs() / scale).max() <= ulps * eps + 1e-6


@pytest.mark.parametrize("rows", [1, 2, 3, 5, 8])
@pytest.mark.parametrize(("out_features", "in_features"), [(37, 128), (64, 48)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_woq_int8_matmul(rows, out_features, in_features, dtype):
    gen = torch.Generator().manual_seed(rows)
    linear = Int8Linear(torch.randn(out_features, in_features, generator=gen))
    x = torch.randn(rows, in_features, generator=gen).to(dtype)
    ours = cpu_kernels.woq_int8_matmul(x, linear.weight, linear.scales)
    expected = F.linear(x.float(), linear.dequantized())
    assert ours.dtype == dtype and ours.shape == (rows, out_features)
    torch.testing.assert_close(
        ours.float(), expected, rtol=8e-3 if dtype == torch.bfloat16 else 1e-5, atol=1e-4
    )


def test_woq_int8_matmul_refuses_large_batches():
    linear = Int8Linear(torch.randn(8, 64))
    with pytest.raises(
        cpu_kernels.KernelError, match=r"woq_int8_matmul: the kernel refused the shape \(9, 64\)"
    ):
        cpu_kernels.woq_int8_matmul(torch.randn(9, 64), linear.weight, linear.scales)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_delta", [False, True])
def test_add_rms_norm(dtype, with_delta):
    gen = torch.Generator().manual_seed(0)
    norm = RMSNorm(96, eps=1e-6).to(dtype)
    with torch.no_grad():
        norm.weight.copy_(1 + 0.1 * torch.randn(96, generator=gen))
    h = torch.randn(5, 96, generator=gen).to(dtype)
    delta = torch.randn(5, 96, generator=gen).to(dtype) if with_delta else None
    h_out, y = cpu_kernels.add_rms_norm(h, delta, norm.weight.detach(), norm.eps)
    summed = h + delta if with_delta else h
    assert torch.equal(h_out, summed)
    with torch.no_grad():
        ulp_close(y, norm(summed), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_mul(dtype):
    gate_up = (torch.randn(3, 2 * 40, generator=torch.Generator().manual_seed(1)) * 4).to(dtype)
    gate, up = gate_up.chunk(2, dim=-1)
    ulp_close(cpu_kernels.silu_mul(gate_up), F.silu(gate) * up, dtype)


def test_elementwise_kernels_past_their_size_limit_raise():
    """elementwise.c returns -1 beyond its stack buffers; the wrappers raise instead of returning garbage."""
    with pytest.raises(cpu_kernels.KernelError, match="silu_mul: the kernel refused intermediate size 32769"):
        cpu_kernels.silu_mul(torch.zeros(1, 2 * 32769))
    with pytest.raises(cpu_kernels.KernelError, match="add_rms_norm: the kernel refused hidden size 8193"):
        cpu_kernels.add_rms_norm(torch.zeros(1, 8193), None, torch.ones(8193), 1e-6)


def test_pack_pairs_is_the_documented_layout():
    weight = torch.randn(32, 10).to(torch.bfloat16)
    expected = weight.view(2, 16, 5, 2).transpose(1, 2).flatten()
    assert torch.equal(cpu_kernels.pack_pairs(weight), expected)


@pytest.mark.parametrize("dtype", DTYPES)
def test_argmax_matches_torch_including_ties(dtype):
    logits = torch.randn(6, 1000, generator=torch.Generator().manual_seed(2)).to(dtype)
    logits[1, 10] = logits[1, 900] = 50.0  # first index wins, as in torch
    logits[2, -1] = 60.0
    logits[3, :] = float("-inf")
    logits[3, 17] = 0.0
    logits[4, 500:] = logits[4].max()  # many equal maxima (bf16 has few distinct values)
    assert torch.equal(cpu_kernels.argmax(logits), logits.argmax(-1))
    assert torch.equal(cpu_kernels.argmax(logits[:, :13].contiguous()), logits[:, :13].argmax(-1))


def torch_decode_layer(qkv, q_norm, k_norm, cos, sin, keys, values, positions, heads, eps):
    """The reference: QK-norm, RoPE, cache write, masked SDPA with grouped queries."""
    batch, dim, kv_heads = qkv.shape[0], keys.shape[3], keys.shape[1]
    q, k, v = qkv.view(batch, 1, -1).split([heads * dim, kv_heads * dim, kv_heads * dim], dim=-1)
    shape = (batch, 1, -1, dim)
    q = apply_rotary(q_norm(q.view(shape)).transpose(1, 2), cos[:, None], sin[:, None])
    k = apply_rotary(k_norm(k.view(shape)).transpose(1, 2), cos[:, None], sin[:, None])
    v = v.view(shape).transpose(1, 2)
    rows = torch.arange(batch)
    keys[rows, :, positions] = k[:, :, 0]
    values[rows, :, positions] = v[:, :, 0]
    span = int(positions.max()) + 1
    mask = (torch.arange(span) <= positions[:, None])[:, None, None, :]
    out = F.scaled_dot_product_attention(
        q, keys[:batch, :, :span], values[:batch, :, :span], attn_mask=mask, enable_gqa=True
    )
    return out.reshape(batch, heads * dim)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(("heads", "kv_heads", "dim"), [(4, 2, 64), (2, 2, 128), (6, 2, 16), (3, 1, 64)])
def test_decode_layer_attention(dtype, heads, kv_heads, dim):
    gen = torch.Generator().manual_seed(heads * dim)
    batch, max_len = 3, 40
    positions = torch.tensor([5, 31, 0])
    qkv = torch.randn(batch, (heads + 2 * kv_heads) * dim, generator=gen).to(dtype)
    q_norm, k_norm = RMSNorm(dim).to(dtype), RMSNorm(dim).to(dtype)
    with torch.no_grad():
        q_norm.weight.copy_(1 + 0.2 * torch.randn(dim, generator=gen))
        k_norm.weight.copy_(1 + 0.2 * torch.randn(dim, generator=gen))
    angles = torch.arange(max_len)[:, None].float() * (1.0 / 10000 ** (torch.arange(0, dim, 2) / dim))
    angles = torch.cat((angles, angles), -1)
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)  # tables by position
    caches = [torch.randn(batch + 1, kv_heads, max_len, dim, generator=gen).to(dtype) for _ in range(2)]
    ours_keys, ours_values = (c.clone() for c in caches)
    out = cpu_kernels.decode_layer_attention(
        qkv, q_norm.weight.detach(), k_norm.weight.detach(), cos, sin, ours_keys, ours_values, positions, heads,
        32, 1e-6,
    )  # fmt: skip
    with torch.no_grad():
        expected = torch_decode_layer(
            qkv, q_norm, k_norm, cos[positions], sin[positions], *caches, positions, heads, 1e-6
        )
    tolerance = 2e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(ours_keys.float(), caches[0].float(), rtol=tolerance, atol=tolerance)
    assert torch.equal(ours_values, caches[1])
    torch.testing.assert_close(out.float(), expected.float(), rtol=tolerance, atol=tolerance)


def test_engine_without_kernels_gives_the_same_tokens(monkeypatch):
    prompts = [random_prompt(n, seed=n) for n in (6, 19)]
    params = SamplingParams(temperature=0, max_tokens=20, ignore_eos=True)
    with_kernels = make_llm(weights="fused").generate(prompts, params)
    monkeypatch.setattr(cpu_kernels, "_library", None)
    llm = make_llm(weights="fused")
    assert not llm.engine.runner.cache.decode_kernel
    without = llm.generate(prompts, params)
    assert [o.outputs[0].token_ids for o in without] == [o.outputs[0].token_ids for o in with_kernels]


@pytest.mark.parametrize("dtype", DTYPES)
def test_rope_tables_equal_the_rotary_embedding(dtype):
    """The decode kernels read cos/sin rows of a table: they must be the values the model computes per position,
    beyond the first table's length too, and rebuilt when the rotary module is replaced (rope scaling)."""
    model = make_model().to(dtype)
    forward = FusedForward(model, "fused")
    positions = torch.tensor([[0], [7], [255], [256], [900]])
    for rotary in (model.model.rotary_emb, RotaryEmbedding(model.config.replace(rope_theta=500.0))):
        model.model.rotary_emb = rotary
        cos, sin = forward.rope_tables(int(positions.max()) + 1)
        expected_cos, expected_sin = rotary(positions, dtype)
        assert cos.shape[0] > 900 and cos.dtype == dtype
        assert torch.equal(cos[positions[:, 0]], expected_cos[:, 0])
        assert torch.equal(sin[positions[:, 0]], expected_sin[:, 0])


# -- the pair-packed bf16 GEMM of many-row decode steps -----------------------------------------------------------
needs_gemm = pytest.mark.skipif(
    cpu_kernels.library() is None or not cpu_kernels.gemm_available(),
    reason="no AVX512-BF16 GEMM on this CPU",
)


@needs_gemm
@pytest.mark.parametrize(("rows", "in_features", "out_features"), [(1, 2, 16), (5, 64, 48), (13, 256, 80),
                                                                   (64, 256, 512), (7, 768, 16)])  # fmt: skip
def test_gemm_bf16_matches_the_exact_product(rows, in_features, out_features):
    """Every tile shape (row and column remainders) against the product in float64; rounding as torch's."""
    gen = torch.Generator().manual_seed(rows)
    x = torch.randn(rows, in_features, generator=gen).to(torch.bfloat16)
    w = torch.randn(out_features, in_features, generator=gen).to(torch.bfloat16)
    packed = cpu_kernels.pack_pairs(w)
    blocks = w.view(out_features // 16, 16, in_features // 2, 2).transpose(1, 2)  # [N / 16, K / 2, 16, 2]
    assert torch.equal(packed.view(blocks.shape), blocks)
    exact = cpu_kernels.gemm_bf16(x, packed, out_features, store="float32")
    expected = x.double() @ w.double().T
    torch.testing.assert_close(exact.double(), expected, rtol=1e-5, atol=1e-5 * in_features)
    rounded = cpu_kernels.gemm_bf16(x, packed, out_features)
    assert rounded.dtype == torch.float32 and torch.equal(rounded, exact.to(torch.bfloat16).float())
    assert torch.equal(
        cpu_kernels.gemm_bf16(x, packed, out_features, store="bfloat16"), exact.to(torch.bfloat16)
    )


@needs_gemm
def test_pack_pairs_and_gemm_refuse_what_they_cannot_take():
    with pytest.raises(ValueError, match=r"pack_pairs: .* \(20, 64\)"):
        cpu_kernels.pack_pairs(torch.zeros(20, 64, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="pack_pairs: .*float32"):
        cpu_kernels.pack_pairs(torch.zeros(16, 64))
    packed = cpu_kernels.pack_pairs(torch.zeros(16, 64, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"gemm_bf16: x .*\(3, 32\)"):
        cpu_kernels.gemm_bf16(torch.zeros(3, 32, dtype=torch.bfloat16), packed, 16)


def top_logprobs(llm, prompts, index: int) -> list[dict[int, float]]:
    """Log-probabilities of the top tokens at generated token ``index`` (0: from the prefill alone; 1: after the
    first decode step)."""
    params = SamplingParams(temperature=0, max_tokens=index + 1, ignore_eos=True, logprobs=5)
    outs = llm.generate(prompts, params)
    return [{t: lp.logprob for t, lp in o.outputs[0].logprobs[index].items()} for o in outs]


def assert_logprobs_close(ours: list[dict[int, float]], theirs: list[dict[int, float]]) -> None:
    """Within bf16 noise: the same top token where it leads clearly, every shared token within 0.05."""
    for got, expected in zip(ours, theirs, strict=True):
        top = sorted(expected.values(), reverse=True)
        if top[0] - top[1] > 0.1:
            assert max(got, key=got.get) == max(expected, key=expected.get)
        for token in got.keys() & expected.keys():
            assert abs(got[token] - expected[token]) < 0.05


@needs_gemm
@pytest.mark.parametrize("rows", [2, 9, 13])
def test_many_row_decode_step_matches_the_layer_path(rows, monkeypatch):
    """bf16: batches of several sequences run the whole step in one C call on the pair-packed GEMM; its logits are
    those of the layer-by-layer path (oneDNN products) within bf16 rounding."""
    prompts = [random_prompt(4 + 3 * n, seed=n) for n in range(rows)]
    llm = make_llm(model=make_model().to(torch.bfloat16), weights="packed")
    ours = top_logprobs(llm, prompts, 1)
    forward = llm.engine.runner.forward
    assert forward._step is not None and forward._step.packed is not None  # the GEMM step really ran
    monkeypatch.setattr(cpu_kernels.DecodeStep, "GEMM_MIN_ROWS", 10**6)
    layer_path = top_logprobs(make_llm(model=make_model().to(torch.bfloat16), weights="packed"), prompts, 1)
    assert_logprobs_close(ours, layer_path)


@needs_gemm
def test_many_row_step_needs_room_for_its_packed_weights(monkeypatch):
    """The packed copy is made only with room for it twice over; without, the layer path runs (same tokens)."""
    from qwen3.engine import fast_weights

    prompts = [random_prompt(5 + n, seed=n) for n in range(4)]
    params = SamplingParams(temperature=0, max_tokens=6, ignore_eos=True)
    model = make_model().to(torch.bfloat16)
    monkeypatch.setattr(fast_weights, "available_memory", lambda: 0)
    llm = make_llm(model=model, weights="packed")
    tokens = [o.outputs[0].token_ids for o in llm.generate(prompts, params)]
    assert llm.engine.runner.forward._packs is False
    monkeypatch.setattr(cpu_kernels.DecodeStep, "GEMM_MIN_ROWS", 10**6)
    reference = make_llm(model=model, weights="packed").generate(prompts, params)
    assert tokens == [o.outputs[0].token_ids for o in reference]


def test_float32_models_keep_the_layer_path():
    prompts = [random_prompt(5 + n, seed=n) for n in range(3)]
    llm = make_llm(weights="packed")
    llm.generate(prompts, SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))
    assert llm.engine.runner.forward._packs is False


# -- the causal attention of prefill segments ----------------------------------------------------------------------
def sdpa_prefill(q, keys, values, slot, start):
    """The reference: fp32 SDPA over the slot's positions 0..start+T-1, query i seeing 0..start+i."""
    end = start + q.shape[2]
    mask = torch.arange(end)[None, :] <= torch.arange(start, end)[:, None]
    k, v = keys[slot : slot + 1, :, :end].float(), values[slot : slot + 1, :, :end].float()
    return F.scaled_dot_product_attention(q.float(), k, v, attn_mask=mask, enable_gqa=True)


def prefill_inputs(heads, kv_heads, dim, length, start, seed=0, q_scale=2.0):
    """bf16 queries [1, Hq, T, D] as the model makes them (a transposed view) and a 3-slot cache whose positions past
    start+T hold NaN: the kernel must never read them."""
    gen = torch.Generator().manual_seed(seed)
    q = (q_scale * torch.randn(1, length, heads, dim, generator=gen)).to(torch.bfloat16).transpose(1, 2)
    keys, values = (torch.randn(3, kv_heads, 320, dim, generator=gen).to(torch.bfloat16) for _ in range(2))
    for cache in (keys, values):
        cache[:, :, start + length :] = float("nan")
    return q, keys, values


@needs_gemm
@pytest.mark.parametrize(
    ("heads", "kv_heads", "dim", "length", "start"),
    [
        (4, 2, 64, 37, 0),  # G 2: blocks of 32 queries, a partial one; keys in a block and a partial one
        (4, 2, 64, 37, 45),  # chunked prefill: the keys before the segment are all visible
        (2, 2, 128, 70, 0),  # G 1
        (8, 2, 128, 29, 100),  # G 4, start not a multiple of the key block
        (2, 1, 64, 1, 0),  # a single query
        (4, 2, 128, 1, 201),  # a single query late in the slot: odd key count
        (10, 2, 64, 23, 3),  # G 5: 60 rows of 64 used
    ],
)  # fmt: skip
def test_prefill_attention_matches_sdpa(heads, kv_heads, dim, length, start):
    """Against fp32 SDPA on the same bf16 inputs: within the output's bf16 rounding (1 eps relative) plus half an eps
    of the values' scale (the probabilities are rounded to bf16 before they weight the values)."""
    q, keys, values = prefill_inputs(heads, kv_heads, dim, length, start, seed=length + start)
    ours = cpu_kernels.prefill_attention(q, keys, values, 1, start)
    expected = sdpa_prefill(q, keys, values, 1, start)
    assert ours.dtype == torch.bfloat16 and ours.shape == q.shape
    eps = torch.finfo(torch.bfloat16).eps
    assert ((ours.float() - expected).abs() <= eps * (expected.abs() + 0.5)).all()


@needs_gemm
def test_prefill_attention_writes_into_strided_output():
    """The engine's buffer: [1, N, Hq, D] seen as [1, Hq, N, D]; a segment fills its rows and nothing else."""
    q, keys, values = prefill_inputs(4, 2, 64, 20, 7)
    buffer = torch.zeros(1, 30, 4, 64, dtype=torch.bfloat16)
    out = buffer.transpose(1, 2)[:, :, 5:25]
    assert cpu_kernels.prefill_attention(q, keys, values, 2, 7, out=out) is out
    assert torch.equal(out, cpu_kernels.prefill_attention(q.contiguous(), keys, values, 2, 7))
    dims_apart = q.transpose(2, 3).contiguous().transpose(2, 3)  # head dims T apart: copied first
    assert torch.equal(out, cpu_kernels.prefill_attention(dims_apart, keys, values, 2, 7))
    assert not buffer[:, :5].any() and not buffer[:, 25:].any()


@needs_gemm
def test_prefill_attention_refuses_what_it_cannot_take():
    q, keys, values = prefill_inputs(4, 2, 64, 10, 0)
    with pytest.raises(ValueError, match=r"prefill_attention: q torch.float32 \(1, 4, 10, 64\)"):
        cpu_kernels.prefill_attention(q.float(), keys, values, 0, 0)
    narrow = torch.zeros(3, 2, 320, 48, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match=r"cache torch.bfloat16 \(3, 2, 320, 48\)"):
        cpu_kernels.prefill_attention(q[..., :48], narrow, narrow, 0, 0)
    with pytest.raises(ValueError, match="positions 315..324 of slot 0 are outside"):
        cpu_kernels.prefill_attention(q, keys, values, 0, 315)
    with pytest.raises(ValueError, match=r"q \(2, 4, 10, 64\) is not \[1, Hq, T, D\]"):
        cpu_kernels.prefill_attention(q.expand(2, -1, -1, -1), keys, values, 0, 0)
    with pytest.raises(ValueError, match="slot 3"):
        cpu_kernels.prefill_attention(q, keys, values, 3, 0)


@needs_gemm
def test_engine_prefill_runs_the_kernel_chunked_or_not(monkeypatch):
    """bf16, head_dim 32: whole and chunked prefills (segments of up to 8 tokens, start > 0) run the kernel for
    every segment, and their first-token log-probabilities match the torch path's (SDPA) within bf16 noise."""
    calls = []
    kernel = cpu_kernels.prefill_attention

    def counted(q, keys, values, slot, start, out=None):
        calls.append((q.shape[2], start))
        return kernel(q, keys, values, slot, start, out)

    monkeypatch.setattr(cpu_kernels, "prefill_attention", counted)
    model = make_model(head_dim=32).to(torch.bfloat16)
    prompts = [random_prompt(n, seed=n) for n in (50, 7, 33)]
    whole = top_logprobs(make_llm(model=model, weights="fused"), prompts, 0)
    assert sorted(calls) == sorted([(7, 0), (33, 0), (50, 0)] * model.config.num_hidden_layers)
    calls.clear()
    chunked = top_logprobs(make_llm(model=model, weights="fused", max_num_batched_tokens=8), prompts, 0)
    assert max(length for length, _ in calls) <= 8 and max(start for _, start in calls) >= 40
    calls.clear()
    reference = top_logprobs(make_llm(model=model, weights="reference"), prompts, 0)
    assert not calls  # the reference weights keep the torch path
    for ours, theirs in [(whole, reference), (chunked, reference), (chunked, whole)]:
        assert_logprobs_close(ours, theirs)
