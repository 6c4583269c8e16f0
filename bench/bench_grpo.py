"""One GRPO optimizer step: ours (qwen3.train.grpo on the shared Trainer, rollouts from our engine in process) vs
TRL's ``GRPOTrainer`` (rollouts from transformers' ``generate``), side by side in one run.

Same model (qwen3-debug-5m, the same initial weights; TRL gets it as a transformers ``Qwen3ForCausalLM``), the same
16 prompts (the built-in digits task rendered with the Qwen3 chat template, non-thinking), 8 rollouts each of at
most 128 new tokens (temperature 1, no truncation), the same reward (``digit_fraction``), loss_type "grpo", one
update per batch, no KL, AdamW lr 1e-5, micro-batches of 32 (4 accumulation steps) on the CPU, fp32 weights with
the update in ``--precision`` on both sides (fp32, or bf16: ours ``precision = "bf16"`` autocast for the update and
``grpo.engine_dtype = "bfloat16"``, a bf16 engine copy, for the rollouts; TRL ``bf16=True``, accelerate's autocast
around both its generation and its update). Each side's step is split into rollout (generation + rewards) and update
(forward/backward + optimizer) time, each as wall-clock and as this process's CPU time (``time.process_time``:
with one thread it is the work done, robust to other jobs sharing the cores, which inflate wall time only); setup
(model load, engine build) is not counted. One run each: the machine is shared, so wall numbers move between runs.

    PYTHONPATH=. python bench/bench_grpo.py [--threads 1] [--precision fp32] [--prompts 16] [--generations 8]
        [--tokens 128]
"""

from __future__ import annotations

import argparse
import contextlib
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
        "model": {"name": PRESET}, "data": {"seq_len": 512}, "precision": args.precision,
        "optim": {"lr": LR, "weight_decay": 0.0}, "schedule": {"kind": "constant"},
        "checkpoint": {"every": 0, "save_final": False},
        "grpo": {"prompts_per_step": args.prompts, "num_generations": args.generations,
                 "max_new_tokens": args.tokens, "temperature": 1.0, "loss_type": "grpo",
                 "rewards": ["digit_fraction"], "train_prompts": args.prompts, "eval_prompts": 0,
                 "engine_weights": "auto", "max_num_seqs": args.prompts * args.generations,
                 "engine_dtype": "bfloat16" if args.precision == "bf16" else "auto"},
    }  # fmt: skip
    trainer = make_trainer(table, overwrite=True, progress=False)
    engine = trainer.rows.engine
    clock = Clock()
    engine.generate = clock.wrap("rollout", engine.generate)
    with clock.measure("total"):
        trainer.fit()
    (record,) = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {**clock.split(), "completion_tokens": engine.stats.tokens, "reward_mean": record["reward_mean"]}


class Clock:
    """Wall and CPU seconds of named phases; ``split()``: rollout, update (= total - rollout) and total."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}

        self._started: dict[str, tuple[float, float]] = {}

    def start(self, name: str) -> None:
        self._started[name] = (time.perf_counter(), time.process_time())

    def stop(self, name: str) -> None:
        wall, cpu = self._started.pop(name)
        self.wall[name] = self.wall.get(name, 0.0) + time.perf_counter() - wall
        self.cpu[name] = self.cpu.get(name, 0.0) + time.process_time() - cpu

    @contextlib.contextmanager
    def measure(self, name: str):
        self.start(name)
        try:
            yield
        finally:
            self.stop(name)

    def wrap(self, name: str, function):
        def timed(*args, **kwargs):
            with self.measure(name):
                return function(*args, **kwargs)

        return timed

    def split(self) -> dict[str, float]:
        out = {}
        for kind, table in (("s", self.wall), ("cpu_s", self.cpu)):
            rollout, total = table.get("rollout", 0.0), table.get("total", 0.0)
            out.update(
                {f"rollout_{kind}": rollout, f"update_{kind}": total - rollout, f"total_{kind}": total}
            )
        return out


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

    clock, counts = Clock(), {"completion_tokens": 0}

    class Timed(trl.GRPOTrainer):
        def _generate_and_score_completions(self, inputs):
            with clock.measure("rollout"):
                batch = super()._generate_and_score_completions(inputs)
            counts["completion_tokens"] += int(batch["completion_mask"].sum())
            return batch

        def training_step(self, *step_args, **step_kwargs):  # the generation runs inside the first one
            with clock.measure("total"):
                return super().training_step(*step_args, **step_kwargs)

    class OptimizerTime(transformers.TrainerCallback):
        def on_pre_optimizer_step(self, *unused, **unused_kwargs):
            clock.start("total")

        def on_optimizer_step(self, *unused, **unused_kwargs):
            clock.stop("total")

    accumulation = args.prompts * args.generations // MICRO
    grpo_args = trl.GRPOConfig(
        output_dir=str(run_dir), max_steps=1, per_device_train_batch_size=MICRO,
        gradient_accumulation_steps=accumulation, num_generations=args.generations,
        max_completion_length=args.tokens, temperature=1.0, top_p=1.0, top_k=0, learning_rate=LR,
        weight_decay=0.0, lr_scheduler_type="constant", beta=0.0, loss_type="grpo", num_iterations=1,
        use_cpu=True, bf16=args.precision == "bf16", report_to="none", save_strategy="no", logging_steps=1, seed=0,
        dataloader_num_workers=0, log_completions=False,
    )  # fmt: skip
    dataset = datasets.Dataset.from_dict({"prompt": prompts(args.prompts)})
    trainer = Timed(model=model, reward_funcs=[digit_fraction], args=grpo_args, train_dataset=dataset,
                    processing_class=tokenizer, callbacks=[OptimizerTime()])  # fmt: skip
    # The step: training_step (generation, forward/backward) and the optimizer step; train()'s own set-up (the
    # optimizer, the accelerator) is not counted, like ours (built before fit()).
    trainer.train()
    rewards = [entry.get("reward") for entry in trainer.state.log_history if "reward" in entry]
    return {**clock.split(), **counts, "reward_mean": rewards[0] if rewards else float("nan")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=128)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    results = {}
    load = [loadavg()]
    with tempfile.TemporaryDirectory() as tmp:
        results["ours"] = run_ours(args, Path(tmp) / "ours")
        load.append(loadavg())
        results["trl"] = run_trl(args, Path(tmp) / "trl")
        load.append(loadavg())
    print(f"one GRPO step: {args.prompts} prompts x {args.generations} rollouts x <= {args.tokens} new tokens, "
          f"{PRESET}, update in {args.precision}, {args.threads} thread(s); load average (1 min) at the start, "
          f"between and at the end: {', '.join(load)}")  # fmt: skip
    print(f"{'':6} {'rollout s':>10} {'update s':>9} {'step s':>8} {'rollout cpu':>12} {'update cpu':>11} "
          f"{'step cpu':>9} {'tokens':>7} {'reward':>7}")  # fmt: skip
    for name, r in results.items():
        print(f"{name:6} {r['rollout_s']:10.2f} {r['update_s']:9.2f} {r['total_s']:8.2f} {r['rollout_cpu_s']:12.2f} "
              f"{r['update_cpu_s']:11.2f} {r['total_cpu_s']:9.2f} {r['completion_tokens']:7d} "
              f"{r['reward_mean']:7.3f}")  # fmt: skip
    ours, trl = results["ours"], results["trl"]
    for kind, label in (("s", "wall"), ("cpu_s", "CPU")):
        print(f"speed-up, {label} time (TRL / ours): step {trl[f'total_{kind}'] / ours[f'total_{kind}']:.1f}x "
              f"(rollout {trl[f'rollout_{kind}'] / ours[f'rollout_{kind}']:.1f}x, "
              f"update {trl[f'update_{kind}'] / ours[f'update_{kind}']:.1f}x)")  # fmt: skip
    print(json.dumps({"args": vars(args), "loadavg": load, **results}))


def loadavg() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


if __name__ == "__main__":
    main()
