"""One bad request fails alone: range checks at admission (``SamplingParams``), and whatever still fails inside an
engine step (sampling, the forward of a prefill, the per-token bookkeeping) fails only the culprit, with its own
error, while the other requests get exactly the tokens they get without it."""

from __future__ import annotations

import math

import pytest

from qwen3.engine import SamplingParams
from qwen3.engine.sampling_params import INT32_MAX, INT64_MAX, MAX_N

from .conftest import make_llm, random_prompt

PROMPTS = [random_prompt(9 + i, seed=40 + i) for i in range(3)]


def greedy(**kw) -> SamplingParams:
    return SamplingParams(**{"temperature": 0.0, "max_tokens": 12, "ignore_eos": True, **kw})


def seeded(seed: int) -> SamplingParams:
    return SamplingParams(temperature=1.0, top_k=50, top_p=0.9, seed=seed, max_tokens=12, ignore_eos=True)


@pytest.mark.parametrize(
    "field, value",
    [
        ("top_k", 2**63),  # the reproducer: past C's long long
        ("top_k", INT32_MAX + 1),  # past the sampling kernel's int32
        ("n", MAX_N + 1),
        ("seed", 2**63),
        ("seed", -(2**63) - 1),
        ("max_tokens", INT64_MAX + 1),
        ("thinking_budget", 2**64),
        ("logprobs", 21),
        ("temperature", math.nan),
        ("temperature", math.inf),
        ("temperature", 1e300),  # fp32 logits / inf -> NaN
        ("top_p", math.nan),
        ("min_p", -math.inf),
        ("repetition_penalty", 1e-300),  # logits / 1e-300 -> inf
        ("presence_penalty", math.nan),
        ("ignore_eos", "yes"),
        ("skip_special_tokens", 1),
    ],
)
def test_out_of_range_fields_are_refused_naming_the_field(field, value):
    with pytest.raises(ValueError, match=rf"^SamplingParams\.{field} "):
        SamplingParams(**{field: value})


@pytest.mark.parametrize("stop_token_ids", [[2**64], [-1], [1.5], [True]])
def test_bad_stop_token_ids_are_refused(stop_token_ids):
    with pytest.raises(ValueError, match=r"^SamplingParams\.stop_token_ids\[0\]"):
        SamplingParams(stop_token_ids=stop_token_ids)


def test_the_largest_values_in_range_are_served():
    llm = make_llm()
    params = SamplingParams(
        top_k=INT32_MAX, seed=INT64_MAX, n=2, max_tokens=3, thinking_budget=INT64_MAX, temperature=1e-6
    )
    assert params.temperature == 0.0  # below MIN_TEMPERATURE: greedy, as vLLM
    out = llm.generate([PROMPTS[0]], params)[0]
    assert [o.finish_reason for o in out.outputs] in (["length", "length"], ["stop", "stop"])


@pytest.fixture(scope="module")
def llm():
    return make_llm()


@pytest.fixture(scope="module")
def reference(llm):
    """What the well-formed requests give without the bad one."""
    params = [greedy(), seeded(7), greedy()]
    return [out.outputs[0].token_ids for out in llm.generate(PROMPTS, params)]


def test_params_broken_after_admission_fail_only_their_request(llm, reference):
    bad = greedy(top_k=5, temperature=1.0)
    bad.top_k = 2**63  # changed after validation: the sampling kernel cannot take it
    outs = llm.generate(
        [PROMPTS[0], PROMPTS[1], "bad prompt", PROMPTS[2]], [greedy(), seeded(7), bad, greedy()]
    )
    failed = outs[2].outputs[0]
    assert failed.finish_reason == "error"
    assert failed.error is not None and "top_k" in failed.error
    assert [o.outputs[0].token_ids for i, o in enumerate(outs) if i != 2] == reference
    assert not llm.engine.has_unfinished() and not llm.engine.scheduler.running


def test_a_failing_prefill_fails_only_the_culprit(llm, reference, monkeypatch):
    engine = llm.engine
    forward = engine.runner.run

    def run(batch):
        if batch.is_prefill and any(seq.num_prompt_tokens == 5 for seq in batch.seqs):
            raise RuntimeError("injected forward failure")
        return forward(batch)

    monkeypatch.setattr(engine.runner, "run", run)
    outs = llm.generate(
        [PROMPTS[0], random_prompt(5, seed=3), PROMPTS[1], PROMPTS[2]],
        [greedy(), greedy(), seeded(7), greedy()],
    )
    assert outs[1].outputs[0].finish_reason == "error"
    assert "injected forward failure" in outs[1].outputs[0].error
    assert [o.outputs[0].token_ids for i, o in enumerate(outs) if i != 1] == reference


def test_failing_bookkeeping_fails_only_its_sequence(llm, reference, monkeypatch):
    engine = llm.engine
    append = engine._append_sampled

    def append_sampled(seq, token, logprobs, chosen):
        if seq.request_id == victim[0] and seq.num_output_tokens == 4:
            raise UnicodeError("injected detokenizer failure")
        return append(seq, token, logprobs, chosen)

    victim = [str(engine_next_id(llm) + 1)]  # the second request of the next call
    monkeypatch.setattr(engine, "_append_sampled", append_sampled)
    outs = llm.generate(
        [PROMPTS[0], PROMPTS[0], PROMPTS[1], PROMPTS[2]], [greedy(), greedy(), seeded(7), greedy()]
    )
    failed = outs[1].outputs[0]
    assert failed.finish_reason == "error" and "injected detokenizer failure" in failed.error
    assert [o.outputs[0].token_ids for i, o in enumerate(outs) if i != 1] == reference


def engine_next_id(llm) -> int:
    """The id ``LLM`` gives its next request (ids are consecutive integers)."""
    probe = llm.generate([PROMPTS[0]], greedy(max_tokens=1))[0]
    return int(probe.request_id) + 1


def test_streaming_deltas_carry_the_error(llm):
    bad = greedy()
    bad.top_k = 2**40
    bad.temperature = 1.0
    deltas = list(llm.stream([PROMPTS[0], PROMPTS[1]], [greedy(), bad]))
    errors = [d for d in deltas if d.error is not None]
    assert len(errors) == 1 and errors[0].finished and errors[0].finish_reason == "error"
    assert "SamplingParams.top_k" in errors[0].error
    assert [d.finish_reason for d in deltas if d.finished and d.error is None] == ["length"]
