"""Rollouts from our engine on the policy module: seeds, groups, logprobs against the trainer's, in-place weights,
the thinking budget's forced tokens, and the rows GRPO trains on."""

from __future__ import annotations

import pytest
import torch

from qwen3.chat import render
from qwen3.engine.sampling_params import SamplingParams
from qwen3.model.checkpoint import init_model, load_config
from qwen3.tokenizer.train import debug_tokenizer
from qwen3.train.batch import IGNORE, Row, collate
from qwen3.train.grpo import _row, sequence_logprobs
from qwen3.train.rollout import RolloutEngine, rollout_seed

QUERIES = [[{"role": "user", "content": f"Question {i}: what comes next?"}] for i in range(3)]


@pytest.fixture(scope="module")
def tokenizer():
    return debug_tokenizer(512)


def policy(seed: int = 0) -> torch.nn.Module:
    return init_model(load_config("qwen3-debug-tiny"), torch.float32, "cpu", seed).train()


def engine(model, tokenizer, weights="reference"):
    return RolloutEngine(model, tokenizer, weights=weights, max_model_len=256, max_num_seqs=32)


def params(**changes):
    return SamplingParams(**{"n": 4, "temperature": 1.0, "max_tokens": 10, **changes})


def test_rollout_seeds_are_stable_and_distinct():
    assert rollout_seed(0, 5, 0) == rollout_seed(0, 5, 0)
    seeds = {rollout_seed(seed, draw, 0) for seed in range(3) for draw in range(100)}
    assert len(seeds) == 300 and all(0 <= s < 2**63 for s in seeds)


def test_a_query_samples_the_same_group_alone_or_in_a_batch(tokenizer):
    model = policy()
    rollouts = engine(model, tokenizer)
    together = rollouts.generate(QUERIES, params(), [11, 12, 13], enable_thinking=False)
    alone = rollouts.generate(QUERIES[1:2], params(), [12], enable_thinking=False)
    assert [len(group) for group in together] == [4, 4, 4]
    assert [r.token_ids for r in together[1]] == [r.token_ids for r in alone[0]]
    assert len({tuple(r.token_ids) for r in together[1]}) > 1  # the group's members differ
    assert model.training  # building the engine did not switch the policy to eval mode


@pytest.mark.parametrize(("temperature", "top_k", "top_p"), [(1.0, 0, 1.0), (0.7, 0, 1.0), (0.7, 20, 0.9)])
def test_engine_logprobs_match_the_trainer_rows(tokenizer, temperature, top_k, top_p):
    model = policy()
    sampling = params(temperature=temperature, top_k=top_k, top_p=top_p)
    groups = engine(model, tokenizer).generate(QUERIES, sampling, [1, 2, 3], enable_thinking=False)
    rollouts = [r for group in groups for r in group]
    rows = [_row(r, 0.0, mask_truncated=False) for r in rollouts]
    batch = collate([Row(row["input_ids"], row["labels"]) for row in rows], pad_id=0)
    with torch.no_grad():
        logp, _, _ = sequence_logprobs(model, batch, temperature=temperature, top_k=top_k, top_p=top_p)
    for i, (row, rollout) in enumerate(zip(rows, rollouts)):
        positions = [p for p, label in enumerate(row["labels"]) if label != IGNORE]
        assert [row["labels"][p] for p in positions] == rollout.token_ids
        assert logp[i, positions].tolist() == pytest.approx(rollout.logprobs, abs=1e-4)


def test_reference_weights_see_updates_in_place_and_packed_ones_after_sync(tokenizer):
    greedy = SamplingParams(n=1, temperature=0.0, max_tokens=8)

    def tokens(rollouts):
        return [g[0].token_ids for g in rollouts.generate(QUERIES, greedy, [0, 0, 0], enable_thinking=False)]

    model = policy()
    shared, packed = engine(model, tokenizer), engine(model, tokenizer, "packed")
    before = tokens(shared)
    assert tokens(packed) == before
    with torch.no_grad():
        for parameter in model.model.layers.parameters():  # an "optimizer step", a large one
            parameter.add_(torch.randn_like(parameter))
    after = tokens(shared)
    assert after != before
    assert tokens(packed) == before  # a copy: stale until synced
    packed.sync()
    assert tokens(packed) == after


def test_thinking_budget_tokens_are_marked_forced_and_never_trained_on(tokenizer):
    rollouts = engine(policy(), tokenizer)
    budget = params(n=2, max_tokens=200, thinking_budget=3)
    # A random model never opens a thought itself: the prompt (rendered text) opens it.
    prompt = render(QUERIES[0], add_generation_prompt=True, enable_thinking=True) + "<think>\n"
    groups = rollouts.generate([prompt], budget, [5])
    for rollout in groups[0]:
        assert any(rollout.forced) and "</think>" in rollout.text
        assert sum(not f for f in rollout.forced[: rollout.forced.index(True)]) == 3  # the budget
        assert all(lp == 0.0 for lp, f in zip(rollout.logprobs, rollout.forced) if f)
        row = _row(rollout, 1.0, mask_truncated=False)
        trained = [label for label in row["labels"] if label != IGNORE]
        assert len(trained) == len(rollout.token_ids) - sum(rollout.forced)


def test_truncated_rollouts_can_be_masked(tokenizer):
    (group,) = engine(policy(), tokenizer).generate(
        QUERIES[:1], params(max_tokens=3), [9], enable_thinking=False
    )
    rollout = group[0]
    assert rollout.truncated and rollout.finish_reason == "length"
    assert set(_row(rollout, 1.0, mask_truncated=True)["labels"]) == {IGNORE}
    labels = _row(rollout, 1.0, mask_truncated=False)["labels"]
    assert [label for label in labels if label != IGNORE] == rollout.token_ids


def test_mismatched_seeds_are_rejected(tokenizer):
    with pytest.raises(ValueError, match="3 conversations but 1 seeds"):
        engine(policy(), tokenizer).generate(QUERIES, params(), [1])
