"""Decode and prefill speed of the engine next to transformers' ``generate``, in one run, random weights.

    PYTHONPATH=. python bench/bench_decode.py                   # every row, writes docs/benchmarks.md
    PYTHONPATH=. python bench/bench_decode.py --rows b1,int8 --no-write --threads 1
    PYTHONPATH=. python bench/bench_decode.py --rows b1 --threads 2 --contended   # quiet, then beside a busy core

Rows (qwen3-0.6b shape unless said otherwise; 32-token prompts, 128 new tokens, greedy unless said otherwise, end-of-sequence ignored):

- b1:      bf16, batch 1
- int8:    ours with per-channel weight-only int8 vs transformers bf16, batch 1; plus a quality check against our bf16
- b8:      bf16, 8 concurrent requests (transformers: one batch of 8)
- small64: qwen3-debug-5m in bf16 (`--small-dtype float32`: the preset's fp32), 64 concurrent sequences
- sample64: small64 sampling with the model card's thinking preset (temperature 0.6, top_p 0.95, top_k 20) on both
  sides, the RL rollout case (no bar in the issue; shown because sampling costs more than the argmax)
- prefill: bf16, one 512-token prompt, time to the first token

Decode tokens/s = new tokens after the first / (time for 128 tokens - time for 1 token), so prefill is excluded the
same way for both. Each timing is the median of ``--repeats`` runs. Achieved GB/s = weight bytes read per step
(every linear layer and the LM head) x steps/s, printed beside the machine's read bandwidth measured by a ``sum``
over 1 GiB with the same threads. Other jobs on the machine move numbers a lot: the load average is printed.

``--contended [N]`` measures every row twice, quiet and then with N (default 1) busy-loop processes running beside
both sides (ours and transformers), the case of an engine sharing its cores with other work (issue 15 section 6):
decode should lose no more than the share of the CPU the hog takes.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import multiprocessing
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from qwen3.engine import LLM, SamplingParams
from qwen3.model.checkpoint import init_model
from qwen3.model.model import Qwen3ForCausalLM
from qwen3.model.presets import get_preset
from qwen3.model.weights import export_tensor, hf_tensors
from qwen3.utils.atomic import atomic_write_text

ROWS = ("b1", "int8", "b8", "small64", "sample64", "prefill")
# The bars (ratios to transformers in the same run; llama.cpp figures: docs/benchmarks.md, "Anchors").
TARGETS = {
    "b1": ">= 2x (goal: llama.cpp's 27 tok/s)",
    "int8": ">= 3.5x (llama.cpp Q8_0: 35 tok/s)",
    "b8": ">= 2.5x (llama.cpp: 73 tok/s)",
    "small64": ">= 5x",
    "sample64": "(none; sampled small64)",
    "prefill": ">= 1x",
}


@dataclass
class Result:
    row: str
    threads: int
    what: str
    ours: float
    theirs: float
    unit: str
    gbps: float | None = None
    note: str = ""

    @property
    def ratio(self) -> float:
        return self.ours / self.theirs


def to_transformers(model: Qwen3ForCausalLM, dtype: torch.dtype):
    import transformers

    config = transformers.AutoConfig.for_model(**model.config.to_dict())
    hf = transformers.AutoModelForCausalLM.from_config(config, dtype=dtype).eval()
    params = dict(model.named_parameters())
    shapes = {name: tuple(p.shape) for name, p in params.items()}
    state = {spec.name: export_tensor(spec, params) for spec in hf_tensors(shapes, "stacked")}
    hf.load_state_dict(state, strict=False)
    hf.generation_config.eos_token_id = None
    hf.generation_config.pad_token_id = 0
    return hf


def median_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()  # warm-up (oneDNN primitives, allocator)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def prompts(batch: int, length: int, vocab: int) -> list[list[int]]:
    return [
        torch.randint(0, vocab, (length,), generator=torch.Generator().manual_seed(i)).tolist()
        for i in range(batch)
    ]


# The model card's thinking-mode sampling settings (sample64), for both sides.
THINKING_PRESET = {"temperature": 0.6, "top_p": 0.95, "top_k": 20}


def ours_decode(
    llm: LLM, batch_prompts, new_tokens: int, repeats: int, sampling: dict | None = None
) -> float:
    def run(n):
        settings = {"temperature": 0, **(sampling or {})}
        params = SamplingParams(max_tokens=n, ignore_eos=True, seed=0 if sampling else None, **settings)
        return lambda: llm.generate(batch_prompts, params, progress=False)

    first, full = median_seconds(run(1), repeats), median_seconds(run(new_tokens), repeats)
    return len(batch_prompts) * (new_tokens - 1) / (full - first)


def transformers_decode(
    hf, batch_prompts, new_tokens: int, repeats: int, sampling: dict | None = None
) -> float:
    ids = torch.tensor(batch_prompts)
    settings = {"do_sample": True, **sampling} if sampling else {"do_sample": False}

    def run(n):
        return lambda: hf.generate(ids, max_new_tokens=n, min_new_tokens=n, **settings)

    with torch.inference_mode():
        first, full = median_seconds(run(1), repeats), median_seconds(run(new_tokens), repeats)
    return len(batch_prompts) * (new_tokens - 1) / (full - first)


def weight_bytes(model: Qwen3ForCausalLM, bytes_per_weight: float | None = None) -> float:
    """Bytes a decode step reads: every linear weight (q/k/v/o, MLP or experts, LM head); embeddings are a lookup."""
    total = 0.0
    for name, param in model.named_parameters():
        if name.endswith("norm.weight") or name == "model.embed_tokens.weight":
            continue
        total += param.numel() * (bytes_per_weight or param.element_size())
    head = model.lm_head.weight
    if model.config.tie_word_embeddings:
        total += head.numel() * (bytes_per_weight or head.element_size())
    return total


def read_bandwidth() -> float:
    data = torch.ones(2**28)  # 1 GiB
    return data.numel() * 4 / median_seconds(data.sum, 5) / 1e9


ADAPT_THREADS = [True]  # --fixed-threads: EngineConfig.adapt_threads=False


def small_llm(model, batch: int, weights: str) -> LLM:
    from qwen3.tokenizer.train import tokenizer_for_vocab

    # An 8192-token debug tokenizer is enough to decode ids; the logits beyond it are masked, which costs nothing.
    return LLM(
        model,
        tokenizer=tokenizer_for_vocab(8192),
        max_model_len=1024,
        max_num_seqs=batch,
        weights=weights,
        adapt_threads=ADAPT_THREADS[0],
    )


def bench_decode_row(row: str, args, model, hf, theirs_cache: dict) -> Result:
    batch = 8 if row == "b8" else 1
    weights = "int8" if row == "int8" else args.weights
    batch_prompts = prompts(batch, args.prompt_len, 8000)
    ours = ours_decode(small_llm(model, batch, weights), batch_prompts, args.new_tokens, args.repeats)
    if batch not in theirs_cache:  # the int8 row compares with the same transformers bf16 run as b1
        theirs_cache[batch] = transformers_decode(hf, batch_prompts, args.new_tokens, args.repeats)
    theirs = theirs_cache[batch]
    per_step = weight_bytes(model, 1.0 if row == "int8" else None)
    what = {
        "b1": "0.6B bf16, batch 1",
        "int8": "0.6B int8 (ours) vs bf16, batch 1",
        "b8": "0.6B bf16, 8 requests",
    }
    return Result(
        row, torch.get_num_threads(), what[row], ours, theirs, "tok/s", per_step * ours / batch / 1e9
    )


def int8_quality(model, args) -> str:
    """Teacher-forced logits of our int8 path against our bf16 reference on one greedy continuation, and how
    many of the 128 greedy tokens the two paths share before they first differ."""
    from qwen3.model.cache import StaticKVCache

    bf16 = small_llm(model, 1, "reference")
    prompt = prompts(1, args.prompt_len, 8000)[0]
    params = SamplingParams(temperature=0, max_tokens=args.new_tokens, ignore_eos=True)
    reference_tokens = bf16.generate([prompt], params)[0].outputs[0].token_ids
    int8 = small_llm(model, 1, "int8")
    int8_tokens = int8.generate([prompt], params)[0].outputs[0].token_ids
    common = next(
        (i for i, (a, b) in enumerate(zip(reference_tokens, int8_tokens)) if a != b), len(int8_tokens)
    )
    ids = torch.tensor([prompt + reference_tokens])
    with torch.inference_mode():
        expected = model(ids).float()
        forward = int8.engine.runner.forward
        cache = StaticKVCache(model.config, 1, ids.shape[1], torch.bfloat16)
        got = forward.logits(forward.hidden_states(ids, torch.arange(ids.shape[1])[None], cache)).float()
    difference, spread = (got - expected).abs(), expected.std().item()
    agree = (got.argmax(-1) == expected.argmax(-1)).float().mean().item()
    return (
        f"int8 vs bf16 (quality check, random weights): logit error mean {difference.mean().item() / spread:.3f} "
        f"and max {difference.max().item() / spread:.3f} logit standard deviations over {ids.shape[1]} positions; "
        f"teacher-forced top-1 agreement {agree:.1%}; the greedy continuations are equal for their first "
        f"{common}/{len(int8_tokens)} tokens"
    )


def matmul_peak() -> float:
    """bf16 matrix-product FLOP/s of this machine at the current thread count (2048^3, best of 5)."""
    a = torch.randn(2048, 2048, dtype=torch.bfloat16)
    best = min(median_seconds(lambda: a @ a, 1) for _ in range(5))
    return 2 * 2048**3 / best


def small64_floor(result: Result) -> str:
    """How fast the small64 row could be if the step did nothing but its matrix products at the bf16 peak."""
    config = get_preset("qwen3-debug-5m")
    with torch.device("meta"):
        params = sum(p.numel() for p in Qwen3ForCausalLM(config).parameters())
    flops_per_step = 2 * params * 64
    floor = 64 / (flops_per_step / matmul_peak())
    return (
        f"small64 ({result.threads} threads): a step's matrix products are {flops_per_step / 1e6:.0f} MFLOP; at this "
        f"machine's bf16 matmul peak (2048^3) they alone would allow {floor:.0f} tok/s ({floor / result.theirs:.1f}x "
        f"transformers here). Ours reaches {result.ours / floor:.0%} of that; the rest of the step is the attention "
        "(it reads ~12 MB of cached keys and values a step at these lengths), norms, sampling and the per-sequence "
        "bookkeeping in Python"
    )


def bench_small64(args, row: str = "small64") -> Result:
    config = get_preset("qwen3-debug-5m")
    dtype = getattr(torch, args.small_dtype)
    model = init_model(config, dtype=dtype, seed=0)
    hf = to_transformers(model, dtype)
    batch_prompts = prompts(64, args.prompt_len, 8000)
    sampling = THINKING_PRESET if row == "sample64" else None
    llm = small_llm(model, 64, args.weights)
    ours = ours_decode(llm, batch_prompts, args.new_tokens, args.repeats, sampling)
    theirs = transformers_decode(hf, batch_prompts, args.new_tokens, args.repeats, sampling)
    gbps = weight_bytes(model) * ours / 64 / 1e9
    what = f"5M {args.small_dtype}, 64 sequences" + (", T 0.6 top_p 0.95 top_k 20" if sampling else "")
    return Result(row, torch.get_num_threads(), what, ours, theirs, "tok/s", gbps)


def bench_prefill(args, model, hf) -> Result:
    prompt = prompts(1, 512, 8000)
    llm = small_llm(model, 1, args.weights)
    params = SamplingParams(temperature=0, max_tokens=1, ignore_eos=True)
    ours = 512 / median_seconds(lambda: llm.generate(prompt, params, progress=False), args.repeats)
    ids = torch.tensor(prompt)
    with torch.inference_mode():
        theirs = 512 / median_seconds(
            lambda: hf.generate(ids, max_new_tokens=1, do_sample=False), args.repeats
        )
    return Result("prefill", torch.get_num_threads(), "0.6B bf16, 512-token prompt", ours, theirs, "tok/s")


def table(results: list[Result], bandwidth: dict[int, float]) -> str:
    lines = [
        "| row | threads | what | ours | transformers | ratio | target | achieved GB/s (machine read) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        gbps = f"{r.gbps:.1f} ({bandwidth[r.threads]:.1f})" if r.gbps else "-"
        lines.append(
            f"| {r.row} | {r.threads} | {r.what} | {r.ours:.1f} {r.unit} | {r.theirs:.1f} {r.unit} | "
            f"{r.ratio:.2f}x | {TARGETS[r.row.split()[0]]} | {gbps} |"
        )
    return "\n".join(lines)


def _spin() -> None:
    while True:
        pass


@contextlib.contextmanager
def cpu_hog(processes: int):
    """``processes`` busy loops (one core each) for the duration of the block."""
    hogs = [multiprocessing.Process(target=_spin, daemon=True) for _ in range(processes)]
    for hog in hogs:
        hog.start()
    try:
        yield
    finally:
        for hog in hogs:
            hog.terminate()
            hog.join()


def run_rows(rows: list[str], args, bandwidth: dict[int, float], notes: list[str]) -> list[Result]:
    results: list[Result] = []

    def report(result: Result) -> None:
        results.append(result)
        print(table([result], bandwidth).splitlines()[-1], flush=True)

    needs_06b = [r for r in rows if r in ("b1", "int8", "b8", "prefill")]
    if needs_06b:
        model = init_model(get_preset("qwen3-0.6b"), dtype=torch.bfloat16, seed=0)
        hf = to_transformers(model, torch.bfloat16)
        theirs_cache: dict[int, float] = {}
        for row in needs_06b:
            if row == "prefill":
                report(bench_prefill(args, model, hf))
            else:
                report(bench_decode_row(row, args, model, hf, theirs_cache))
            if row == "int8" and not any(n.startswith("int8 vs bf16") for n in notes):  # once
                notes.append(int8_quality(model, args))
                print(notes[-1], flush=True)
        del model, hf
    if "small64" in rows:
        report(bench_small64(args))
        notes.append(small64_floor(results[-1]))
        print(notes[-1], flush=True)
    if "sample64" in rows:
        report(bench_small64(args, "sample64"))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", default=",".join(ROWS), help=f"comma-separated subset of {','.join(ROWS)}")
    parser.add_argument(
        "--threads", default=str(torch.get_num_threads()), help="e.g. 1 or 1,2 (a table each)"
    )
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--weights", default="auto", help="our weight layout for the bf16 rows")
    parser.add_argument("--small-dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--out", default="docs/benchmarks.md")
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument(
        "--contended",
        type=int,
        nargs="?",
        const=1,
        default=0,
        metavar="N",
        help="also measure every row with N busy-loop processes (default 1) beside both sides",
    )
    parser.add_argument(
        "--fixed-threads", action="store_true", help="ours without the thread governor (adapt_threads=False)"
    )
    args = parser.parse_args()
    ADAPT_THREADS[0] = not args.fixed_threads
    if args.contended < 0:
        parser.error(f"--contended must be >= 0, got {args.contended}")
    rows = [r for r in args.rows.split(",") if r]
    unknown = set(rows) - set(ROWS)
    if unknown:
        parser.error(f"unknown rows {sorted(unknown)}; choose from {ROWS}")
    threads = [int(t) for t in args.threads.split(",")]
    load_before = os.getloadavg()
    results: list[Result] = []
    notes: list[str] = []
    bandwidth: dict[int, float] = {}
    for count in threads:
        torch.set_num_threads(count)
        bandwidth[count] = read_bandwidth()
        print(
            f"torch {torch.__version__}, {count} threads, load {os.getloadavg()[0]:.2f}, read {bandwidth[count]:.1f} GB/s"
        )
        results += run_rows(rows, args, bandwidth, notes)
        if args.contended:
            with cpu_hog(args.contended):
                print(f"beside {args.contended} busy core(s), load {os.getloadavg()[0]:.2f}", flush=True)
                for result in run_rows(rows, args, bandwidth, notes):
                    result.row += f" +{args.contended} busy"
                    results.append(result)
    load_after = os.getloadavg()
    report = render_report(args, results, bandwidth, notes, load_before, load_after)
    print(report)
    if not args.no_write:
        atomic_write_text(Path(args.out), with_generated_part(Path(args.out), report))
        print(f"wrote {args.out}")


GENERATED_BEGIN = (
    "<!-- bench_decode.py writes from here to its end marker; edit the rest of the file by hand -->\n"
)
GENERATED_END = "<!-- end of bench_decode.py output -->\n"


def with_generated_part(path: Path, report: str) -> str:
    """The file with its generated part replaced by ``report``; what was written by hand around it stays."""
    old = path.read_text(encoding="utf-8") if path.is_file() else ""
    before, begin, rest = old.partition(GENERATED_BEGIN)
    _, end, after = rest.partition(GENERATED_END)
    if not (begin and end):  # no markers yet: keep the old text below the new report
        before, after = "", old
    return f"{before}{GENERATED_BEGIN}{report.rstrip()}\n{GENERATED_END}{after}"


def render_report(args, results, bandwidth, notes, load_before, load_after) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    command = f"PYTHONPATH=. python bench/bench_decode.py --threads {args.threads}"
    if args.rows != ",".join(ROWS):
        command += f" --rows {args.rows}"
    if args.contended:
        command += f" --contended {args.contended}"
    if args.fixed_threads:
        command += " --fixed-threads"
    import transformers

    return (
        "# Engine benchmarks\n\n"
        f"`{command}` ({stamp}; torch {torch.__version__}, transformers {transformers.__version__}; load average "
        f"{load_before[0]:.2f} before, {load_after[0]:.2f} after). Random weights, "
        f"{args.prompt_len}-token prompts, {args.new_tokens} new tokens, greedy (sample64: the thinking preset), end-of-sequence ignored; medians of "
        f"{args.repeats} runs; ours and transformers' `generate` side by side in one process. Decode tokens/s "
        "exclude the prefill for both (time for all tokens minus time for the first). Achieved GB/s = weight bytes "
        "read per decode step x steps/s, beside the machine's read bandwidth (a `sum` over 1 GiB, same threads). "
        "Method: bench/bench_decode.py.\n\n"
        + table(results, bandwidth)
        + "\n\n"
        + "".join(f"- {note}\n" for note in notes)
    )


if __name__ == "__main__":
    main()
