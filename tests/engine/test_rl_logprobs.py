"""Logprobs for RL: "processed" logprobs are those of the distribution sampled from; the flat token_logprobs list
and the forced mask; the trainer's token_logprobs reproduces the engine's processed logprobs."""

from __future__ import annotations

import pytest
import torch

from qwen3.engine import SamplingParams
from qwen3.train.batch import IGNORE
from qwen3.train.logprobs import token_logprobs

from .conftest import make_llm, make_model, random_prompt


def model_logits(model, prompt, output):
    with torch.no_grad():
        return model(torch.tensor([prompt + output]))[0].float()  # [T, V]


def by_hand(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """log_softmax(logits / T), top-k, then top-p over the top-k renormalised (transformers' order), kept tokens
    renormalised, written out plainly."""
    logp = torch.log_softmax(logits.double() / temperature, dim=-1)
    order = logp.argsort(descending=True).tolist()[: top_k or None]
    top = logp[order] - torch.logsumexp(logp[order], dim=-1)
    keep = torch.zeros_like(logp, dtype=torch.bool)
    mass = 0.0
    for token, value in zip(order, top.tolist()):
        if mass >= top_p:
            break
        keep[token] = True
        mass += float(torch.tensor(value).exp())
    kept = logp.masked_fill(~keep, float("-inf"))
    return kept - torch.logsumexp(kept, dim=-1)


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(0.7, 0, 1.0), (1.3, 7, 1.0), (0.8, 0, 0.6),
                                                              (1.0, 12, 0.9)])  # fmt: skip
def test_processed_logprobs_are_those_of_the_sampled_distribution(temperature, top_k, top_p):
    model = make_model()
    llm = make_llm(model=model)
    prompt = random_prompt(7, seed=3)
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, max_tokens=8, ignore_eos=True,
                            seed=11, logprobs=2, logprobs_mode="processed")  # fmt: skip
    out = llm.generate([prompt], params)[0].outputs[0]
    logits = model_logits(model, prompt, out.token_ids)
    assert len(out.token_logprobs) == len(out.token_ids) == 8 and out.forced == [False] * 8
    for step, token in enumerate(out.token_ids):
        expected = by_hand(logits[len(prompt) - 1 + step], temperature, top_k, top_p)
        assert out.token_logprobs[step] == pytest.approx(float(expected[token]), abs=1e-5)
        assert out.logprobs[step][token].logprob == out.token_logprobs[step]
        top = expected.topk(2)
        for value, alt in zip(top.values.tolist(), top.indices.tolist()):
            assert out.logprobs[step][alt].logprob == pytest.approx(value, abs=1e-5)
    assert out.cumulative_logprob == pytest.approx(sum(out.token_logprobs))
    raw = llm.generate([prompt], params.replace(logprobs_mode="raw"))[0].outputs[0]
    assert raw.token_ids == out.token_ids  # the mode changes what is reported, not what is drawn
    expected_raw = torch.log_softmax(logits[len(prompt) - 1], -1)[out.token_ids[0]]
    assert raw.token_logprobs[0] == pytest.approx(float(expected_raw), abs=1e-5)


@pytest.mark.parametrize(("top_k", "top_p"), [(0, 1.0), (6, 1.0), (0, 0.7), (20, 0.95)])
def test_trainer_token_logprobs_match_the_engines_processed_logprobs(top_k, top_p):
    model = make_model()
    llm = make_llm(model=model)
    prompt = random_prompt(9, seed=8)
    params = SamplingParams(temperature=0.8, top_k=top_k, top_p=top_p, max_tokens=10, ignore_eos=True, seed=2,
                            token_logprobs=True, logprobs_mode="processed")  # fmt: skip
    out = llm.generate([prompt], params)[0].outputs[0]
    assert (
        out.logprobs is None and len(out.token_logprobs) == 10
    )  # the flat list alone: no dicts, no decoding
    ids = torch.tensor([prompt + out.token_ids])
    targets = torch.full((ids.shape[1],), IGNORE)
    targets[len(prompt) - 1 : -1] = torch.tensor(out.token_ids)
    with torch.no_grad():
        hidden = model.hidden_states(ids)[0]
        trainer = token_logprobs(hidden, model.lm_head.weight, targets, 0.8, top_k=top_k, top_p=top_p)
    torch.testing.assert_close(
        trainer[len(prompt) - 1 : -1], torch.tensor(out.token_logprobs), atol=1e-5, rtol=0
    )


def test_forced_tokens_are_masked_and_get_logprob_zero():
    llm = make_llm()
    think = llm.tokenizer.encode("<think>")
    prompt = random_prompt(5, seed=1) + think
    params = SamplingParams(temperature=1.0, seed=4, max_tokens=160, ignore_eos=True, thinking_budget=3,
                            token_logprobs=True, logprobs_mode="processed")  # fmt: skip
    out = llm.generate([prompt], params)[0].outputs[0]
    forced = [i for i, flag in enumerate(out.forced) if flag]
    assert out.num_forced_tokens == len(forced) > 0
    assert forced == list(range(3, 3 + len(forced)))  # right after the 3 thought tokens
    stop_text = llm.tokenizer.decode([out.token_ids[i] for i in forced])
    assert stop_text == params.thinking_stop_text
    assert all(out.token_logprobs[i] == 0.0 for i in forced)
    assert all(out.token_logprobs[i] < 0.0 for i in range(len(out.token_ids)) if not out.forced[i])


def test_bad_logprobs_mode_is_named():
    with pytest.raises(ValueError, match="SamplingParams.logprobs_mode must be one of"):
        SamplingParams(logprobs_mode="sampled")
    with pytest.raises(ValueError, match="SamplingParams.token_logprobs must be a bool"):
        SamplingParams(token_logprobs=1)


def test_processed_logprobs_keep_each_rows_settings_in_a_mixed_batch():
    from qwen3.engine.sampler import processed_logprobs

    logits = torch.randn(3, 50, generator=torch.Generator().manual_seed(0)) * 3
    params = [SamplingParams(temperature=0.0), SamplingParams(temperature=0.5, top_k=4),
              SamplingParams(temperature=1.2, top_p=0.8)]  # fmt: skip
    out = processed_logprobs(logits, params)
    torch.testing.assert_close(
        out[0], torch.log_softmax(logits[0], -1)
    )  # greedy: temperature 1, no truncation
    torch.testing.assert_close(out[1].double(), by_hand(logits[1], 0.5, 4, 1.0), atol=1e-5, rtol=0)
    torch.testing.assert_close(out[2].double(), by_hand(logits[2], 1.2, 0, 0.8), atol=1e-5, rtol=0)
    assert int(torch.isfinite(out[1]).sum()) == 4


def test_the_picked_tokens_alone_equal_the_whole_distribution():
    # Without top-logprob dicts the sampler computes only the picked tokens' values (one logsumexp per row).
    from types import SimpleNamespace

    from qwen3.engine.sampler import Sampler, chosen_logprobs

    g = torch.Generator().manual_seed(3)
    logits = torch.randn(6, 50, generator=g) * 3
    params = [
        SamplingParams(temperature=0.7, logprobs_mode="processed"),
        SamplingParams(temperature=1.3, top_k=5, logprobs_mode="processed"),
        SamplingParams(temperature=0.9, top_p=0.8, logprobs_mode="processed"),
        SamplingParams(temperature=0.0, logprobs_mode="processed"),  # greedy
        SamplingParams(temperature=0.6, logprobs_mode="raw"),
        SamplingParams(temperature=1.0, logprobs_mode="processed"),
    ]
    seqs = [SimpleNamespace(params=p) for p in params]
    wanted = [0, 1, 2, 3, 4, 5]
    picked = logits.argmax(dim=-1)  # kept by every truncation
    whole = Sampler._distribution(logits, logits, seqs, wanted).gather(1, picked[:, None])[:, 0]
    torch.testing.assert_close(
        chosen_logprobs(logits, logits, seqs, wanted, picked), whole, atol=1e-6, rtol=0
    )
