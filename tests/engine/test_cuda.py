"""The engine on a CUDA device gives what it gives on the CPU. These run where a GPU is present and skip elsewhere
(CI and the development machines are CPU-only); run them on a GPU machine with
``python -m pytest tests/engine/test_cuda.py``.

``QWEN3_TEST_DEVICE`` names another device to run the same checks on (``cpu`` checks the tests themselves).

fp32 on both sides with TF32 off, so greedy tokens must agree exactly (init std 0.1 keeps the top two logits far
enough apart that the devices' different summation orders cannot swap them on these short runs); bf16 is compared
through log-probabilities, within bf16 noise.
"""

from __future__ import annotations

import os

import pytest
import torch

from qwen3.engine import SamplingParams

from .conftest import GREEDY, make_llm, make_model, random_prompt

DEVICE = os.environ.get("QWEN3_TEST_DEVICE", "cuda")
pytestmark = pytest.mark.skipif(
    DEVICE == "cuda" and not torch.cuda.is_available(), reason="no CUDA device here"
)

PRESETS = ["qwen3-debug-tiny", "qwen3-debug-moe-tiny"]
PROMPTS = [random_prompt(n, seed=n) for n in (5, 17, 40)]


@pytest.fixture(autouse=True)
def exact_fp32():
    """TF32 off for the test (torch's backend flags are properties, so saved and restored by hand)."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


def tokens(llm, prompts, params=GREEDY) -> list[list[int]]:
    return [out.outputs[0].token_ids for out in llm.generate(prompts, params)]


def cuda_llm(preset: str, dtype=torch.float32, **engine):
    return make_llm(model=make_model(preset).to(device=DEVICE, dtype=dtype), **engine)


@pytest.mark.parametrize("preset", PRESETS)
def test_greedy_tokens_equal_the_cpu_engine(preset):
    expected = tokens(make_llm(preset), PROMPTS)
    llm = cuda_llm(preset)
    assert llm.engine.runner.device.type == torch.device(DEVICE).type
    assert tokens(llm, PROMPTS) == expected


@pytest.mark.parametrize("preset", PRESETS)
def test_batched_equals_one_at_a_time_and_chunked_prefill_changes_nothing(preset):
    llm = cuda_llm(preset)
    together = tokens(llm, PROMPTS)
    assert together == [tokens(llm, [p])[0] for p in PROMPTS]
    chunked = cuda_llm(preset, max_num_batched_tokens=16)
    assert tokens(chunked, PROMPTS) == together


def test_bf16_logprobs_are_close_to_the_cpu_fp32_ones():
    params = SamplingParams(temperature=0, max_tokens=4, ignore_eos=True, logprobs=5)
    cpu = make_llm().generate(PROMPTS, params)
    gpu = cuda_llm("qwen3-debug-tiny", dtype=torch.bfloat16).generate(PROMPTS, params)
    for ours, reference in zip(gpu, cpu, strict=True):
        first_ours, first_reference = ours.outputs[0].logprobs[0], reference.outputs[0].logprobs[0]
        for token in first_ours.keys() & first_reference.keys():
            assert abs(first_ours[token].logprob - first_reference[token].logprob) < 0.1


def test_seeded_sampling_repeats_on_the_gpu():
    params = SamplingParams(temperature=1.0, top_p=0.9, top_k=50, max_tokens=12, seed=7, ignore_eos=True)
    llm = cuda_llm("qwen3-debug-tiny")
    assert tokens(llm, PROMPTS, params) == tokens(llm, PROMPTS, params)


def test_weight_updates_reach_the_gpu_engine():
    model = make_model().to(DEVICE)
    llm = make_llm(model=model)
    before = tokens(llm, PROMPTS[:1])
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "proj" in name:
                p.mul_(-1.0)  # an in-place "optimizer step" on the GPU
    llm.sync_weights()
    assert tokens(llm, PROMPTS[:1]) != before
