"""The stage registry and step hooks: presets dispatch on ``stage``; registered stages run; hooks see each step,
can add metrics, and their state survives a resume."""

import json

import pytest

from qwen3.cli import main
from qwen3.train.metrics import read_metrics
from qwen3.train.settings import SettingsError
from qwen3.train.stages import STAGES, check_table, register_stage, stage_for
from qwen3.train.trainer import Trainer

from .conftest import tiny_config


def test_presets_and_tables_dispatch_on_their_stage(tmp_path):
    table = tiny_config(tmp_path, steps=2).to_dict()
    assert stage_for(table).name == "train"  # the default
    assert stage_for({**table, "stage": "sft"}).name == "sft"
    assert stage_for({**table, "stage": "my-run"}).name == "train"  # an unregistered name is a label
    assert stage_for({**table, "stages": {"s1": {}}}).name == "chain"
    assert {"train", "pretrain", "sft", "s1", "s2", "s3"} <= set(STAGES)
    (s3,) = check_table({**table, "stage": "s3"})  # alone: a chain of one link
    assert s3.model.rope_theta == 1e6 and s3.data.seq_len == 64 * 8 and s3.stage == "s3"
    with pytest.raises(SettingsError, match="stages: unknown stage 's4'; stages: s1, s2, s3"):
        check_table({**table, "stages": {"s4": {}}})


def test_a_registered_stage_runs_from_the_command_line(tmp_path):
    calls = []

    @register_stage("test-echo", description="records its table")
    def echo(table, *, resume=False, overwrite=False, env=None, progress=None):
        calls.append((table["steps"], resume, env is not None))
        return "done"

    try:
        config = tmp_path / "c.json"
        config.write_text(json.dumps({**tiny_config(tmp_path / "run").to_dict(), "stage": "test-echo"}))
        assert main(["train", str(config), "steps=5", "--resume", "--no-progress"]) == 0
        assert calls == [(5, True, True)]
        assert not (tmp_path / "run").exists()  # the stage ran, not the plain trainer
    finally:
        del STAGES["test-echo"]


class Recorder:
    """A hook: counts steps, adds a metric, keeps a state that checkpoints carry."""

    def __init__(self):
        self.events, self.seen = [], 0

    def on_step_start(self, trainer, step):
        self.events.append(("start", step, trainer.step))

    def on_step_end(self, trainer, step, metrics):
        self.seen += 1
        metrics["hook_seen"] = self.seen
        self.events.append(("end", step, round(metrics["loss"], 6) > 0))

    def on_checkpoint(self, trainer, step):
        self.events.append(("checkpoint", step, trainer.last_checkpoint.name))

    def state_dict(self):
        return {"seen": self.seen}

    def load_state_dict(self, state):
        self.seen = state["seen"]


def test_hooks_see_each_step_add_metrics_and_resume_their_state(tmp_path):
    config = tiny_config(tmp_path, steps=3, checkpoint__every=2)
    hook = Recorder()
    Trainer(config, hooks=[hook, object()], progress=False).fit()  # a hook may define any subset
    assert hook.events == [("start", 1, 0), ("end", 1, True), ("start", 2, 1), ("end", 2, True),
                           ("checkpoint", 2, "step-00000002"), ("start", 3, 2), ("end", 3, True),
                           ("checkpoint", 3, "step-00000003")]  # fmt: skip
    assert [r["hook_seen"] for r in read_metrics(tmp_path)] == [1, 2, 3]
    resumed = Recorder()
    Trainer(tiny_config(tmp_path, steps=4), hooks=[resumed], resume=True, progress=False).fit()
    assert resumed.events[0] == ("start", 4, 3) and resumed.seen == 4  # 3 restored + this step
