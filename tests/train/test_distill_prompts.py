"""Distillation's prompt source: the synthetic chats or a world family's train items (``distill.task``)."""

from __future__ import annotations

import json

import pytest

from qwen3.train.distill import (
    DistillConfig,
    distill_prompts,
    prompt_items,
    record_prompts,
    synthetic_prompts,
)
from qwen3.train.settings import SettingsError
from qwen3.world import generate


def test_world_task_prompts_are_the_family_train_queries():
    spec = DistillConfig(task="world:reasoning", prompts=12, prompt_seed=3)
    prompts = distill_prompts(spec)
    items = generate("reasoning", "train", 12, seed=3)
    # the queries grpo.task = "world:reasoning" draws from
    assert prompts == [item.messages for item in items]
    assert all(item.split == "train" for item in prompt_items(spec))
    test = {item.query_hash for item in generate("reasoning", "test", 200, seed=3)}
    assert not {item.query_hash for item in prompt_items(spec)} & test
    prompts[0][0]["content"] = "changed"  # the prompts are copies: the items stay as generated
    assert distill_prompts(spec)[0] == items[0].messages


def test_synthetic_is_the_default_source():
    assert DistillConfig().task == "synthetic"
    assert distill_prompts(DistillConfig(prompts=5, prompt_seed=2)) == synthetic_prompts(5, 2)
    assert prompt_items(DistillConfig(prompts=5)) == []


@pytest.mark.parametrize("task", ["world:nosuch", "reasoning", "digits"])
def test_unknown_tasks_are_refused(task):
    with pytest.raises(SettingsError, match="distill.task"):
        DistillConfig(task=task)


def test_tool_items_are_refused_not_silently_stripped():
    with pytest.raises(SettingsError, match="offers tools"):
        distill_prompts(DistillConfig(task="world:tooluse", prompts=2))


def test_record_prompts_writes_ids_a_recipe_can_check(tmp_path):
    spec = DistillConfig(task="world:reasoning", prompts=4)
    record_prompts(spec, tmp_path)
    lines = [json.loads(line) for line in (tmp_path / "data" / "prompts.jsonl").read_text().splitlines()]
    assert [line["id"] for line in lines] == [item.id for item in prompt_items(spec)]
    assert all(line["id"].startswith("reasoning-train-") for line in lines)
    record_prompts(DistillConfig(prompts=4), tmp_path / "synthetic")
    assert not (tmp_path / "synthetic").exists()
