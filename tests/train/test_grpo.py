"""GRPO end to end on qwen3-debug-tiny and the built-in digits task: the reward rises, the metrics are logged,
a SIGKILLed run resumes to the same numbers, and the normalisation does not depend on the micro-batching."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from qwen3.train.cli import config_path
from qwen3.train.flops import matmul_params
from qwen3.train.grpo import make_trainer, run_grpo
from qwen3.train.metrics import read_metrics
from qwen3.train.settings import apply_overrides, read_table

from .conftest import child_env, python_command

STEP_METRICS = ("reward_mean", "reward_std", "accuracy", "response_length", "entropy", "kl", "clip_fraction",
                "rollout_tokens_per_s", "update_tokens_per_s")  # fmt: skip
# What must repeat exactly between runs (the speeds do not).
EXACT = ("loss", "reward_mean", "reward_std", "accuracy", "response_length", "entropy", "kl", "clip_fraction",
         "grad_norm", "policy_train_tokens", "policy_forward_tokens", "reference_forward_tokens", "flops")  # fmt: skip


def preset(run_dir, *overrides):
    return apply_overrides(read_table(config_path("grpo-debug")), [f"run_dir={run_dir}", *overrides])


def small(run_dir, *overrides):
    """4 queries x 4 rollouts x 8 tokens a step: a fraction of a second each."""
    return preset(run_dir, "grpo.prompts_per_step=4", "grpo.num_generations=4", "grpo.max_new_tokens=8",
                  "micro_batch_size=16", "checkpoint.every=0", "grpo.eval_every=0", *overrides)  # fmt: skip


def exact(run_dir):
    return [{key: record[key] for key in EXACT} for record in read_metrics(run_dir)]


def test_grpo_debug_raises_the_reward_and_logs_every_metric(tmp_path, capsys):
    run_grpo(preset(tmp_path, "steps=20", "checkpoint.every=0"), progress=False)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("[grpo] step")]
    assert len(lines) == 4 and all(" reward 0." in line or " reward 1." in line for line in lines)
    assert " acc " in lines[0] and " val_acc " in lines[1]  # step 10 has the validation accuracy
    records = read_metrics(tmp_path)
    assert len(records) == 20
    for name in STEP_METRICS:
        assert all(name in record for record in records), name
    rewards = [record["reward_mean"] for record in records]
    assert sum(rewards[-3:]) / 3 > sum(rewards[:3]) / 3 + 0.3, rewards  # ~0.01 -> ~0.99 with this seed
    assert records[-1]["accuracy"] > records[0]["accuracy"]
    assert [r["step"] for r in records if "val_accuracy" in r] == [10, 20]  # eval_every = 10


CHILD = """
import os, signal, sys
from qwen3.train import grpo
from qwen3.train.settings import read_table
kill_at = int(sys.argv[2])
counters = grpo.GRPORows.counters
def dying(self):
    if self.steps + 1 == kill_at:  # this step's update is done but neither logged nor saved
        os.kill(os.getpid(), signal.SIGKILL)
    return counters(self)
grpo.GRPORows.counters = dying
grpo.run_grpo(read_table(sys.argv[1]), resume=sys.argv[3] == "resume", progress=False)
"""


def child(table, tmp_path, kill_at=0, resume=False):
    """Run GRPO in a fresh process (the same thread settings for every run compared bit for bit)."""
    config_file = tmp_path / f"{Path(table['run_dir']).name}.json"
    config_file.write_text(json.dumps(table))
    command = python_command("-c", CHILD, str(config_file), str(kill_at), "resume" if resume else "fresh")
    return subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=120)


def test_a_sigkilled_run_resumes_to_the_same_rewards_and_losses(tmp_path):
    # Two updates per generation batch (the old log-probabilities in the checkpoint), a KL to the reference.
    options = ("steps=6", "checkpoint.every=2", "grpo.num_iterations=2", "grpo.beta=0.05")
    whole, killed = small(tmp_path / "whole", *options), small(tmp_path / "killed", *options)
    assert child(whole, tmp_path).returncode == 0
    done = child(killed, tmp_path, kill_at=5)  # step 4's checkpoint is the newest when it dies
    assert done.returncode == -9, done.stderr[-3000:]
    assert len(read_metrics(tmp_path / "killed")) == 4
    resumed = child(killed, tmp_path, resume=True)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert exact(tmp_path / "killed") == exact(tmp_path / "whole")
    assert any(record["kl"] > 0 for record in read_metrics(tmp_path / "whole"))


def test_the_loss_does_not_depend_on_the_micro_batch_size(tmp_path):
    for loss_type in ("grpo", "dr_grpo", "dapo"):
        runs = []
        for micro in (16, 4):
            run_dir = tmp_path / f"{loss_type}-{micro}"
            run_grpo(small(run_dir, "steps=3", f"micro_batch_size={micro}", f"grpo.loss_type={loss_type}",
                           "grpo.num_iterations=3"), progress=False)  # fmt: skip
            runs.append(read_metrics(run_dir))
        for one, other in zip(*runs):
            assert one["reward_mean"] == other["reward_mean"]  # the same rollouts (one batch, 3 updates)
            assert one["loss"] == pytest.approx(other["loss"], rel=1e-4, abs=1e-7)
            assert one["grad_norm"] == pytest.approx(other["grad_norm"], rel=1e-4)
        # The first update is on-policy (old = current: ratio 1, nothing clipped); by the third it is not.
        assert runs[0][0]["clip_fraction"] == 0.0 and runs[0][2]["loss"] != 0.0


def test_masked_truncations_and_flat_groups_give_no_gradient(tmp_path):
    # Every 8-token reply of a fresh model is cut off: masked, nothing is trained.
    run_grpo(small(tmp_path / "masked", "steps=2", "grpo.mask_truncated=true"), progress=False)
    records = read_metrics(tmp_path / "masked")
    assert [r["truncated_fraction"] for r in records] == [1.0, 1.0]
    assert [r["grad_norm"] for r in records] == [0.0, 0.0]
    # digits_only is 0 for every reply of a fresh model: each group is flat, filtered, refilled, still flat.
    run_grpo(small(tmp_path / "flat", "steps=1", "grpo.rewards=['digits_only']", "grpo.dynamic_filtering=true",
                   "grpo.filter_max_batches=2"), progress=False)  # fmt: skip
    (record,) = read_metrics(tmp_path / "flat")
    assert record["filtered_groups"] == 12.0 and record["grad_norm"] == 0.0  # 3 batches of 4 queries


def test_compute_is_counted_by_hand(tmp_path):
    # One generation batch, two updates on it (old log-probabilities recomputed), a reference model.
    trainer = make_trainer(
        small(tmp_path, "steps=2", "grpo.num_iterations=2", "grpo.beta=0.05"), progress=False
    )
    trainer.fit()
    rows = trainer.rows.rows
    row_tokens = sum(len(row["input_ids"]) for row in rows)  # prompt + completion - 1 per rollout
    prompts = [next(i for i, label in enumerate(row["labels"]) if label != -100) + 1 for row in rows]
    # The engine prefills each query's prompt once for its 4 completions, then decodes completion - 1 tokens.
    rollout_forwards = row_tokens - sum(prompts) + sum(prompts[::4])
    n = matmul_params(trainer.model.config)
    first, second = read_metrics(tmp_path)
    assert [first["policy_train_tokens"], second["policy_train_tokens"]] == [row_tokens, 2 * row_tokens]
    assert second["policy_forward_tokens"] == rollout_forwards + row_tokens  # + the old log-probabilities
    assert second["reference_forward_tokens"] == row_tokens and second["reference_train_tokens"] == 0
    assert second["policy_flops"] == n * (6 * 2 * row_tokens + 2 * (rollout_forwards + row_tokens))
    assert second["flops"] == second["policy_flops"] + 2 * n * row_tokens


def test_the_overlong_penalty_lowers_the_reward_of_long_replies(tmp_path):
    plain = make_trainer(small(tmp_path / "a", "steps=1"), progress=False)
    penalised = make_trainer(small(tmp_path / "b", "steps=1", "grpo.overlong_buffer=4",
                                   "grpo.overlong_penalty=0.5"), progress=False)  # fmt: skip
    plain.fit(), penalised.fit()
    (a,), (b,) = read_metrics(tmp_path / "a"), read_metrics(tmp_path / "b")
    assert b["reward_mean"] == pytest.approx(
        a["reward_mean"] - 0.5, abs=1e-9
    )  # all 8 tokens long: full penalty


def test_truncated_importance_sampling_weights_are_near_one_for_an_exact_engine(tmp_path):
    # fp32 engine and trainer on the same weights: pi_old / pi_engine = 1 up to rounding, the loss unchanged.
    run_grpo(small(tmp_path / "plain", "steps=1"), progress=False)
    trainer = make_trainer(small(tmp_path / "tis", "steps=1", "grpo.tis_cap=2.0"), progress=False)
    trainer.fit()
    weights = [w for row in trainer.rows.rows for w, label in zip(row["extras"]["is_weight"], row["labels"])
               if label != -100]  # fmt: skip
    assert weights and all(abs(w - 1) < 1e-3 for w in weights)
    (plain,), (tis,) = read_metrics(tmp_path / "plain"), read_metrics(tmp_path / "tis")
    assert tis["reward_mean"] == plain["reward_mean"]
    assert tis["grad_norm"] == pytest.approx(plain["grad_norm"], rel=1e-3)
    # Truncated sampling: the trainer truncates by the engine's rule, so the weights stay at 1 there too.
    truncated = make_trainer(small(tmp_path / "topk", "steps=1", "grpo.tis_cap=2.0", "grpo.top_k=20",
                                   "grpo.top_p=0.9", "grpo.temperature=0.7"), progress=False)  # fmt: skip
    truncated.fit()
    weights = [w for row in truncated.rows.rows for w, label in zip(row["extras"]["is_weight"], row["labels"])
               if label != -100]  # fmt: skip
    assert weights and all(abs(w - 1) < 1e-3 for w in weights)


def test_a_bf16_engine_samples_from_its_own_copy_and_tis_corrects_it(tmp_path):
    import torch

    trainer = make_trainer(small(tmp_path, "steps=2", "grpo.engine_dtype=bfloat16", "grpo.tis_cap=2.0"),
                           progress=False)  # fmt: skip
    trainer.fit()
    copy = trainer.rows.engine.model
    assert copy is not trainer.model and copy.lm_head.weight.dtype == torch.bfloat16
    trainer.rows.engine.sync()  # what the next generation batch starts with: the updated policy, rounded
    for name, value in copy.state_dict().items():
        assert torch.equal(value, trainer.model.state_dict()[name].to(torch.bfloat16)), name
    weights = [w for row in trainer.rows.rows for w, label in zip(row["extras"]["is_weight"], row["labels"])
               if label != -100]  # fmt: skip
    # pi_trainer / pi_engine: near 1, but not exactly (the engine rounds to bf16); the cap bounds them.
    assert weights and max(weights) <= 2.0 and any(w != pytest.approx(1.0, abs=1e-6) for w in weights)
    assert sum(abs(w - 1) for w in weights) / len(weights) < 0.05


def test_qwen3_train_runs_the_grpo_preset_and_names_a_bad_knob(tmp_path):
    base = ["-m", "qwen3", "train", "grpo-debug", f"run_dir={tmp_path}", "steps=2"]
    done = subprocess.run(python_command(*base, "--no-progress"), env=child_env(), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r["step"] for r in read_metrics(tmp_path)] == [1, 2] and "reward" in done.stderr
    bad = subprocess.run(python_command(*base, "grpo.loss_type=ppo", "--no-progress"), env=child_env(),
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert bad.returncode != 0
    (line,) = bad.stderr.strip().splitlines()
    assert "grpo.loss_type" in line and "'ppo'" in line
