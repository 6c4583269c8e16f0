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
def test_fast_weights_with_ten_sequences(preset):
    """Ten sequences decode layer by layer (projections in torch, the rest in the per-layer kernels)."""
    prompts = [random_prompt(3 + 2 * n, seed=n) for n in range(10)]
    reference = completions(make_llm(preset), prompts, GREEDY.replace(max_tokens=8))
    assert completions(make_llm(preset, weights="fused"), prompts, GREEDY.replace(max_tokens=8)) == reference


@pytest.mark.parametrize("weights", ["fused", "packed", "int8"])
@pytest.mark.parametrize("rows", [1, 3])
def test_whole_step_kernel_gives_the_reference_tokens(weights, rows, monkeypatch):
    """The one-call decode step (the engine uses it for one sequence; the kernel takes up to 8 rows)."""
    from qwen3.engine import cpu_kernels

    if cpu_kernels.library() is None:
        pytest.skip("no CPU kernels here")
    monkeypatch.setattr(cpu_kernels.DecodeStep, "MAX_ROWS", rows)
    prompts = [random_prompt(5 + 7 * n, seed=n) for n in range(rows)]
    llm = make_llm(weights=weights)
    got = completions(llm, prompts)
    assert llm.engine.runner.forward._step is not None  # the kernel really ran
    # int8 weights are compared with the layer-by-layer int8 path, float weights with the reference model.
    monkeypatch.setattr(cpu_kernels.DecodeStep, "MAX_ROWS", 0)
    reference = completions(make_llm(weights="int8" if weights == "int8" else "reference"), prompts)
    assert got == reference


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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("weights", ["fused", "packed", "int8"])
def test_weight_updates_reach_the_engine(weights, dtype):
    """RL: the trainer updates the model in place; the engine generates with the new weights (after
    sync_weights for the layouts that hold copies) and the model's parameters stay trainable. Three sequences:
    in bf16 "packed" they decode in the C step's GEMM on its own packed copy."""
    model = make_model().to(dtype)
    params_before = {name: id(p) for name, p in model.named_parameters()}
    llm = make_llm(model=model, weights=weights)
    assert {name: id(p) for name, p in model.named_parameters()} == params_before
    assert all(p.requires_grad for p in model.parameters())
    prompts = [random_prompt(9, seed=2 + n) for n in range(3)]
    before = completions(llm, prompts)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "proj" in name:
                p.mul_(-1.0)  # an in-place "optimizer step" the outputs must notice
    if weights != "fused":  # the fused layout reads the model's own storage: no sync needed
        llm.sync_weights()
    updated = make_model().to(dtype)
    with torch.no_grad():
        for p, q in zip(updated.parameters(), model.parameters()):
            p.copy_(q)
    expected = completions(make_llm(model=updated, weights=weights), prompts)
    after = completions(llm, prompts)
    assert after == expected and after != before
    loss = model(torch.tensor(prompts)).float().logsumexp(-1).mean()
    loss.backward()  # still trainable: gradients reach the (fused-view) parameters
    assert model.model.layers[0].self_attn.q_proj.weight.grad is not None
