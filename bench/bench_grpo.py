"""One GRPO optimizer step: ours (qwen3.train.grpo on the shared Trainer, rollouts from our engine in process) vs
TRL's ``GRPOTrainer`` (rollouts from transformers' ``generate``), side by side in one run.

Same model (qwen3-debug-5m, the same initial weights; TRL gets it as a transformers ``Qwen3ForCausalLM``), the same
16 prompts (the built-in digits task rendered with the Qwen3 chat template, non-thinking), 8 rollouts each of at
most 128 new tokens (temperature 1, no truncation), the same reward (``digit_fraction``), loss_type "grpo", one
update per batch, no KL, AdamW lr 1e-5, micro-batches of 32 (4 accumulation steps), fp32 on the CPU. Each side's
step is split into rollout (generation + rewards) and update (forward/backward + optimizer) time; setup (model
load, engine build) is not counted. One run each: the machine is shared, so numbers move between runs.

    PYTHONPATH=. python bench/bench_grpo.py [--threads 2] [--prompts 16] [--generations 8] [--tokens 128]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

PRESET = "qwen3-debug-5m"
LR, MICRO = 1e-5, 32


def prompts(count: int) -> list[str]:
    from qwen3.chat import render
    from qwen3.train.grpo import digits_items

    return [render(item.messages, add_generation_prompt=True, enable_thinking=False) for item in
            digits_items(count, "train")]  # fmt: skip


def run_ours(args: argparse.Namespace, run_dir: Path) -> dict:
    from qwen3.train.grpo import make_trainer

    table = {
        "run_dir": str(run_dir), "stage": "grpo", "steps": 1, "micro_batch_size": MICRO, "log_every": 1,
        "model": {"name": PRESET}, "data": {"seq_len": 512},
        "optim": {"lr": LR, "weight_decay": 0.0}, "schedule": {"kind": "constant"},
        "checkpoint": {"every": 0, "save_final": False},
        "grpo": {"prompts_per_step": args.prompts, "num_generations": args.generations,
                 "max_new_tokens": args.tokens, "temperature": 1.0, "loss_type": "grpo",
                 "rewards": ["digit_fraction"], "train_prompts": args.prompts, "eval_prompts": 0,
                 "engine_weights": "auto", "max_num_seqs": args.prompts * args.generations},
    }  # fmt: skip
    trainer = make_trainer(table, overwrite=True, progress=False)
    engine = trainer.rows.engine
    start = time.perf_counter()
    trainer.fit()
    total = time.perf_counter() - start
    rollout = engine.stats.seconds
    (record,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {"rollout_s": rollout, "update_s": total - rollout, "total_s": total,
            "completion_tokens": engine.stats.tokens, "reward_mean": record["reward_mean"]}  # fmt: skip


def run_trl(args: argparse.Namespace, run_dir: Path) -> dict:
    import datasets
    import torch
    import transformers
    import trl

    from qwen3.model.checkpoint import init_model
    from qwen3.model.presets import get_preset
    from qwen3.tokenizer.train import tokenizer_for_vocab
    from qwen3.train.rewards import digit_fraction as ours_reward

    ours = init_model(get_preset(PRESET), torch.float32, "cpu", seed=0)
    config = transformers.AutoConfig.for_model(**ours.config.to_dict())
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(ours.state_dict(), strict=False)
    vocab = tokenizer_for_vocab(ours.config.vocab_size)
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_file=vocab.source, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    model.generation_config.eos_token_id = list(vocab.eos_token_ids)
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    def digit_fraction(completions, **kwargs):  # our reward function, on TRL's completion strings
        return [ours_reward(None, SimpleNamespace(text=text, content=text)) for text in completions]

    timings = {"rollout_s": 0.0, "update_s": 0.0, "completion_tokens": 0}

    class Timed(trl.GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            start = time.perf_counter()
            batch = super()._generate_and_score_completions(inputs)
            timings["rollout_s"] += time.perf_counter() - start
            timings["completion_tokens"] += int(batch["completion_mask"].sum())
            return batch

        def training_step(self, *step_args, **step_kwargs):
            start = time.perf_counter()
            out = super().training_step(*step_args, **step_kwargs)
            timings["update_s"] += time.perf_counter() - start
            return out

    class OptimizerTime(transformers.TrainerCallback):
        def on_pre_optimizer_step(self, *unused, **unused_kwargs):
            self.start = time.perf_counter()

        def on_optimizer_step(self, *unused, **unused_kwargs):
            timings["update_s"] += time.perf_counter() - self.start

    accumulation = args.prompts * args.generations // MICRO
    grpo_args = trl.GRPOConfig(
        output_dir=str(run_dir), max_steps=1, per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=accumulation, num_generations=args.generations,
        max_completion_length=args.tokens, temperature=1.0, top_p=1.0, top_k=0, learning_rate=LR,
        weight_decay=0.0, lr_scheduler_type="constant", beta=0.0, loss_type="grpo", num_iterations=1,
        use_cpu=True, bf16=False, report_to="none", save_strategy="no", logging_steps=1, seed=0,
        dataloader_num_workers=0, log_completions=False,
    )  # fmt: skip
    dataset = datasets.Dataset.from_dict({"prompt": prompts(args.prompts)})
    trainer = Timed(model=model, reward_funcs=[digit_fraction], args=grpo_args, train_dataset=dataset,
                    processing_class=tokenizer, callbacks=[OptimizerTime()])  # fmt: skip
    start = time.perf_counter()
    trainer.train()
    timings["total_s"] = time.perf_counter() - start
    timings["update_s"] -= timings["rollout_s"]  # the generation ran inside the first training_step
    rewards = [entry.get("reward") for entry in trainer.state.log_history if "reward" in entry]
    timings["reward_mean"] = rewards[0] if rewards else float("nan")
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        results["ours"] = run_ours(args, Path(tmp) / "ours")
        results["trl"] = run_trl(args, Path(tmp) / "trl")
    print(f"one GRPO step: {args.prompts} prompts x {args.generations} rollouts x <= {args.tokens} new tokens, "
          f"{PRESET}, fp32, {args.threads} threads (shared machine: one run, numbers move)")  # fmt: skip
    print(
        f"{'':6} {'rollout s':>10} {'update s':>9} {'step s':>8} {'tokens':>7} {'rollout tok/s':>14} {'reward':>7}"
    )
    for name, r in results.items():
        print(f"{name:6} {r['rollout_s']:10.2f} {r['update_s']:9.2f} {r['total_s']:8.2f} {r['completion_tokens']:7d} "
              f"{r['completion_tokens'] / r['rollout_s']:14,.0f} {r['reward_mean']:7.3f}")  # fmt: skip
    ours, trl = results["ours"], results["trl"]
    print(
        f"speed-up (TRL step time / ours): {trl['total_s'] / ours['total_s']:.1f}x  "
        f"(rollout {trl['rollout_s'] / ours['rollout_s']:.1f}x, update {trl['update_s'] / ours['update_s']:.1f}x)"
    )
    print(json.dumps(results))


if __name__ == "__main__":
    main()
