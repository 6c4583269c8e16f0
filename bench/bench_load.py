"""Checkpoint load time and peak RSS: ``qwen3.load_model`` vs transformers' ``from_pretrained``.

Writes the qwen3-0.6b preset checkpoint (random weights, bf16, 1.19 GB) unless ``--dir`` names one, then loads it
in a fresh subprocess per loader. Each child touches every parameter after loading (a lazily memory-mapped
tensor only counts once read), and reports the load time, its RSS after imports (baseline) and its peak RSS.
Goal: peak RSS <= 1.3x the weights' size.

    python bench/bench_load.py [--dir CKPT] [--dtype bfloat16|float32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
loader, path, dtype = sys.argv[1:]
import torch
def rss_now():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
if loader == "qwen3":
    import qwen3.model.checkpoint as ours
    load = lambda: ours.load_model(path, dtype=dtype)
else:
    import transformers
    load = lambda: transformers.AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
baseline = rss_now()
start = time.perf_counter()
model = load()
seconds = time.perf_counter() - start
with torch.no_grad():
    # In 1M-element chunks: summing a whole bf16 tensor in fp32 would allocate an fp32 copy of it.
    checksum = sum(float(c.sum(dtype=torch.float32)) for p in model.parameters() for c in p.reshape(-1).split(1 << 20))
# VmHWM belongs to this process image (ru_maxrss would include the parent's peak from before exec).
peak = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(json.dumps({"seconds": seconds, "baseline": baseline, "peak": peak, "checksum": checksum}))
"""


def weights_bytes(directory: Path) -> int:
    return sum(f.stat().st_size for f in directory.glob("*.safetensors"))


def run_child(loader: str, directory: Path, dtype: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", CHILD, loader, str(directory), dtype], env=env,
                          capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dir", type=Path, help="checkpoint directory (default: write the qwen3-0.6b preset)"
    )
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        directory = args.dir
        if directory is None:
            sys.path.insert(0, str(REPO))
            from qwen3.model.checkpoint import init_checkpoint

            directory = init_checkpoint("qwen3-0.6b", Path(tmp) / "qwen3-0.6b", seed=0)
        size = weights_bytes(directory)
        stored_itemsize = (
            2 if json.loads((directory / "config.json").read_text()).get("torch_dtype") != "float32" else 4
        )
        loaded_size = size * (4 if args.dtype == "float32" else 2) // stored_itemsize
        print(f"checkpoint {directory.name}: weights {size / 1e9:.3f} GB on disk; loading as {args.dtype} "
              f"({loaded_size / 1e9:.3f} GB in memory)")  # fmt: skip
        header = f"{'loader':<14}{'load s':>8}{'baseline GB':>13}{'peak RSS GB':>13}{'peak/weights':>14}{'(peak-baseline)/weights':>25}"
        print(header)
        results = {}
        for loader in ("qwen3", "transformers"):
            r = results[loader] = run_child(loader, directory, args.dtype)
            print(f"{loader:<14}{r['seconds']:>8.2f}{r['baseline'] / 1e9:>13.3f}{r['peak'] / 1e9:>13.3f}"
                  f"{r['peak'] / loaded_size:>14.2f}{(r['peak'] - r['baseline']) / loaded_size:>25.2f}")  # fmt: skip
        same = abs(results["qwen3"]["checksum"] - results["transformers"]["checksum"]) < 1e-3 * max(
            1.0, abs(results["qwen3"]["checksum"])
        )
        print(f"parameter checksums agree: {same}")


if __name__ == "__main__":
    main()
