"""Greedy decoding equals transformers' generate; batching, joining mid-flight, chunked prefill and the fast weight
layouts change nothing (dense and MoE, fp32)."""

from __future__ import annotations

import pytest
import torch

from qwen3.engine import LLM, SamplingParams
from tests.model.conftest import to_transformers

from .conftest import GREEDY, make_llm, make_model, random_prompt

PRESETS = ["qwen3-debug-tiny", "qwen3-debug-moe-tiny"]
LENGTHS = (5, 17, 40)


def transformers_greedy(model, prompt: list[int], new_tokens: int) -> list[int]:
    hf = to_transformers(model)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    with torch.no_grad():
        out = hf.generate(torch.tensor([prompt]), max_new_tokens=new_tokens, do_sample=False)
    return out[0, len(prompt) :].tolist()


def completions(llm: LLM, prompts, params=GREEDY) -> list[list[int]]:
    return [out.outputs[0].token_ids for out in llm.generate(prompts, params)]


@pytest.mark.parametrize("preset", PRESETS)
def test_greedy_equals_transformers_generate(preset):
    model = make_model(preset)
    prompts = [random_prompt(n, seed=n) for n in LENGTHS]
    expected = [transformers_greedy(model, p, 24) for p in prompts]
    assert completions(make_llm(model=make_model(preset)), prompts) == expected


@pytest.mark.parametrize("preset", PRESETS)
def test_batched_equals_one_at_a_time(preset):
    llm = make_llm(preset)
    prompts = [random_prompt(n, seed=10 + n) for n in (3, 9, 30, 31, 12)]
    together = completions(llm, prompts)
    alone = [completions(llm, [p])[0] for p in prompts]
    assert together == alone
    assert len({tuple(c) for c in together}) > 1  # the prompts really lead to different outputs


def test_requests_join_and_leave_mid_flight():
    llm = make_llm()
    engine = llm.engine
    prompts = {f"r{i}": random_prompt(6 + 5 * i, seed=i) for i in range(4)}
    lengths = {"r0": 30, "r1": 5, "r2": 17, "r3": 9}
    expected = {
        rid: completions(llm, [p], GREEDY.replace(max_tokens=lengths[rid]))[0] for rid, p in prompts.items()
    }
    got: dict[str, list[int]] = {rid: [] for rid in prompts}
    engine.add_request("r0", prompts["r0"], GREEDY.replace(max_tokens=lengths["r0"]))
    steps = 0
    while engine.has_unfinished():
        if steps in (2, 3, 7):  # new requests arrive while r0 (and later others) are decoding
            rid = {2: "r1", 3: "r2", 7: "r3"}[steps]
            engine.add_request(rid, prompts[rid], GREEDY.replace(max_tokens=lengths[rid]))
        for delta in engine.step():
            got[delta.request_id] += delta.token_ids
        steps += 1
    assert got == expected


def test_chunked_prefill_equals_unchunked():
    prompts = [random_prompt(n, seed=n) for n in (50, 7, 33)]
    whole = completions(make_llm(), prompts)
    chunked = completions(make_llm(max_num_batched_tokens=8), prompts)
    assert chunked == whole


def test_few_slots_queue_the_rest():
    prompts = [random_prompt(n, seed=n) for n in (4, 8, 15, 16, 23)]
    assert completions(make_llm(max_num_seqs=2), prompts) == completions(make_llm(), prompts)


@pytest.mark.parametrize("preset", PRESETS)
@pytest.mark.parametrize("weights", ["fused", "packed"])
def test_fast_weights_give_the_reference_tokens(preset, weights):
    prompts = [random_prompt(n, seed=n) for n in LENGTHS]
    reference = completions(make_llm(preset), prompts)
    assert completions(make_llm(preset, weights=weights), prompts) == reference


@pytest.mark.parametrize("preset", PRESETS)
def test_fast_weights_with_more_rows_than_the_decode_step_kernel(preset):
    """Ten sequences: the layer-by-layer kernel path (the whole-step C kernel takes at most 8 rows)."""
    prompts = [random_prompt(3 + 2 * n, seed=n) for n in range(10)]
    reference = completions(make_llm(preset), prompts, GREEDY.replace(max_tokens=8))
    assert completions(make_llm(preset, weights="fused"), prompts, GREEDY.replace(max_tokens=8)) == reference


@pytest.mark.parametrize("weights", ["fused", "packed", "int8"])
def test_fast_weights_logits_close_to_reference(weights):
    model = make_model()
    prompt = torch.tensor([random_prompt(20, seed=3)])
    with torch.no_grad():
        expected = model(prompt)[0, -1]
    llm = make_llm(weights=weights)
    params = SamplingParams(temperature=0, max_tokens=1, logprobs=0)
    out = llm.generate([prompt[0].tolist()], params)[0].outputs[0]
    ((token, logprob),) = out.logprobs[0].items()
    assert token == int(expected.argmax())
    tolerance = 5e-2 if weights == "int8" else 1e-4
    assert abs(logprob.logprob - float(torch.log_softmax(expected, -1)[token])) <= tolerance
