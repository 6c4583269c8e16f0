"""Items/s of the evaluation suite on a debug model: in process (``qwen3.LLM``, one batch per round) vs the same
suites through ``qwen3 serve`` (a subprocess on a free local port, concurrent OpenAI requests), in one run.

    PYTHONPATH=. python bench/bench_eval.py                                # qwen3-debug-tiny, 32 items/suite
    PYTHONPATH=. python bench/bench_eval.py --preset qwen3-debug-5m --limit 64 --suite reasoning,tooluse

Items come from ``qwen3.world.generate`` (the test split); where this version has no generator for a suite's
family, arithmetic reasoning items made here stand in (the output says so). Each side runs the suites in both
modes with greedy decoding and ``--max-tokens`` per reply; the scores of the two sides are printed too (they agree
for greedy decoding). The machine is shared: the in-process run is measured before and after the server's, and the
load average is printed next to the numbers.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from qwen3.eval.backends import InProcessBackend, OpenAIBackend  # noqa: E402
from qwen3.eval.runner import SUITES, EvalOptions, run_suites  # noqa: E402
from qwen3.model.checkpoint import init_checkpoint  # noqa: E402
from qwen3.world.items import Item, split_of  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def arithmetic_items(count: int) -> list[Item]:
    """Stand-in reasoning items (sums of three numbers) for a version without the world's generators."""
    items = []
    for i in range(count):
        a, b, c = 17 + 7 * i, 5 + 3 * i, 2 + i
        messages = [{"role": "user", "content": f"Compute {a} + {b} * {c}. End with a line 'Answer: N'."}]
        items.append(
            Item("reasoning", f"bench-{i}", split_of(messages), messages, {"answer": str(a + b * c)})
        )
    return items


def suite_items(suites: list[str], limit: int, seed: int) -> tuple[dict[str, list[Item]], list[str]]:
    """Items by family and the suites that run on stand-in items."""
    by_family: dict[str, list[Item]] = {}
    stand_in = []
    for suite in suites:
        family = SUITES[suite][0]
        try:
            from qwen3.world import generate

            by_family[family] = generate(family, "test", limit, seed=seed)
        except (ImportError, ValueError):
            stand_in.append(suite)
            by_family.setdefault("reasoning", arithmetic_items(limit))
    return by_family, stand_in


def timed(backend, suites, options, items) -> tuple[float, dict]:
    start = time.perf_counter()
    results = run_suites(backend, suites, ["think", "no_think"], options, items, log=lambda _: None)
    return time.perf_counter() - start, results


def start_server(model_dir: Path, port: int, args, log_path: Path) -> subprocess.Popen:
    flags = ["--port", str(port), "--weights", "reference", "--max-model-len", str(args.max_model_len)]
    flags += [
        "--served-model-name",
        "bench",
        "--log-level",
        "warning",
        "--max-num-seqs",
        str(args.concurrency),
    ]
    server = subprocess.Popen(
        [sys.executable, "-m", "qwen3", "serve", str(model_dir), *flags],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("w"),
    )
    deadline = time.monotonic() + 180
    while True:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            server.kill()
            raise SystemExit("the server did not start")
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--preset", default="qwen3-debug-tiny")
    parser.add_argument("--suite", default="reasoning,knowledge,thinkfollow")
    parser.add_argument("--limit", type=int, default=32)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--max-model-len", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    suites = [s for s in args.suite.split(",") if s]
    items, stand_in = suite_items(suites, args.limit, args.seed)
    if stand_in:
        print(f"no world generator for {', '.join(stand_in)}: arithmetic reasoning items stand in")
        suites = sorted({s for s in suites if s not in stand_in} | {"reasoning"})
    options = EvalOptions(seed=args.seed, limit=args.limit, sampling="greedy", max_tokens=args.max_tokens)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = init_checkpoint(args.preset, Path(tmp) / "model", seed=0)
        local = InProcessBackend(str(model_dir), weights="reference", max_model_len=args.max_model_len,
                                 max_num_seqs=args.concurrency)  # fmt: skip
        timed(local, suites, options, items)  # warm-up (kernels, allocator)
        before, local_results = timed(local, suites, options, items)
        port = free_port()
        server = start_server(model_dir, port, args, Path(tmp) / "server.log")
        try:
            remote = OpenAIBackend(f"http://127.0.0.1:{port}/v1", "bench", concurrency=args.concurrency)
            remote.check()
            served_s, served_results = timed(remote, suites, options, items)
        finally:
            server.terminate()
            server.wait(60)
        after, _ = timed(local, suites, options, items)
    replies = sum(s["n"] * s["samples"] for by in local_results["suites"].values() for s in by.values())
    in_process = (before + after) / 2
    print(f"{args.preset}, suites {','.join(suites)} x 2 modes, {replies} graded replies, greedy, "
          f"max_tokens {args.max_tokens}; load average {os.getloadavg()[0]:.2f} (shared machine)")  # fmt: skip
    print(
        f"in process       {replies / in_process:8.1f} items/s   ({before:.2f} s before, {after:.2f} s after)"
    )
    print(
        f"qwen3 serve      {replies / served_s:8.1f} items/s   ({served_s:.2f} s, {args.concurrency} in flight)"
    )
    print(f"in process / served: {served_s / in_process:.2f}x")
    for suite, by_mode in local_results["suites"].items():
        for mode, summary in by_mode.items():
            other = served_results["suites"][suite][mode]["score"]
            print(
                f"  {suite:12s} {mode:8s} in process {100 * summary['score']:5.1f}   served {100 * other:5.1f}"
            )


if __name__ == "__main__":
    main()
