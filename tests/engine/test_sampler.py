"""Each sampling knob does what it is defined to do; filters and the repetition penalty match transformers' logits
processors; seeds make a request reproducible whatever else is in the batch; logprobs are the model's."""

from __future__ import annotations

import pytest
import torch
from transformers.generation.logits_process import (
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

from qwen3.engine import SamplingParams, cpu_kernels
from qwen3.engine.detokenizer import OutputText
from qwen3.engine.sampler import Sampler, apply_penalties, filtered_logits, sample_rows
from qwen3.engine.sequence import Sequence
from qwen3.engine.thinking_budget import ThinkingState, ThinkTokens

from .conftest import make_llm, make_model, random_prompt

VOCAB = 512


def vocab_probs(logits: torch.Tensor, params: list[SamplingParams]) -> torch.Tensor:
    values, indices = filtered_logits(logits, params)
    probs = values.softmax(-1)
    return probs if indices is None else torch.zeros_like(logits).scatter(1, indices, probs)


def transformers_probs(logits: torch.Tensor, p: SamplingParams) -> torch.Tensor:
    scores = logits.clone()
    for warper in (
        TemperatureLogitsWarper(p.temperature),
        TopKLogitsWarper(p.top_k) if p.top_k else None,
        TopPLogitsWarper(p.top_p) if p.top_p < 1 else None,
        MinPLogitsWarper(p.min_p) if p.min_p > 0 else None,
    ):
        if warper is not None:
            scores = warper(None, scores)
    return scores.softmax(-1)


@pytest.mark.parametrize(
    "settings",
    [
        {"temperature": 0.7},
        {"temperature": 1.3, "top_k": 20},
        {"temperature": 0.6, "top_p": 0.95, "top_k": 20},
        {"temperature": 0.9, "top_p": 0.5},
        {"temperature": 1.0, "min_p": 0.2},
        {"temperature": 0.5, "top_k": 50, "top_p": 0.8, "min_p": 0.05},
    ],
)
def test_filters_match_transformers(settings):
    logits = torch.randn(4, VOCAB, generator=torch.Generator().manual_seed(0)) * 3
    params = SamplingParams(**settings)
    ours = vocab_probs(logits, [params] * 4)
    theirs = transformers_probs(logits, params)
    assert torch.allclose(ours, theirs, atol=1e-6)
    if params.top_k or params.top_p < 1 or params.min_p:
        assert ((theirs > 0).sum(-1) < VOCAB).all()  # the filter really removed tokens


def test_rows_keep_their_own_settings():
    logits = torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(1)) * 3
    params = [SamplingParams(top_k=5), SamplingParams(top_p=0.3), SamplingParams(temperature=2.0)]
    ours = vocab_probs(logits, params)
    for row, p in enumerate(params):
        assert torch.allclose(ours[row], transformers_probs(logits[row : row + 1], p)[0], atol=1e-6)
    assert (ours[0] > 0).sum() == 5


def test_min_p_drops_tokens_below_the_fraction_of_the_best():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.1, 0.06, 0.04]]))
    probs = vocab_probs(logits, [SamplingParams(min_p=0.15)])[0]  # keeps p >= 0.075
    assert (probs[:3] > 0).all() and (probs[3:] == 0).all()
    assert torch.allclose(probs[:3], torch.tensor([0.5, 0.3, 0.1]) / 0.9)


def test_draws_follow_the_distribution():
    """Inverse-CDF sampling at evenly spaced uniforms hits each token in proportion to its probability."""
    probs = torch.tensor([0.5, 0.25, 0.125, 0.125])
    draws = 800
    logits = probs.log().expand(draws, -1)
    uniforms = [(i + 0.5) / draws for i in range(draws)]
    tokens = sample_rows(logits, [SamplingParams()] * draws, uniforms)
    counts = torch.bincount(tokens, minlength=4)
    assert counts.tolist() == [400, 200, 100, 100]


def make_sequence(tokenizer, prompt: list[int], output: list[int], params: SamplingParams) -> Sequence:
    text = OutputText(tokenizer, [], False, True, None)
    think = ThinkTokens(
        tokenizer.think_start_id,
        tokenizer.think_end_id,
        tokenizer.im_start_id,
        tokenizer.tool_call_start_id,
        (),
        (),
    )
    seq = Sequence("r", 0, prompt, params, torch.Generator(), text, ThinkingState(prompt, think, None))
    seq.append(output)
    return seq


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_greedy_rows_take_the_argmax_of_the_logits_as_given(tokenizer, dtype):
    """All-greedy batches skip the fp32 copy (bf16 logits straight from the LM head); mixed batches widen them.
    Either way the greedy token is the argmax of the fp32 values, the first one on ties."""
    logits = (torch.randn(3, VOCAB, generator=torch.Generator().manual_seed(5)) * 4).to(dtype)
    logits[1, 40] = logits[1, 7] = logits[1].max() + 1  # a tie: the lower id wins
    expected = logits.float().argmax(-1).tolist()
    greedy = [make_sequence(tokenizer, [1], [], SamplingParams(temperature=0)) for _ in range(3)]
    assert Sampler()(logits, greedy).tokens == expected == [expected[0], 7, expected[2]]
    mixed = [*greedy[:2], make_sequence(tokenizer, [1], [], SamplingParams(temperature=0, logprobs=1))]
    result = Sampler()(logits, mixed)
    assert result.tokens == expected and result.logprobs[2] is not None and result.logprobs[0] is None


@pytest.mark.parametrize("penalty", [1.3, 0.7])
def test_repetition_penalty_matches_transformers(tokenizer, penalty):
    prompt, output = [3, 7, 7, 20], [7, 41, 99]
    logits = torch.randn(1, VOCAB, generator=torch.Generator().manual_seed(2)) * 3
    seq = make_sequence(tokenizer, prompt, output, SamplingParams(repetition_penalty=penalty))
    ours = apply_penalties(logits.clone(), [seq])
    theirs = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([prompt + output]), logits.clone())
    assert torch.allclose(ours, theirs)
    assert not torch.allclose(ours, logits)


def test_presence_and_frequency_penalties_count_output_tokens(tokenizer):
    prompt, output = [3, 5], [7, 7, 7, 9]
    logits = torch.zeros(1, VOCAB)
    params = SamplingParams(presence_penalty=0.5, frequency_penalty=0.25)
    seq = make_sequence(tokenizer, prompt, output, params)
    out = apply_penalties(logits.clone(), [seq])[0]
    assert out[7] == pytest.approx(-0.5 - 3 * 0.25)
    assert out[9] == pytest.approx(-0.5 - 0.25)
    assert out[3] == 0 and out[5] == 0 and out[100] == 0  # prompt and unseen tokens untouched
    seq.append([9])  # counts follow new tokens
    assert apply_penalties(logits.clone(), [seq])[0, 9] == pytest.approx(-0.5 - 2 * 0.25)


def test_presence_penalty_reduces_repetition():
    llm = make_llm()
    prompt = random_prompt(8, seed=4)
    plain = llm.generate([prompt], SamplingParams(temperature=0, max_tokens=40, ignore_eos=True))
    penalised = llm.generate(
        [prompt], SamplingParams(temperature=0, max_tokens=40, ignore_eos=True, presence_penalty=2.0)
    )
    distinct = [len(set(o.outputs[0].token_ids)) for o in (plain[0], penalised[0])]
    assert distinct[1] > distinct[0]


def test_top_k_1_equals_greedy(llm):
    prompts = [random_prompt(n, seed=n) for n in (6, 13)]
    greedy = llm.generate(prompts, SamplingParams(temperature=0, max_tokens=20, ignore_eos=True))
    top1 = llm.generate(
        prompts, SamplingParams(temperature=1.5, top_k=1, max_tokens=20, ignore_eos=True, seed=3)
    )
    assert [o.outputs[0].token_ids for o in top1] == [o.outputs[0].token_ids for o in greedy]


def test_seed_reproducible_whatever_the_batch(llm):
    prompt = random_prompt(10, seed=1)
    params = SamplingParams(temperature=1.0, max_tokens=20, ignore_eos=True, seed=7)
    alone = llm.generate([prompt], params)[0].outputs[0].token_ids
    others = [random_prompt(n, seed=50 + n) for n in (3, 21, 8)]
    batch = [others[0], prompt, others[1], others[2]]
    mixed = [
        SamplingParams(temperature=0.8, max_tokens=11, ignore_eos=True, seed=1),
        params,
        SamplingParams(temperature=0, max_tokens=30, ignore_eos=True),
        SamplingParams(temperature=1.2, top_p=0.9, max_tokens=5, ignore_eos=True),
    ]
    assert llm.generate(batch, mixed)[1].outputs[0].token_ids == alone
    other_seed = llm.generate([prompt], params.replace(seed=8))[0].outputs[0].token_ids
    assert other_seed != alone


def test_n_completions_use_consecutive_seeds(llm):
    prompt = random_prompt(10, seed=2)
    params = SamplingParams(temperature=1.0, max_tokens=15, ignore_eos=True, seed=5)
    out = llm.generate([prompt], params.replace(n=3))[0]
    assert [o.index for o in out.outputs] == [0, 1, 2]
    second = llm.generate([prompt], params.replace(seed=6))[0].outputs[0].token_ids
    assert out.outputs[1].token_ids == second
    assert out.outputs[0].token_ids != out.outputs[1].token_ids


def test_logprobs_are_log_softmax_of_the_model_logits():
    model = make_model()
    llm = make_llm(model=make_model())
    prompt = random_prompt(9, seed=5)
    params = SamplingParams(temperature=1.0, max_tokens=6, ignore_eos=True, seed=0, logprobs=3)
    out = llm.generate([prompt], params)[0].outputs[0]
    assert len(out.logprobs) == len(out.token_ids) == 6
    total = 0.0
    for step, (token, entry) in enumerate(zip(out.token_ids, out.logprobs)):
        with torch.no_grad():
            expected = torch.log_softmax(model(torch.tensor([prompt + out.token_ids[:step]]))[0, -1], -1)
        assert entry[token].logprob == pytest.approx(float(expected[token]), abs=1e-4)
        assert entry[token].rank == int((expected > expected[token]).sum()) + 1
        top = expected.topk(3)
        for rank, (value, alt) in enumerate(zip(top.values.tolist(), top.indices.tolist()), start=1):
            assert entry[alt].logprob == pytest.approx(value, abs=1e-4) and entry[alt].rank == rank
        total += entry[token].logprob
    assert out.cumulative_logprob == pytest.approx(total)


def test_n_completions_prefill_the_prompt_once(llm):
    prompt = random_prompt(30, seed=4)
    params = SamplingParams(temperature=1.0, max_tokens=6, ignore_eos=True, seed=11)
    before = llm.engine.stats.prefill_tokens
    together = llm.generate([prompt], params.replace(n=4))[0].outputs
    assert llm.engine.stats.prefill_tokens - before == 30
    separate = [llm.generate([prompt], params.replace(seed=11 + i))[0].outputs[0].token_ids for i in range(4)]
    assert [o.token_ids for o in together] == separate


# -- the C sampling kernel (cpu_kernels.sample), against the torch path in float64 -------------------------------
needs_kernels = pytest.mark.skipif(cpu_kernels.library() is None, reason="no CPU kernels here")

SETTINGS = [
    {"temperature": 1.0},
    {"temperature": 0.6, "top_p": 0.95, "top_k": 20},
    {"temperature": 0.7, "top_p": 0.8, "top_k": 20},
    {"temperature": 0.9, "top_p": 0.5},
    {"temperature": 1.0, "min_p": 0.2},
    {"temperature": 0.5, "top_k": 50, "top_p": 0.8, "min_p": 0.05},
    {"temperature": 1.3, "top_k": 700},  # a large k: the quickselect path
    {"temperature": 1.0, "top_k": 1},
]


def midpoint_uniforms(logits: torch.Tensor, params: list[SamplingParams], seed: int):
    """Per row, a token the float64 reference may draw (probability > 1e-4) and the uniform at the middle of its
    share of the CDF in id order: the draw must give exactly that token, whatever the rounding."""
    probs = vocab_probs(logits.double(), params)
    gen = torch.Generator().manual_seed(seed)
    tokens, uniforms = [], []
    for row in probs:
        likely = (row > 1e-4).nonzero()[:, 0]
        token = int(likely[torch.randint(len(likely), (1,), generator=gen)])
        cdf = row.cumsum(0)
        tokens.append(token)
        uniforms.append(float((cdf[token] - row[token] / 2) / cdf[-1]))
    return tokens, uniforms


@needs_kernels
@pytest.mark.parametrize("vocab", [512, 3001])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernel_draws_what_the_reference_draws(vocab, dtype):
    """Rows with different settings in one call, masked (-inf) tokens, a vocabulary that is not a multiple of 16.
    bf16 logits tie often, and which of tied tokens top_k keeps is unspecified in torch (the kernel keeps the lower
    id), so bf16 rows run the settings without top_k."""
    settings = [s for s in SETTINGS if dtype == torch.float32 or "top_k" not in s]
    rows = 4 * len(settings)
    logits = (torch.randn(rows, vocab, generator=torch.Generator().manual_seed(vocab)) * 3).to(dtype)
    logits[:, 100:140] = float("-inf")
    params = [SamplingParams(**settings[r % len(settings)]) for r in range(rows)]
    for seed in range(5):
        tokens, uniforms = midpoint_uniforms(logits.float(), params, seed)
        assert cpu_kernels.sample(logits, params, uniforms).tolist() == tokens
    uniforms = torch.rand(rows, generator=torch.Generator().manual_seed(1), dtype=torch.float64).tolist()
    drawn = cpu_kernels.sample(logits, params, uniforms)
    assert not ((drawn >= 100) & (drawn < 140)).any()
    assert (drawn == sample_rows(logits.double(), params, uniforms)).float().mean() >= 0.95


@needs_kernels
def test_kernel_draws_follow_the_distribution():
    probs = torch.tensor([0.5, 0.25, 0.125, 0.125])
    draws = 800
    logits = probs.log().expand(draws, -1).contiguous()
    uniforms = [(i + 0.5) / draws for i in range(draws)]
    counts = torch.bincount(cpu_kernels.sample(logits, [SamplingParams()] * draws, uniforms), minlength=4)
    assert counts.tolist() == [400, 200, 100, 100]


@needs_kernels
def test_kernel_with_every_token_masked_gives_token_zero_and_bad_shapes_are_refused():
    logits = torch.full((2, 64), float("-inf"))
    assert cpu_kernels.sample(logits, [SamplingParams()] * 2, [0.3, 0.9]).tolist() == [0, 0]
    with pytest.raises(ValueError, match="sample: logits"):
        cpu_kernels.sample(torch.zeros(3, 8), [SamplingParams()], [0.5])
