"""On-policy distillation steps/s: ours (qwen3 train, distill.mode = "on_policy") against TRL's GKDTrainer with
lmbda = 1 (every batch sampled by the student, forward KL: beta = 0) on the same student, teacher and prompts, in
one run.

Each step: the student samples ``--prompts`` replies of ``--tokens`` tokens, the teacher scores them, the student
takes one optimizer step on the per-token KL. Student: qwen3-debug-5m (5.25M parameters); teacher: the same shape
with twice the layers (~2x the non-embedding parameters). Both random, so replies run to the token limit.

    python bench/bench_distill.py [--steps 3] [--warmup 1] [--prompts 16] [--tokens 128] [--no-trl]
"""

from __future__ import annotations

import argparse
import json
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

    table = {
        "run_dir": str(run_dir), "stage": "distill", "steps": args.warmup + args.steps,
        "micro_batch_size": args.prompts, "log_every": 1, "model": {"name": str(student)},
        "data": {"kind": "sft", "seq_len": 512}, "optim": {"lr": 1e-4, "weight_decay": 0.0},
        "schedule": {"kind": "constant"}, "checkpoint": {"every": 0, "save_final": False},
        "distill": {"mode": "on_policy", "teacher": str(teacher), "prompts": args.prompts,
                    "max_new_tokens": args.tokens, "modes": ["think"], "rollout_temperature": 1.0},
    }  # fmt: skip
    run_distill(table, progress=False)
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "elapsed_s" in r]
    seconds = (
        steps[-1]["elapsed_s"] - steps[args.warmup - 1]["elapsed_s"]
        if args.warmup
        else steps[-1]["elapsed_s"]
    )
    return args.steps / seconds


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
    )  # fmt: skip
    clock = Clock()
    trainer = GKDTrainer(
        model=AutoModelForCausalLM.from_pretrained(student, dtype=torch.float32),
        teacher_model=AutoModelForCausalLM.from_pretrained(teacher, dtype=torch.float32),
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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        student, teacher = make_models(root)
        results = {"ours": ours(student, teacher, args, root / "ours")}
        if not args.no_trl:
            results["trl_gkd"] = trl(student, teacher, args, root / "trl")
    threads = torch.get_num_threads()
    print(f"on-policy distillation, {args.prompts} prompts x {args.tokens} tokens, torch threads {threads}")
    for name, rate in results.items():
        print(f"  {name:8s} {rate:.3f} steps/s")
    if "trl_gkd" in results:
        print(f"  ours / TRL = {results['ours'] / results['trl_gkd']:.1f}x")


if __name__ == "__main__":
    main()
