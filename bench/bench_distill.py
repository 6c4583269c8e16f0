"""On-policy distillation steps/s: ours (qwen3 train, distill.mode = "on_policy") against TRL's GKDTrainer with
lmbda = 1 (every batch sampled by the student, forward KL: beta = 0) on the same student, teacher and prompts, in
one run.

Each step: the student samples ``--prompts`` replies of ``--tokens`` tokens, the teacher scores them, the student
takes one optimizer step on the per-token KL. Student: qwen3-debug-5m (5.25M parameters); teacher: the same shape
with twice the layers (~2x the non-embedding parameters). Both random, so replies run to the token limit.

    python bench/bench_distill.py [--steps 3] [--warmup 1] [--prompts 16] [--tokens 128] [--no-trl]
        [--precision fp32|bf16] [--profile] [--rounds 1]

``--precision bf16``: both sides in mixed precision: the student's matmuls under bf16 autocast with fp32 master
weights and AdamW state (ours ``precision = "bf16"``, TRL ``bf16=True``), the teacher's weights in bf16 (inference
only); softmax and the divergence in fp32 on both sides. ``--profile``: our timed steps under torch.profiler, split
into rollout, teacher forward, student forward, the fused head + divergence (forward and its gradient) and the
rest (student backward through the decoder, AdamW, bookkeeping).
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch


def make_models(root: Path) -> tuple[Path, Path]:
    from qwen3.model.checkpoint import default_generation_config, init_checkpoint, init_model, save_model
    from qwen3.model.presets import get_preset
    from qwen3.tokenizer.train import tokenizer_for_vocab

    student = init_checkpoint("qwen3-debug-5m", root / "student", seed=0)
    tokenizer = tokenizer_for_vocab(8192)
    config = get_preset("qwen3-debug-5m").replace(num_hidden_layers=8, bos_token_id=tokenizer.endoftext_id,
                                                  eos_token_id=tokenizer.im_end_id)  # fmt: skip
    teacher = init_model(config, seed=1)
    teacher.generation_config = default_generation_config(config, tokenizer)
    return student, save_model(teacher, root / "teacher", tokenizer=tokenizer)


def prompts(count: int) -> list[list[dict]]:
    from qwen3.train.distill import synthetic_prompts

    return synthetic_prompts(count, seed=0)


def ours(student: Path, teacher: Path, args: argparse.Namespace, run_dir: Path) -> float:
    from qwen3.train.distill import run_distill

    bf16 = args.precision == "bf16"
    table = {
        "run_dir": str(run_dir), "stage": "distill", "steps": args.warmup + args.steps,
        "micro_batch_size": args.prompts, "log_every": 1, "model": {"name": str(student)},
        "data": {"kind": "sft", "seq_len": 512}, "optim": {"lr": 1e-4, "weight_decay": 0.0},
        "schedule": {"kind": "constant"}, "checkpoint": {"every": 0, "save_final": False},
        "precision": args.precision,
        "distill": {"mode": "on_policy", "teacher": str(teacher), "prompts": args.prompts,
                    "max_new_tokens": args.tokens, "modes": ["think"], "rollout_temperature": 1.0,
                    "teacher_dtype": "bfloat16" if bf16 else "float32"},
    }  # fmt: skip
    profiler = Profiled(args.warmup) if args.profile else None
    run_distill(table, progress=False, hooks=[profiler] if profiler else ())
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "elapsed_s" in r]
    seconds = (
        steps[-1]["elapsed_s"] - steps[args.warmup - 1]["elapsed_s"]
        if args.warmup
        else steps[-1]["elapsed_s"]
    )
    if profiler:
        profiler.report(seconds / args.steps)
    return args.steps / seconds


class Profiled:
    """A trainer hook: torch.profiler over the steps after ``warmup``; ``report`` prints the split per step."""

    REGIONS = ("distill.rollout", "distill.teacher_forward", "distill.student_forward", "distill.divergence")

    def __init__(self, warmup: int):
        self.warmup, self.profile, self.steps = warmup, None, 0

    def on_step_start(self, trainer, step) -> None:
        if step == self.warmup + 1:
            from torch.profiler import ProfilerActivity, profile

            self.profile = profile(activities=[ProfilerActivity.CPU])
            self.profile.__enter__()

    def on_step_end(self, trainer, step, metrics) -> None:
        if self.profile is not None:
            self.steps += 1
            if step == trainer.config.steps:
                self.profile.__exit__(None, None, None)

    def report(self, step_seconds: float) -> None:
        events = {e.key: e for e in self.profile.key_averages()}
        print(f"profile: {step_seconds:.3f} s per step over {self.steps} steps")
        named = 0.0
        for region in self.REGIONS:
            seconds = events[region].cpu_time_total / 1e6 / self.steps if region in events else 0.0
            named += seconds
            print(f"  {region:26s} {seconds:7.3f} s  {100 * seconds / step_seconds:5.1f}%")
        rest = step_seconds - named
        print(f"  {'rest (backward, AdamW...)':26s} {rest:7.3f} s  {100 * rest / step_seconds:5.1f}%")
        top = sorted(self.profile.key_averages(), key=lambda e: -e.self_cpu_time_total)[:12]
        for event in top:
            print(f"    {event.key[:48]:48s} self {event.self_cpu_time_total / 1e6 / self.steps:7.3f} s")


def trl(student: Path, teacher: Path, args: argparse.Namespace, out_dir: Path) -> float:
    import os

    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.gkd import GKDConfig, GKDTrainer

    class Clock(TrainerCallback):
        def __init__(self):
            self.ends: list[float] = []

        def on_step_end(self, *_, **__):
            self.ends.append(time.perf_counter())

    tokenizer = AutoTokenizer.from_pretrained(student)
    rows = [{"messages": [*p, {"role": "assistant", "content": "ok"}]} for p in prompts(args.prompts)]
    config = GKDConfig(
        output_dir=str(out_dir), per_device_train_batch_size=args.prompts, max_steps=args.warmup + args.steps,
        lmbda=1.0, beta=0.0, temperature=1.0, max_new_tokens=args.tokens, learning_rate=1e-4, logging_steps=1,
        report_to=[], save_strategy="no", use_cpu=True, max_length=512, dataloader_num_workers=0,
        bf16=args.precision == "bf16", gradient_checkpointing=False,  # ours recomputes nothing either
    )  # fmt: skip
    clock = Clock()
    teacher_dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32
    trainer = GKDTrainer(
        model=AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32),
        teacher_model=AutoModelForCausalLM.from_pretrained(teacher, dtype=teacher_dtype),
        args=config, train_dataset=Dataset.from_list(rows * (args.warmup + args.steps)),
        processing_class=tokenizer, callbacks=[clock],
    )  # fmt: skip
    started = time.perf_counter()
    trainer.train()
    first = clock.ends[args.warmup - 1] if args.warmup else started
    return args.steps / (clock.ends[-1] - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--no-trl", action="store_true")
    parser.add_argument("--precision", choices=("fp32", "bf16"), default="fp32")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--rounds", type=int, default=1, help="ours, TRL, ours, ... alternated (load drifts)")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(f"on-policy distillation, {args.prompts} prompts x {args.tokens} tokens, {args.precision}, "
          f"torch threads {threads}")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        student, teacher = make_models(root)
        rates: dict[str, list[float]] = {"ours": []}
        for index in range(args.rounds):
            rates["ours"].append(ours(student, teacher, args, root / f"ours{index}"))
            report("ours", rates["ours"][-1])
            if not args.no_trl:
                rates.setdefault("trl_gkd", []).append(trl(student, teacher, args, root / f"trl{index}"))
                report("trl_gkd", rates["trl_gkd"][-1])
        if not args.no_trl and args.rounds > 1:  # bracket the last TRL run by a run of ours
            rates["ours"].append(ours(student, teacher, args, root / "ours-last"))
            report("ours", rates["ours"][-1])
    for name, values in rates.items():
        print(f"  {name:8s} median {statistics.median(values):.3f} steps/s of {len(values)} runs")
    if "trl_gkd" in rates:
        ratio = statistics.median(rates["ours"]) / statistics.median(rates["trl_gkd"])
        print(f"  ours / TRL = {ratio:.1f}x (medians)")


def report(name: str, rate: float) -> None:
    load = Path("/proc/loadavg").read_text().split()[0]
    print(f"  {name:8s} {rate:.3f} steps/s ({1 / rate:.2f} s a step), load {load}", flush=True)


if __name__ == "__main__":
    main()
