"""MoE expert kernels on this CPU: torch._grouped_mm vs a loop over experts vs the reference, qwen3-debug-moe
shapes (32 experts, top-4, hidden 512, expert width 256) and qwen3-30b-a3b expert shapes (one layer).

    python bench/bench_moe.py
"""

from __future__ import annotations

import time

import torch

from qwen3.model.moe import SparseMoeBlock


def best_ms(fn, repeats: int = 15) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times) * 1e3  # the least disturbed run: other jobs share these cores


def main() -> None:
    torch.manual_seed(0)
    shapes = {"debug-moe": (512, 32, 4, 256), "30b-a3b layer": (2048, 128, 8, 768)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(
        f"{'shape':<14} {'dtype':<9} {'tokens':>6} "
        + " ".join(f"{n:>12}" for n in ("grouped_mm", "loop", "reference"))
    )
    for label, (hidden, experts, top_k, width) in shapes.items():
        block = SparseMoeBlock(hidden, experts, top_k, width, norm_topk_prob=True)
        with torch.no_grad():
            for p in block.parameters():
                p.normal_(0, 0.02)
        for dtype in (torch.float32, torch.bfloat16):
            block.to(dtype)
            for tokens in (1, 8, 512):
                x = torch.randn(1, tokens, hidden, dtype=dtype)
                row = []
                for impl in ("grouped_mm", "loop", "reference"):
                    block.experts.impl = impl
                    with torch.no_grad():
                        row.append(best_ms(lambda block=block, x=x: block(x)))
                print(
                    f"{label:<14} {str(dtype)[6:]:<9} {tokens:>6} " + " ".join(f"{t:>10.3f}ms" for t in row)
                )


if __name__ == "__main__":
    main()
