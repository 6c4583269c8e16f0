import json
import math
import re
import sys

import pytest
import torch

import qwen3
from qwen3.train.checkpoint import list_checkpoints, load_optimizer_file
from qwen3.train.loss import make_loss
from qwen3.train.metrics import TENSORBOARD_MISSING, read_metrics
from qwen3.train.pretrain import chain_configs, run_chain
from qwen3.train.settings import SettingsError
from qwen3.train.synthetic import chat_examples
from qwen3.train.trainer import Trainer, TrainingError

from .conftest import run_losses, tiny_config
from .golden import GOLDEN_FILE, golden_losses


def test_golden_loss_curve(tmp_path, cpu_threads):
    expected = json.loads(GOLDEN_FILE.read_text())["losses"]
    losses = golden_losses(tmp_path)
    assert losses == pytest.approx(expected, rel=1e-3), "regenerate with tests/train/golden.py if intended"
    assert sum(losses[-5:]) / 5 < losses[0] - 0.5  # it learns


def sft_config(run_dir, **overrides):
    base = dict(data__kind="sft", data__synthetic="chat", data__synthetic_documents=200, data__seq_len=96,
                data__pack=False, steps=3, micro_batch_size=8, optim__lr=2e-3)  # fmt: skip
    return tiny_config(run_dir, **{**base, **overrides})


def test_loss_is_the_global_target_mean_whatever_the_accumulation(tmp_path):
    # Unpacked SFT rows differ in length and number of targets, so a mean of per-micro-batch means would differ.
    whole = Trainer(sft_config(tmp_path / "a"), progress=False).fit().losses
    accumulated = (
        Trainer(sft_config(tmp_path / "b", micro_batch_size=2, global_batch_size=8), progress=False)
        .fit()
        .losses
    )
    assert accumulated == pytest.approx(whole, rel=1e-5)


def test_sft_trains_on_assistant_tokens(tmp_path):
    losses = Trainer(sft_config(tmp_path, steps=15, data__pack=True), progress=False).fit().losses
    assert losses[-1] < losses[0] - 1.0


class Interrupt(Exception):
    pass


def interrupted_loss(after_calls: int):
    loss, calls = make_loss("causal_lm"), [0]

    def maybe_interrupt(model, batch):
        calls[0] += 1
        if calls[0] > after_calls:
            raise Interrupt
        return loss(model, batch)

    return maybe_interrupt


def test_resumed_run_matches_an_uninterrupted_one(tmp_path):
    config = tiny_config(tmp_path / "full", steps=8, checkpoint__every=3)
    full = Trainer(config, progress=False).fit().losses
    broken = tiny_config(tmp_path / "broken", steps=8, checkpoint__every=3)
    with pytest.raises(Interrupt):  # dies during step 5, after the step-3 checkpoint
        Trainer(broken, loss_fn=interrupted_loss(4), progress=False).fit()
    assert [p.name for p in list_checkpoints(broken.run_dir)] == ["step-00000003"]
    resumed = Trainer(broken, resume=True, progress=False)
    assert resumed.step == 3
    assert resumed.fit().losses == full[3:]
    assert run_losses(broken.run_dir) == full  # the log holds each step once
    assert [p.name for p in list_checkpoints(broken.run_dir)] == [
        "step-00000003",
        "step-00000006",
        "step-00000008",
    ]


def test_a_fresh_run_refuses_a_directory_with_checkpoints(tmp_path):
    config = tiny_config(tmp_path, steps=2)
    Trainer(config, progress=False).fit()
    with pytest.raises(TrainingError, match="already holds checkpoints .*--resume"):
        Trainer(config, progress=False)
    assert len(Trainer(config, overwrite=True, progress=False).fit().losses) == 2


def nan_at(call: int):
    loss, calls = make_loss("causal_lm"), [0]

    def poisoned(model, batch):
        calls[0] += 1
        out = loss(model, batch)
        if calls[0] == call:
            out.loss_sum = out.loss_sum * float("nan")
        return out

    return poisoned


def test_non_finite_loss_stops_with_the_step_or_is_skipped(tmp_path):
    with pytest.raises(TrainingError, match="step 3: non-finite loss nan"):
        Trainer(tiny_config(tmp_path / "stop", steps=5), loss_fn=nan_at(3), progress=False).fit()
    trainer = Trainer(
        tiny_config(tmp_path / "skip", steps=5, on_nan="skip"), loss_fn=nan_at(3), progress=False
    )
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    result = trainer.fit()
    records = [json.loads(line) for line in (tmp_path / "skip" / "metrics.jsonl").read_text().splitlines()]
    assert result.skipped_steps == 1 and records[2].get("skipped") and math.isnan(records[2]["loss"])
    assert all(math.isfinite(r["loss"]) for i, r in enumerate(records) if i != 2)
    assert any(not torch.equal(p, before[n]) for n, p in trainer.model.named_parameters())


def test_checkpoint_holds_a_loadable_model_and_keeps_the_last_k(tmp_path):
    trainer = Trainer(
        tiny_config(tmp_path, steps=6, checkpoint__every=2, checkpoint__keep_last=2), progress=False
    )
    trainer.fit()
    kept = list_checkpoints(tmp_path)
    assert [p.name for p in kept] == ["step-00000004", "step-00000006"]
    loaded = qwen3.load_model(kept[-1] / "model")
    for name, param in trainer.model.named_parameters():
        assert torch.equal(param, dict(loaded.named_parameters())[name]), name
    record = json.loads((kept[-1] / "trainer_state.json").read_text())
    assert record["step"] == 6 and set(record["data"]) == {"stream", "offset"}
    assert len((kept[-1] / "metrics.jsonl").read_text().splitlines()) == 6


def test_bf16_autocast_trains_close_to_fp32(tmp_path):
    fp32 = Trainer(tiny_config(tmp_path / "a", steps=3), progress=False).fit().losses
    bf16 = Trainer(tiny_config(tmp_path / "b", steps=3, precision="bf16"), progress=False).fit().losses
    assert bf16 == pytest.approx(fp32, abs=0.05)


def test_python_iterables_feed_the_pipeline(tmp_path):
    texts = [f"document number {i}: the quick brown fox jumps over the lazy dog" for i in range(40)]
    config = tiny_config(tmp_path, steps=3, data__synthetic=None, data__shuffle=False, data__on_error="skip")
    result = Trainer(config, source=iter(([{"title": "no text field"}] + texts) * 10), progress=False).fit()
    assert len(result.losses) == 3 and all(math.isfinite(x) for x in result.losses)
    assert read_metrics(tmp_path)[0]["malformed_skipped"] == 1


def test_moe_run_logs_the_load_balancing_loss(tmp_path):
    config = tiny_config(tmp_path, steps=2, model__name="qwen3-debug-moe-tiny", global_batch_size=8)
    Trainer(config, progress=False).fit()
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(0.9 < r["aux_loss"] < 8 for r in records)  # E * sum f P: 1 when balanced, E at worst


def test_pretraining_stages_chain_with_abf(tmp_path):
    table = tiny_config(tmp_path, steps=2).to_dict()
    table["stages"] = {"s1": {"steps": 3}, "s2": {"steps": 2}, "s3": {"steps": 1, "micro_batch_size": 1}}
    configs = chain_configs(table)
    assert [c.model.rope_theta for c in configs] == [1e4, 1e4, 1e6]
    assert [c.data.seq_len for c in configs] == [64, 64, 512]
    assert configs[1].init_from == str(tmp_path / "s1") and configs[2].init_optimizer
    assert configs[1].schedule.decay_fraction == 1.0 and configs[2].optim.lr == pytest.approx(3e-4)
    assert len(run_chain(configs, progress=False)) == 3
    final = [list_checkpoints(tmp_path / s)[-1] for s in ("s1", "s2", "s3")]
    thetas = [json.loads((f / "model" / "config.json").read_text())["rope_theta"] for f in final]
    assert thetas == [1e4, 1e4, 1e6]
    # S2 and S3 continue S1's AdamW moments: the step counts add up.
    steps = [load_optimizer_file(f)["state"]["model.model.norm.weight"]["step"].item() for f in final]
    assert steps == [3, 5, 6]
    assert run_chain(configs, resume=True, progress=False) == []  # all stages finished


def test_steps_log_the_data_counters_and_a_resume_continues_them(tmp_path):
    def turn(question, answer):
        return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}

    examples = chat_examples(40, seed=1)
    examples[3], examples[11] = {"msgs": []}, "not a conversation"  # malformed: skipped
    examples[7] = turn("question", "answer " * 80)  # overlong: truncated
    examples[20] = turn("question " * 80, "answer")  # overlong, no target left once cut: dropped
    names = ("malformed_skipped", "overlong_truncated", "overlong_dropped")

    def counters(run_dir):
        return [tuple(record[name] for name in names) for record in read_metrics(run_dir)]

    def config(run_dir):
        return sft_config(run_dir, steps=5, data__pack=True, data__on_error="skip", checkpoint__every=2)

    Trainer(config(tmp_path / "full"), source=examples, progress=False).fit()
    full = counters(tmp_path / "full")
    # Running totals of the examples read so far: they grow during the run, each kind is met.
    assert all(a <= b for before, after in zip(full, full[1:]) for a, b in zip(before, after))
    assert full[0] != full[-1] and min(full[-1]) >= 1
    with pytest.raises(Interrupt):  # dies during step 4, after the step-2 checkpoint
        Trainer(
            config(tmp_path / "broken"), source=examples, loss_fn=interrupted_loss(3), progress=False
        ).fit()
    Trainer(config(tmp_path / "broken"), source=examples, resume=True, progress=False).fit()
    assert counters(tmp_path / "broken") == full


def test_s3_continues_at_the_learning_rate_s2_ended_with(tmp_path):
    table = tiny_config(tmp_path, steps=2).to_dict()  # shared: lr 3e-3, min_lr_ratio 0.1
    s2 = {"steps": 4, "optim": {"lr": 1e-3}, "schedule": {"min_lr_ratio": 0.5}}
    table["stages"] = {"s1": {"steps": 3}, "s2": s2, "s3": {"steps": 1}}
    assert chain_configs(table)[2].optim.lr == pytest.approx(5e-4)
    table["stages"]["s3"]["optim"] = {"lr": 1e-4}  # an explicit S3 setting still wins
    assert chain_configs(table)[2].optim.lr == pytest.approx(1e-4)


def test_a_custom_loss_logs_its_metrics_per_target(tmp_path):
    base = make_loss("causal_lm")

    def with_metrics(model, batch):
        out = base(model, batch)
        out.metrics["targets_seen"] = (batch.labels != -100).sum().float()
        out.metrics["half_loss"] = out.loss_sum.detach() / 2
        return out

    config = tiny_config(tmp_path, steps=2, global_batch_size=8)  # 2 micro-batches per step
    Trainer(config, loss_fn=with_metrics, progress=False).fit()
    for record in read_metrics(tmp_path):
        assert record["targets_seen"] == pytest.approx(1.0)
        assert record["half_loss"] == pytest.approx(record["loss"] / 2)


def test_tensorboard_logs_every_numeric_field_per_step(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    Trainer(tiny_config(tmp_path, steps=2, tensorboard=True), progress=False).fit()
    assert list((tmp_path / "tensorboard").glob("events.*"))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    logged = [(e.step, e.value) for e in events.Scalars("train/loss")]
    expected = [(r["step"], r["loss"]) for r in read_metrics(tmp_path)]
    assert [step for step, _ in logged] == [1, 2]
    assert [value for _, value in logged] == pytest.approx([value for _, value in expected], rel=1e-6)
    assert {"train/lr", "train/grad_norm", "train/tokens"} <= set(events.Tags()["scalars"])


def test_tensorboard_without_its_package_fails_before_training(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    with pytest.raises(SettingsError, match=re.escape(TENSORBOARD_MISSING)):
        Trainer(tiny_config(tmp_path, tensorboard=True), progress=False)
    assert not (tmp_path / "metrics.jsonl").exists()


def test_the_progress_bar_leaves_the_log_unchanged(tmp_path, capsys):
    timing = ("tokens_per_s", "elapsed_s")

    def records(run_dir):
        return [{k: v for k, v in r.items() if k not in timing} for r in read_metrics(run_dir)]

    Trainer(tiny_config(tmp_path / "bar", steps=3, checkpoint__every=2), progress=True).fit()
    Trainer(tiny_config(tmp_path / "plain", steps=3, checkpoint__every=2), progress=False).fit()
    assert records(tmp_path / "bar") == records(tmp_path / "plain") and len(records(tmp_path / "bar")) == 3
    assert "3/3" in capsys.readouterr().out  # the bar's final state
