"""The reward model: Bradley-Terry training separates chosen from rejected; save/load; batched scoring."""

from __future__ import annotations

import pytest
import torch

from qwen3.eval import Reply
from qwen3.train.reward_model import (
    RewardModel,
    RewardModelReward,
    bradley_terry,
    pair_accuracy,
    run_stage,
    synthetic_pairs,
)
from qwen3.train.settings import SettingsError
from qwen3.world import Item


def rm_table(run_dir, steps=40, **reward_model):
    return {
        "run_dir": str(run_dir), "stage": "reward-model", "steps": steps, "micro_batch_size": 16,
        "log_every": 1000, "model": {"name": "qwen3-debug-tiny"},
        "data": {"kind": "sft", "synthetic": "chat", "seq_len": 128},
        "optim": {"lr": 3e-3, "weight_decay": 0.0}, "schedule": {"kind": "cosine", "warmup_steps": 5},
        "reward_model": {"pairs": 128, "eval_pairs": 48, **reward_model},
    }  # fmt: skip


def test_bradley_terry_by_hand():
    loss = bradley_terry(torch.tensor([2.0, 0.0]), torch.tensor([0.0, 0.0]))
    expected = (torch.nn.functional.softplus(torch.tensor(-2.0)) + torch.log(torch.tensor(2.0))) / 2
    assert loss.item() == pytest.approx(expected.item())


def test_training_separates_chosen_from_rejected_and_the_directory_round_trips(tmp_path):
    result = run_stage(rm_table(tmp_path / "run", steps=30), progress=False)
    assert result.eval_accuracy >= 0.7  # an untrained (zero) head scores every pair equal: accuracy 0
    assert sum(result.losses[-5:]) < sum(result.losses[:5])
    loaded = RewardModel.load(result.output)
    held_out = synthetic_pairs(48, seed=1_000_003)
    assert pair_accuracy(loaded, held_out, 128) == pytest.approx(result.eval_accuracy)
    # Batched scoring with padding gives each conversation's own score.
    pair = held_out[0]
    conversations = [[*p.messages, {"role": "assistant", "content": p.chosen}] for p in held_out[:5]]
    together = loaded.score(conversations, batch_size=5)
    alone = [loaded.score([c])[0] for c in conversations]
    assert together == pytest.approx(alone, abs=1e-5)
    # As a reward-system piece: a probability, higher for the preferred reply.
    reward = RewardModelReward(loaded)
    query = Item(
        "preference", "p", "train", pair.messages, {"chosen": pair.chosen, "rejected": pair.rejected}
    )
    good = reward(query, Reply.from_text(pair.chosen, enable_thinking=False))
    bad = reward(query, Reply.from_text(pair.rejected, enable_thinking=False))
    assert 0.0 <= bad.score < good.score <= 1.0 and "reward model: score" in good.reason


def test_refusals(tmp_path):
    with pytest.raises(SettingsError, match="reward_model.source"):
        run_stage(rm_table(tmp_path, source="humans"))
    with pytest.raises(SettingsError, match="unknown key 'reward_model.size'"):
        run_stage(rm_table(tmp_path, size=3))
    with pytest.raises(FileNotFoundError, match="not a reward-model directory"):
        RewardModel.load(tmp_path)


def test_an_interrupted_run_resumes_to_the_losses_of_an_uninterrupted_one(tmp_path):
    from qwen3.train.metrics import read_metrics

    common = {"schedule": {"kind": "constant"}, "checkpoint": {"every": 4}}
    whole = run_stage({**rm_table(tmp_path / "whole", steps=8), **common}, progress=False)
    run_stage({**rm_table(tmp_path / "cut", steps=4), **common}, progress=False)  # stops after checkpoint 4
    resumed = run_stage({**rm_table(tmp_path / "cut", steps=8), **common}, resume=True, progress=False)
    assert resumed.losses == pytest.approx(whole.losses[4:], rel=1e-6)
    assert [r["loss"] for r in read_metrics(tmp_path / "cut")] == pytest.approx(whole.losses, rel=1e-6)
    assert resumed.eval_accuracy == pytest.approx(whole.eval_accuracy)
    with pytest.raises(SettingsError, match="pass --resume or --overwrite"):
        run_stage({**rm_table(tmp_path / "cut", steps=8), **common}, progress=False)
    with pytest.raises(SettingsError, match="no complete reward-model checkpoint"):
        run_stage(rm_table(tmp_path / "empty"), resume=True, progress=False)
