"""The smoke recipe end to end, the report's schema, resume after a SIGKILL in three phases, config errors."""

from __future__ import annotations

import json
import os
import re
import signal
import time
from pathlib import Path

import pytest

from qwen3.recipes.config import load_recipe, presets
from qwen3.recipes.report import without_timings
from qwen3.recipes.run import RecipeRun, RecipeStopped, finished_phases, has_checkpoints
from qwen3.train.settings import SettingsError

from .processes import kill, recipe_process

TARGET_KEYS = {"target", "report", "measured", "values", "pass", "cause"}


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
    examples = results["examples"]
    assert [reply["flag"] for reply in examples["replies"]] == ["/think", "/no_think"]
    assert examples["item"].startswith("reasoning-validation-") and examples["question"]


def test_report_has_the_tables(smoke_run):
    report = (smoke_run / "report.md").read_text()
    for heading in ("## Targets", "## Table 22 analogue", "## Table 21 analogue", "## Figure 2 analogue",
                    "## Training curves", "## Models", "## Wall time", "## Asked to think, told not to"):  # fmt: skip
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


def comparable(out: Path) -> dict:
    """A run's results.json without what differs between runs of one recipe and seed: the timings and the
    command (its --out)."""
    results = without_timings(json.loads((out / "results.json").read_text()))
    results.pop("command")
    return results


@pytest.mark.slow
def test_resume_after_stop_gives_the_same_results(smoke_run, tmp_path):
    """--stop-after ends cleanly at a phase boundary; a new run into the directory needs --resume."""
    out = tmp_path / "resumed"
    with pytest.raises(RecipeStopped):
        RecipeRun(load_recipe("smoke"), out, progress=False, stop_after="stage2").run()
    state = json.loads((out / "state.json").read_text())
    assert list(state["phases"])[-1] == "stage2" and "report" not in state["phases"]
    with pytest.raises(Exception, match="--resume"):
        RecipeRun(load_recipe("smoke"), out, progress=False)
    RecipeRun(load_recipe("smoke"), out, resume=True, progress=False, command="qwen3 recipe run smoke").run()
    assert comparable(out) == comparable(smoke_run)


KILLED_IN = ("pretrain", "stage2", "distill_off")  # the pre-training chain, an RL stage, a distillation phase
POLL_S = 0.02


def kill_inside(process, out: Path, phase: str) -> None:
    """SIGKILL the run once ``phase`` has written a checkpoint and has not finished. The process is stopped
    (SIGSTOP) before the last look, so what the test saw is what the kill interrupted."""
    while process.poll() is None:
        if has_checkpoints(out, phase) and phase not in finished_phases(out):
            os.killpg(process.pid, signal.SIGSTOP)
            inside = phase not in finished_phases(out)
            kill(process)
            assert inside, f"{phase} finished between the test's look and the kill"
            return
        assert phase not in finished_phases(out), f"{phase} finished before the test saw a checkpoint of it"
        time.sleep(POLL_S)
    pytest.fail(f"the run exited ({process.returncode}) before the test could kill it inside {phase}")


def test_resume_after_sigkill_in_three_phases(smoke_run, tmp_path):
    """`qwen3 recipe run smoke` SIGKILLed inside pre-training, stage 2 and off-policy distillation, each time
    continued with --resume: each phase continues from its checkpoint and the results equal an uninterrupted
    run's."""
    out = tmp_path / "killed"
    process = recipe_process(out, log=tmp_path / "run-0.log")
    for attempt, phase in enumerate(KILLED_IN, start=1):
        kill_inside(process, out, phase)
        assert process.returncode == -signal.SIGKILL
        done = finished_phases(out)
        assert phase not in done and "report" not in done
        process = recipe_process(out, "--resume", log=tmp_path / f"run-{attempt}.log")
    assert process.wait(timeout=900) == 0, (tmp_path / f"run-{len(KILLED_IN)}.log").read_text()
    state = json.loads((out / "state.json").read_text())
    for attempt, phase in enumerate(KILLED_IN, start=1):
        assert state["phases"][phase]["result"]["resumed"] is True, phase
        log = (tmp_path / f"run-{attempt}.log").read_text()
        resumed = [line for line in log.splitlines() if line.startswith("resumed from")]
        assert any(f"runs/{phase}/" in line for line in resumed), log  # from the phase's checkpoint
    assert not list(out.glob(".tmp-*"))  # no leftover of an interrupted atomic write
    assert comparable(out) == comparable(smoke_run)


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


def test_the_display_counts_each_phase_steps_once(smoke_run):
    """The live display's step of a finished phase is its step count (checkpoints' copies of metrics.jsonl and
    the chain's links are not counted twice)."""
    from qwen3.recipes.progress import latest_step
    from qwen3.recipes.run import build_phases

    for phase in build_phases(load_recipe("smoke")):
        if phase.steps:
            assert latest_step(smoke_run / "runs" / phase.name) == phase.steps, phase.name


def test_a_distillation_restarted_before_its_first_checkpoint_counts_the_same_compute(tmp_path):
    """Killed after the teacher's top-k store was written but before a checkpoint, the phase starts again
    (overwrite) and reuses the store: the teacher's scoring of it still counts (Table 21's compute), so the
    restarted run logs what an uninterrupted one does."""
    from qwen3.train.distill import run_distill

    table = {
        "run_dir": str(tmp_path), "stage": "distill", "steps": 1, "micro_batch_size": 4, "log_every": 1000,
        "model": {"name": "qwen3-debug-tiny"}, "data": {"kind": "sft", "synthetic": "chat", "seq_len": 64},
        "checkpoint": {"every": 0, "save_final": False},
        "distill": {"mode": "off_policy_logits", "teacher": "qwen3-debug-tiny", "teacher_seed": 1, "top_k": 4,
                    "prompts": 4, "max_new_tokens": 8},
    }  # fmt: skip
    logged = []
    for overwrite in (False, True):  # the second run finds the first one's store
        run_distill(table, overwrite=overwrite, progress=False)
        logged.append(json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1]))
    assert (tmp_path / "teacher_topk.safetensors").is_file()
    assert logged[1]["teacher_forward_tokens"] == logged[0]["teacher_forward_tokens"] > 0
    assert without_timings(logged[1]) == without_timings(logged[0])


def table_after(report: str, heading: str) -> list[list[str]]:
    """The cells of the first markdown table after ``heading`` (header row first, the rule row dropped)."""
    section = report.split(heading, 1)[1]
    block = []
    for line in section.splitlines()[1:]:
        if line.startswith("|"):
            block.append(line)
        elif block:
            break
    assert block, heading
    return [
        [cell.strip() for cell in line.strip("|").split("|")] for line in block if not line.startswith("|---")
    ]


def test_report_tables_have_the_report_layout(smoke_run):
    """Table 22: a row per suite, a column per mode x stage; Table 21: the three student phases with steps and
    compute; the wall-time table: every phase with its load average; every image link resolves."""
    report = (smoke_run / "report.md").read_text()
    recipe = load_recipe("smoke")
    t22 = table_after(report, "## Table 22 analogue")
    assert len(t22) == 1 + len(recipe.eval.suites) and all(len(row) == 1 + 2 * 5 for row in t22)
    assert t22[0][1].startswith("Thinking") and t22[0][-1].startswith("Non-thinking")
    t21 = table_after(report, "## Table 21 analogue")
    assert len(t21) == 4 and "compute (FLOPs)" in t21[0] and "steps" in t21[0]
    wall = table_after(report, "## Wall time")
    state = json.loads((smoke_run / "state.json").read_text())
    assert [row[0] for row in wall[1:-1]] == list(state["phases"])
    assert all(row[2] for row in wall[1:-2])  # a load average beside every measured phase time
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (smoke_run / image).is_file(), image
