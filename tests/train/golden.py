"""The golden loss curve: the first 30 losses of qwen3-debug-tiny on generated token patterns.

Regenerate (and commit the JSON) whenever a change is MEANT to alter training numerics: model init or forward,
the pattern generator, packing, the loss or its normalisation, AdamW settings, the schedule, or seeding:

    PYTHONPATH=. python tests/train/golden.py

test_trainer.py::test_golden_loss_curve compares a fresh run with the file (rtol 1e-3).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_config  # noqa: E402

from qwen3.utils.atomic import atomic_write_json  # noqa: E402

GOLDEN_FILE = Path(__file__).with_name("golden_debug_tiny.json")


def golden_config(run_dir: str | Path):
    return tiny_config(
        run_dir,
        steps=30,
        micro_batch_size=8,
        optim__lr=1e-2,
        schedule__warmup_steps=5,
        data__synthetic_documents=2000,
    )


def golden_losses(run_dir: str | Path) -> list[float]:
    from qwen3.train.trainer import Trainer

    return Trainer(golden_config(run_dir), progress=False).fit().losses


def main() -> None:
    torch.set_num_threads(2)
    with tempfile.TemporaryDirectory() as run_dir:
        losses = golden_losses(run_dir)
    record = {
        "what": "qwen3-debug-tiny, synthetic patterns, seq 64, 8 rows/step, AdamW lr 1e-2 cosine, fp32",
        "torch": torch.__version__,
        "losses": losses,
    }
    atomic_write_json(GOLDEN_FILE, record, indent=1)
    print(f"wrote {GOLDEN_FILE}: {losses[0]:.4f} -> {losses[-1]:.4f}")


if __name__ == "__main__":
    main()
