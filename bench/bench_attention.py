"""Prefill attention alone: the C kernel (``cpu_kernels.prefill_attention``) vs torch's SDPA, bf16, one layer of the
qwen3-0.6b shape (16 query heads, 8 KV heads, head_dim 128), queries at positions start..start+T-1 of a cache slot.

    PYTHONPATH=. python bench/bench_attention.py                  # threads 1 and 2
    PYTHONPATH=. python bench/bench_attention.py --threads 2 --shapes 512:0,512:1536

SDPA is called as the engine's torch path calls it: ``is_causal`` for start 0, a boolean mask otherwise (both take
the CPU flash kernel). GFLOP/s count the causal products only: 4 Hq D flops per (query, visible key) pair. Times
are medians; other jobs on the machine move them, so take ``flock /tmp/qwen3-bench.lock`` around a run.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import torch
import torch.nn.functional as F
from bench_decode import median_seconds

from qwen3.engine import cpu_kernels

HEADS, KV_HEADS, HEAD_DIM = 16, 8, 128
SHAPES = "1:2000,8:2000,64:0,512:0,512:1536,2048:0"


def median_ms(fn: Callable[[], object], repeats: int) -> float:
    return median_seconds(fn, repeats) * 1e3  # after a warm-up call: the kernel's build, torch's allocator


def measure(length: int, start: int, repeats: int) -> tuple[float, float, float]:
    """(ours ms, SDPA ms, causal GFLOP) of one segment."""
    end = start + length
    gen = torch.Generator().manual_seed(0)
    keys, values = (
        torch.randn(2, KV_HEADS, end, HEAD_DIM, generator=gen).to(torch.bfloat16) for _ in range(2)
    )
    q = (
        torch.randn(1, length, HEADS, HEAD_DIM, generator=gen).to(torch.bfloat16).transpose(1, 2)
    )  # the model's view
    k, v = keys[1:2], values[1:2]
    mask = (
        None if start == 0 else (torch.arange(end)[None, :] <= torch.arange(start, end)[:, None])[None, None]
    )
    ours = median_ms(lambda: cpu_kernels.prefill_attention(q, keys, values, 1, start), repeats)
    theirs = median_ms(
        lambda: F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=mask is None, enable_gqa=True
        ),
        repeats,
    )
    pairs = length * start + length * (length + 1) // 2
    return ours, theirs, 4 * HEADS * HEAD_DIM * pairs / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", default="1,2", help="comma-separated thread counts")
    parser.add_argument("--shapes", default=SHAPES, help="comma-separated T:start pairs")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()
    if not cpu_kernels.gemm_available():
        raise SystemExit("the AVX512-BF16 kernels are not available on this machine")
    shapes = [tuple(int(n) for n in pair.split(":")) for pair in args.shapes.split(",")]
    print(f"torch {torch.__version__}; Hq {HEADS}, Hkv {KV_HEADS}, D {HEAD_DIM}, bf16")
    print("| threads | T | start | ours ms | SDPA ms | speedup | ours GFLOP/s | SDPA GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|")
    for threads in (int(n) for n in args.threads.split(",")):
        torch.set_num_threads(threads)
        for length, start in shapes:
            ours, theirs, gflop = measure(length, start, args.repeats)
            print(
                f"| {threads} | {length} | {start} | {ours:.3f} | {theirs:.3f} | {theirs / ours:.2f}x"
                f" | {gflop / ours * 1e3:.0f} | {gflop / theirs * 1e3:.0f} |"
            )


if __name__ == "__main__":
    main()
