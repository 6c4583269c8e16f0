"""The smoke recipe end to end, the report's schema, resume after a stop in three phases, config errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from qwen3.recipes.config import load_recipe, presets
from qwen3.recipes.report import without_timings
from qwen3.recipes.run import RecipeRun, RecipeStopped
from qwen3.train.settings import SettingsError

TARGET_KEYS = {"target", "report", "measured", "values", "pass", "cause"}


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "smoke"
    run = RecipeRun(load_recipe("smoke"), out, progress=False, command="qwen3 recipe run smoke")
    run.run()
    return out


def test_smoke_recipe_completes_with_every_output(smoke_run):
    for name in ("report.md", "results.json", "state.json", "plots/loss.png", "plots/budget.png"):
        assert (smoke_run / name).is_file(), name
    for model in ("final", "student"):
        files = {p.name for p in (smoke_run / model).iterdir()}
        assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"} <= files
    config = json.loads((smoke_run / "final" / "config.json").read_text())
    assert config["rope_theta"] == 1_000_000.0  # S3 raised the RoPE base and later stages kept it


def test_results_schema(smoke_run):
    results = json.loads((smoke_run / "results.json").read_text())
    assert results["schema"] == 1 and results["recipe"] == "smoke" and results["seed"] == 0
    assert set(results["evals"]) == {
        "pretrain", "stage1", "stage2", "stage3", "stage4", "distill_off", "distill_on", "student_rl"
    }  # fmt: skip
    for phase in ("stage1", "stage4"):
        suites = results["evals"][phase]["suites"]
        assert set(suites["reasoning"]) == {"think", "no_think"} and set(suites["thinkfollow"]) == {"both"}
    assert len(results["evals"]["stage4"]["budget"]["think"]) >= 5
    assert len(results["targets"]) == 12
    for target in results["targets"]:
        assert set(target) == TARGET_KEYS and isinstance(target["pass"], bool)
        assert target["pass"] or target["cause"], target  # a miss always says why
    assert results["data"]["overlap"] == 0 and results["data"]["test_items"] > 0
    assert results["models"]["student"]["parameters"] < results["models"]["flagship"]["parameters"]
    assert results["table21"]["distill_on"]["flops"] > 0 and results["table21"]["student_rl"]["flops"] > 0


def test_report_has_the_tables(smoke_run):
    report = (smoke_run / "report.md").read_text()
    for heading in ("## Targets", "## Table 22 analogue", "## Table 21 analogue", "## Figure 2 analogue",
                    "## Training curves", "## Models", "## Wall time"):  # fmt: skip
        assert heading in report
    assert "qwen3 recipe run smoke" in report and "seed 0" in report
    results = json.loads((smoke_run / "results.json").read_text())
    for target in results["targets"]:
        assert target["target"] in report


def test_final_model_loads_in_transformers(smoke_run):
    transformers = pytest.importorskip("transformers")
    model = transformers.AutoModelForCausalLM.from_pretrained(smoke_run / "final")
    tokenizer = transformers.AutoTokenizer.from_pretrained(smoke_run / "final")
    text = tokenizer.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)
    assert "<|im_start|>user" in text
    assert model.config.vocab_size == len(tokenizer)


def _stop_then_resume(smoke_run, tmp_path, phase):
    out = tmp_path / "resumed"
    with pytest.raises(RecipeStopped):
        RecipeRun(
            load_recipe("smoke"), out, progress=False, stop_after=phase, command="qwen3 recipe run smoke"
        ).run()
    state = json.loads((out / "state.json").read_text())
    assert list(state["phases"])[-1] == phase and "report" not in state["phases"]
    with pytest.raises(Exception, match="--resume"):
        RecipeRun(load_recipe("smoke"), out, progress=False)
    RecipeRun(load_recipe("smoke"), out, resume=True, progress=False, command="qwen3 recipe run smoke").run()
    expected = without_timings(json.loads((smoke_run / "results.json").read_text()))
    got = without_timings(json.loads((out / "results.json").read_text()))
    assert got == expected
    shutil.rmtree(out)


@pytest.mark.parametrize(
    "phase",
    [
        "stage2",
        pytest.param("pretrain", marks=pytest.mark.slow),
        pytest.param("distill_off", marks=pytest.mark.slow),
    ],
)
def test_resume_after_stop_gives_the_same_results(smoke_run, tmp_path, phase):
    _stop_then_resume(smoke_run, tmp_path, phase)


class SimulatedKill(BaseException):
    """Not an Exception: nothing on the way out may catch it and save (as with SIGKILL)."""


@pytest.mark.parametrize("link", ["s1", pytest.param("stage2", marks=pytest.mark.slow)])
def test_resume_after_a_kill_inside_a_phase(smoke_run, tmp_path, monkeypatch, link):
    """Killed at step 3 of a phase that checkpointed at step 2: --resume continues from step 2 of that phase."""
    from qwen3.train.trainer import Trainer

    original = Trainer.run_step

    def run_step(self, rows, started=None):
        if Path(self.config.run_dir).name == link and self.step == 2:
            raise SimulatedKill(link)
        return original(self, rows, started)

    out = tmp_path / "killed"
    monkeypatch.setattr(Trainer, "run_step", run_step)
    with pytest.raises(SimulatedKill):
        RecipeRun(load_recipe("smoke"), out, progress=False, command="qwen3 recipe run smoke").run()
    monkeypatch.setattr(Trainer, "run_step", original)
    run = RecipeRun(load_recipe("smoke"), out, resume=True, progress=False, command="qwen3 recipe run smoke")
    phase = "pretrain" if link == "s1" else link
    assert run.resumable(phase)
    run.run()
    assert json.loads((out / "state.json").read_text())["phases"][phase]["result"].get("resumed") is True
    expected = without_timings(json.loads((smoke_run / "results.json").read_text()))
    assert without_timings(json.loads((out / "results.json").read_text())) == expected


def test_recipe_errors_name_the_problem(tmp_path):
    assert {"smoke", "tiny", "small"} <= set(presets())
    with pytest.raises(SettingsError, match="unknown recipe 'smok'"):
        load_recipe("smok")
    bad = tmp_path / "bad.toml"
    bad.write_text((load_recipe("smoke").source.read_text()) + "\n[extra]\nx = 1\n")
    with pytest.raises(SettingsError, match="unknown table"):
        load_recipe(bad)
    bad.write_text(load_recipe("smoke").source.read_text().replace("hidden_size = 32", "hidden_sise = 32"))
    with pytest.raises(SettingsError, match=r"\[flagship\] unknown field"):
        load_recipe(bad)
