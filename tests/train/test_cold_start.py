"""Stage 1 (Long-CoT cold start): config checks, the data pipeline, and the end-to-end preset run."""

from __future__ import annotations

import json

import pytest
import tomllib

from qwen3.train.cli import config_path
from qwen3.train.cold_start import (
    ColdStartConfig,
    build_cold_start_data,
    builtin_items,
    run_cold_start,
    split_stage_table,
)
from qwen3.train.metrics import read_metrics
from qwen3.train.settings import SettingsError
from qwen3.world.items import check_disjoint


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"tasks": ["nope"]}, "cold_start.tasks: 'nope'"),
        ({"noise": {"typos": 0.1}}, "unknown kind 'typos'"),
        ({"noise": {"wrong_answer": 0.7, "guesswork": 0.5}}, "add up to 1.2"),
        ({"no_think_threshold": 1.5}, "cold_start.no_think_threshold"),
        ({"candidates_per_query": 0}, "cold_start.candidates_per_query"),
        ({"teacher": "/no/such/model"}, "cold_start.teacher"),
    ],
)
def test_config_errors_name_the_field(fields, message):
    with pytest.raises(SettingsError, match=message):
        ColdStartConfig(**fields)


def test_builtin_items_follow_the_hash_split_and_repeat_for_a_seed():
    train = builtin_items("arith", "train", 20, seed=1)
    validation = builtin_items("arith", "validation", 5, seed=1)
    check_disjoint({"train": train, "validation": validation})
    assert all(it.split == "train" for it in train)
    assert [it.messages for it in builtin_items("arith", "train", 20, seed=1)] == [
        it.messages for it in train
    ]


def test_pipeline_keeps_few_clean_thinking_examples_and_reports_the_rest(tmp_path):
    config = ColdStartConfig(tasks=["arith"], train_queries=12, validation_queries=4, no_think_samples=0,
                             candidates_per_query=3, responses_per_query=1, max_samples=8)  # fmt: skip
    data = build_cold_start_data(config)
    assert 0 < len(data.examples) <= 8
    assert all(c.meta["noise"] == "clean" for c in data.selected)
    assert len({c.item.query_hash for c in data.selected}) == len(data.selected)  # one per query
    for example in data.examples:
        user, reply = example["messages"]
        assert user["role"] == "user" and reply["reasoning_content"].strip()
        assert reply["content"].splitlines()[-1].startswith("Answer: ")
    queries, responses = data.reports
    assert (queries.seen, responses.seen) == (12, 36)
    assert responses.seen - responses.kept == sum(responses.dropped.values())
    data.write(tmp_path)
    lines = (tmp_path / "train.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == data.examples
    report = json.loads((tmp_path / "filters.json").read_text())
    assert report["metrics"]["responses_kept"] == responses.kept
    dropped = [json.loads(line) for line in (tmp_path / "dropped.jsonl").read_text().splitlines()]
    assert dropped and all(e["meta"]["noise"] != "clean" for e in dropped)


def test_stage_table_rejects_other_data():
    table = {"cold_start": {"tasks": ["arith"]}, "data": {"synthetic": "chat"}}
    with pytest.raises(SettingsError, match="data comes from"):
        split_stage_table(table, "cold_start", ColdStartConfig, "cold_start")


def debug_table(preset: str, run_dir, **changes) -> dict:
    table = tomllib.loads(config_path(preset).read_text())
    table.update(run_dir=str(run_dir), steps=2, log_every=1)
    table["checkpoint"] = {"every": 0, "keep_last": 1}
    table["data"]["seq_len"] = 160
    for name, value in changes.items():
        table[preset.replace("-debug", "").replace("-", "_")][name] = value
    return table


def test_cold_start_preset_end_to_end(tmp_path):
    run = tmp_path / "cold"
    table = debug_table("cold-start-debug", run, train_queries=8, validation_queries=2, no_think_samples=1)
    result = run_cold_start(table, progress=False)
    assert result.step == 2 and all(loss == loss for loss in result.losses)
    assert (result.checkpoint / "model" / "config.json").is_file()  # a Hugging Face directory: stages chain
    first = read_metrics(run)[0]
    assert first["data/queries_seen"] == 8 and first["data/samples"] > 0
    assert "data/queries_dropped_solved_without_thinking" in first
    assert (run / "data" / "train.jsonl").is_file() and (run / "data" / "dropped.jsonl").is_file()

    # the trained checkpoint as a teacher served by our engine: N thinking samples per query, then the filters
    from qwen3 import LLM

    teacher = str(result.checkpoint / "model")
    config = ColdStartConfig(tasks=["arith"], train_queries=3, validation_queries=1, no_think_samples=0,
                             teacher=teacher, candidates_per_query=2, teacher_max_tokens=12)  # fmt: skip
    data = build_cold_start_data(config, teacher_llm=LLM(teacher, max_model_len=512))
    responses = data.reports[1]
    assert responses.seen == 6 and {c.source for c in data.selected} <= {"model"}
    assert responses.kept + sum(responses.dropped.values()) == 6


def test_qwen3_train_dispatches_the_preset_and_names_bad_keys(tmp_path, capsys):
    from qwen3.train.cli import main

    common = ["steps=1", "data.seq_len=160", "cold_start.train_queries=4", "cold_start.no_think_samples=0"]
    assert main(["cold-start-debug", f"run_dir={tmp_path / 'run'}", *common, "--no-progress"]) == 0
    assert read_metrics(tmp_path / "run")[0]["data/queries_seen"] == 4
    assert main(["cold-start-debug", f"run_dir={tmp_path / 'bad'}", "cold_start.bogus=1"]) == 1
    assert "cold_start.bogus" in capsys.readouterr().err


def test_resume_rebuilds_the_same_data_and_continues_the_run(tmp_path):
    changes = dict(train_queries=6, validation_queries=2, no_think_samples=1)
    whole = debug_table("cold-start-debug", tmp_path / "whole", **changes)
    whole.update(steps=3, schedule={"kind": "constant"})  # the same learning rates whatever the step count
    straight = run_cold_start(whole, progress=False).losses
    part = debug_table("cold-start-debug", tmp_path / "part", **changes)
    part["checkpoint"]["every"] = 2
    part["schedule"] = {"kind": "constant"}
    run_cold_start(part, progress=False)
    part.update(steps=3)
    resumed = run_cold_start(part, resume=True, progress=False)
    assert resumed.losses == straight[2:]
    assert (tmp_path / "part" / "data" / "train.jsonl").read_text() == (
        tmp_path / "whole" / "data" / "train.jsonl"
    ).read_text()
