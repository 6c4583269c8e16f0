"""Distillation under ``torchrun --nproc_per_node 2`` (gloo): rollouts and teacher replies sharded by rank, each
rank its own engine, the top-k store written once; the same losses and compute totals as one process."""

from __future__ import annotations

import pytest

from qwen3.train.distill import run_distill
from qwen3.train.metrics import read_metrics

from .conftest import torchrun_config
from .test_distill import distill_table

pytestmark = pytest.mark.distributed

COUNTERS = ("student_train_tokens", "student_forward_tokens", "teacher_forward_tokens", "flops")


def torchrun(table, tmp_path):
    torchrun_config(table, tmp_path / f"{table['distill']['mode']}.json")


@pytest.mark.parametrize("mode", ["on_policy", "off_policy_logits", "off_policy_sft"])
def test_two_processes_give_the_losses_and_compute_of_one(tmp_path, mode):
    extra = {"top_k": 8} if mode == "off_policy_logits" else {}
    one = distill_table(tmp_path / "one", mode, steps=3, **extra)
    run_distill(one, progress=False)
    two = distill_table(tmp_path / "two", mode, steps=3, **extra)
    two["micro_batch_size"], two["global_batch_size"] = 2, 8  # 2 ranks x 2 micro-batches of 2
    torchrun(two, tmp_path)
    first, second = read_metrics(tmp_path / "one"), read_metrics(tmp_path / "two")
    assert len(first) == len(second) == 3
    for a, b in zip(first, second):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4), a["step"]
        assert a["tokens"] == b["tokens"] and a["targets"] == b["targets"]  # the same rows, every step
        for key in COUNTERS:
            assert a[key] == b[key], key
    if mode == "off_policy_logits":
        from qwen3.train.topk_store import TopKStore

        # Written once by rank 0 (no temporary left by a second writer), with every rank's share in order.
        ones, twos = (TopKStore.load(tmp_path / run / "teacher_topk.safetensors") for run in ("one", "two"))
        assert [s.input_ids for s in ones.sequences] == [s.input_ids for s in twos.sequences]
        assert not [p.name for p in (tmp_path / "two").iterdir() if "tmp" in p.name]
