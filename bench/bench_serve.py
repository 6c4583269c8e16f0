"""Load check of ``qwen3 serve``: N concurrent streaming chat clients for a bounded time, some hanging up at random.

    PYTHONPATH=. python bench/bench_serve.py                        # qwen3-debug-5m, 64 clients, 30 s
    PYTHONPATH=. python bench/bench_serve.py --clients 16 --duration 10 --max-tokens 32

Starts the server as a subprocess on a free local port (a random-weight checkpoint written by ``qwen3 init``
unless ``--model`` is given), then:

1. offline: the same engine settings in this process, ``LLM.generate`` on ``--clients`` chat prompts with
   ``--max-tokens`` each (end-of-sequence ignored): the engine's throughput without HTTP;
2. warm-up: every client sends one request (the KV cache pages get touched, the allocator settles);
3. load: each client loops until ``--duration`` is over: a streamed chat completion (``ignore_eos``); with
   probability ``--disconnect`` it hangs up after a random number of chunks.

Prints requests/s, output tokens/s (completed requests' usage, and what the engine generated per /metrics,
aborted requests included), time to first token p50/p99, errors, the mean engine batch, and the server's RSS after
start, after warm-up and after the load next to the KV cache size: RSS must not keep growing once the cache is
touched. Timings on a shared 2-core machine are noisy (the offline run is measured before and after the server's,
and two torch threads suffer most when other jobs run: compare with ``--threads 1``); the load average is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Stats:
    completed: int = 0
    disconnected: int = 0
    errors: list[str] = field(default_factory=list)
    tokens: int = 0
    ttft: list[float] = field(default_factory=list)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def kv_cache_mib(model_dir: Path, num_seqs: int, max_model_len: int) -> float:
    config = json.loads((model_dir / "config.json").read_text())
    itemsize = {"float32": 4, "bfloat16": 2, "float16": 2}[config.get("torch_dtype", "float32")]
    per_token = (
        2 * config["num_hidden_layers"] * config["num_key_value_heads"] * config["head_dim"] * itemsize
    )
    return per_token * num_seqs * max_model_len / 2**20


def messages(i: int) -> list[dict]:
    return [{"role": "user", "content": f"Request {i}: tell me a story about the number {i * 7919 % 1000}."}]


def offline_tokens_per_second(args, model_dir: Path) -> float:
    from qwen3.engine import LLM, SamplingParams

    llm = LLM(str(model_dir), **engine_kwargs(args))
    params = SamplingParams(
        temperature=0.6, top_p=0.95, top_k=20, max_tokens=args.max_tokens, ignore_eos=True
    )
    llm.chat([messages(i) for i in range(args.clients)], params, progress=False)  # warm-up: every batch shape
    start = time.perf_counter()
    outputs = llm.chat([messages(i) for i in range(args.clients)], params, progress=False)
    elapsed = time.perf_counter() - start
    return sum(len(o.outputs[0].token_ids) for o in outputs) / elapsed


def engine_kwargs(args) -> dict:
    return {"max_num_seqs": args.clients, "max_model_len": args.max_model_len, "weights": args.weights}


async def one_request(client: httpx.AsyncClient, i: int, args, stats: Stats, rng: random.Random) -> None:
    body = {
        "messages": messages(i),
        "max_tokens": args.max_tokens,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    hang_up_after = rng.randint(1, args.max_tokens) if rng.random() < args.disconnect else None
    start = time.perf_counter()
    chunks = 0
    try:
        async with client.stream("POST", "/v1/chat/completions", json=body) as response:
            if response.status_code != 200:
                stats.errors.append(f"HTTP {response.status_code}: {(await response.aread())[:200]!r}")
                return
            async for line in response.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if "error" in chunk:
                    stats.errors.append(str(chunk["error"]))
                    return
                if chunk.get("usage"):
                    stats.tokens += chunk["usage"]["completion_tokens"]
                delta = chunk["choices"][0]["delta"] if chunk.get("choices") else {}
                if delta.get("content") or delta.get("reasoning_content"):
                    chunks += 1
                    if chunks == 1:
                        stats.ttft.append(time.perf_counter() - start)
                    if hang_up_after is not None and chunks >= hang_up_after:
                        stats.disconnected += 1
                        return  # leaving the block closes the connection mid-stream
        stats.completed += 1
    except httpx.HTTPError as err:
        stats.errors.append(f"{type(err).__name__}: {err}")


async def client_loop(base: str, index: int, deadline: float | None, args, stats: Stats) -> None:
    rng = random.Random(index)
    limits = httpx.Limits(max_connections=2)
    async with httpx.AsyncClient(base_url=base, timeout=httpx.Timeout(300), limits=limits) as client:
        request = index
        while True:
            await one_request(client, request, args, stats, rng)
            request += args.clients
            if deadline is None or time.perf_counter() >= deadline:
                return


async def run_clients(base: str, args, duration: float | None) -> tuple[Stats, float]:
    stats = Stats()
    start = time.perf_counter()
    deadline = None if duration is None else start + duration
    await asyncio.gather(*(client_loop(base, i, deadline, args, stats) for i in range(args.clients)))
    return stats, time.perf_counter() - start


def merge(total: Stats, part: Stats) -> None:
    total.completed += part.completed
    total.disconnected += part.disconnected
    total.errors += part.errors
    total.tokens += part.tokens
    total.ttft += part.ttft


def metric(base: str, name: str) -> float:
    for line in httpx.get(f"{base}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


def percentile(values: list[float], q: float) -> float:
    return (
        statistics.quantiles(values, n=100)[q - 1]
        if len(values) > 1
        else (values[0] if values else float("nan"))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--model", type=Path, help="checkpoint directory (default: a random --preset checkpoint)"
    )
    parser.add_argument("--preset", default="qwen3-debug-5m")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--duration", type=float, default=30.0, help="seconds of load")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--max-model-len", type=int, default=512)
    parser.add_argument(
        "--disconnect", type=float, default=0.1, help="probability a client hangs up mid-stream"
    )
    parser.add_argument("--weights", default="auto")
    parser.add_argument("--rounds", type=int, default=3, help="the load in rounds, RSS printed after each")
    parser.add_argument("--offline-seconds", type=float, default=10.0)
    parser.add_argument("--no-offline", action="store_true", help="skip the offline engine run")
    parser.add_argument("--threads", type=int, help="torch threads for the server and the offline run")
    args = parser.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        env["OMP_NUM_THREADS"] = str(args.threads)

    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from qwen3.model.checkpoint import init_checkpoint

            model_dir = init_checkpoint(args.preset, Path(tmp) / args.preset, seed=0)
        offline = [] if args.no_offline else [offline_tokens_per_second(args, model_dir)]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        flags = [
            "--port",
            str(port),
            "--max-num-seqs",
            str(args.clients),
            "--max-model-len",
            str(args.max_model_len),
        ]
        log_path = Path(tmp) / "server.log"
        log = log_path.open("w")  # noqa: SIM115 - the server writes it; read back if the server dies
        server = subprocess.Popen(
            [sys.executable, "-m", "qwen3", "serve", str(model_dir), *flags, "--weights", args.weights],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=log,
            text=True,
        )
        try:
            served = load(args, model_dir, base, server, log_path)
        finally:
            server.terminate()
            server.wait(60)
            log.close()
        if offline:  # again after the load: the machine is shared, so bracket the server run
            offline.append(offline_tokens_per_second(args, model_dir))
            mean = statistics.mean(offline)
            print(f"offline engine tokens/s (before, after) {offline[0]:.1f}, {offline[1]:.1f} "
                  f"({1000 / mean:.2f} ms per token)   server/offline {served / mean:.2f}")  # fmt: skip


def load(args, model_dir: Path, base: str, server: subprocess.Popen, log_path: Path) -> float:
    """Run the warm-up and the load, print the results; returns the engine's output tokens/s under load."""
    deadline = time.monotonic() + 180
    while True:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with {server.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("the server did not start") from None
            time.sleep(0.2)
    rss_start = rss_mib(server.pid)
    asyncio.run(run_clients(base, args, duration=None))  # warm-up: one request per client
    rss_warm = rss_mib(server.pid)
    generated_before = metric(base, "qwen3_generation_tokens_total")
    steps_before = (metric(base, "qwen3_batch_size_sum"), metric(base, "qwen3_batch_size_count"))
    stats, elapsed, rss_rounds = Stats(), 0.0, []
    cpu_before = (cpu_seconds(server.pid), cpu_seconds(os.getpid()))
    for _ in range(args.rounds):
        round_stats, seconds = asyncio.run(run_clients(base, args, args.duration / args.rounds))
        merge(stats, round_stats)
        elapsed += seconds
        rss_rounds.append(rss_mib(server.pid))
    rss_end = rss_rounds[-1]
    server_cpu = cpu_seconds(server.pid) - cpu_before[0]
    client_cpu = cpu_seconds(os.getpid()) - cpu_before[1]
    generated = metric(base, "qwen3_generation_tokens_total") - generated_before
    seqs = metric(base, "qwen3_batch_size_sum") - steps_before[0]
    steps = metric(base, "qwen3_batch_size_count") - steps_before[1]

    print(f"model {model_dir.name}: {args.clients} clients, {elapsed:.1f} s, max_tokens {args.max_tokens}, "
          f"disconnect p={args.disconnect}, threads {args.threads or 'default'}, "
          f"load average {os.getloadavg()[0]:.1f}")  # fmt: skip
    print(f"requests: {stats.completed} completed, {stats.disconnected} hung up, {len(stats.errors)} errors")
    print(f"requests/s (completed)            {stats.completed / elapsed:8.2f}")
    print(f"output tokens/s (completed usage) {stats.tokens / elapsed:8.1f}")
    print(f"output tokens/s (engine, all)     {generated / elapsed:8.1f}   "
          f"mean batch {seqs / max(steps, 1):.1f}")  # fmt: skip
    print(f"time to first token p50 / p99     {percentile(stats.ttft, 50) * 1000:8.0f} / "
          f"{percentile(stats.ttft, 99) * 1000:.0f} ms")  # fmt: skip
    print(f"CPU seconds under load: server {server_cpu:.1f} ({1000 * server_cpu / max(generated, 1):.2f} ms per "
          f"generated token), clients (this process) {client_cpu:.1f}, wall {elapsed:.1f}")  # fmt: skip
    kv = kv_cache_mib(model_dir, args.clients, args.max_model_len)
    rounds = ", ".join(f"{rss:.0f}" for rss in rss_rounds)
    print(f"server RSS MiB: start {rss_start:.0f}, after warm-up {rss_warm:.0f}, after each load round {rounds} "
          f"(growth under load {rss_end - rss_warm:+.0f}; KV cache {kv:.0f})")  # fmt: skip
    for error in stats.errors[:5]:
        print("error:", error)
    return generated / elapsed


if __name__ == "__main__":
    main()
