"""GRPO under ``torchrun --nproc_per_node 2`` (gloo): queries sharded by rank, each rank its own engine, the same
rewards and losses as one process."""

from __future__ import annotations

import json

import pytest

from qwen3.train.grpo import run_grpo
from qwen3.train.metrics import read_metrics

from .conftest import torchrun_config
from .test_grpo import small

pytestmark = pytest.mark.distributed


OPTIONS = ("steps=4", "grpo.num_iterations=2", "grpo.beta=0.05", "grpo.eval_every=2", "grpo.eval_prompts=6")


def torchrun(table, tmp_path, name):
    torchrun_config(table, tmp_path / f"{name}.json")


def assert_same_run(one, two):
    assert len(one) == len(two) == 4
    for a, b in zip(one, two):
        for key in ("reward_mean", "reward_std", "accuracy", "response_length"):
            assert a[key] == pytest.approx(b[key], rel=1e-9), key
        for key in ("loss", "entropy", "kl", "grad_norm"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-7), key
        # The compute is counted over all ranks: the same totals as one process.
        for key in ("policy_train_tokens", "policy_forward_tokens", "reference_forward_tokens", "flops"):
            assert a[key] == b[key], key
    assert [r.get("val_accuracy") for r in one] == [r.get("val_accuracy") for r in two]


@pytest.mark.parametrize("strategy", ["ddp", "fsdp"])
def test_two_processes_give_the_rewards_and_losses_of_one(tmp_path, strategy):
    # DDP: each rank's engine shares its module; FSDP2: each rank's engine owns a copy loaded from the gathered
    # full state after every update, and the old log-probabilities come from that copy.
    run_grpo(small(tmp_path / "one", *OPTIONS), progress=False)
    # 2 ranks x 2 micro-batches of 4
    torchrun(
        small(tmp_path / "two", *OPTIONS, "micro_batch_size=4", f"distributed={strategy}"), tmp_path, "two"
    )
    assert json.loads((tmp_path / "two" / "train_config.json").read_text())["distributed"] == strategy
    assert_same_run(read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two"))
