"""Two gloo processes under torchrun against one process with the same global batch (CPU)."""

import json
import subprocess

import pytest

from qwen3.train.metrics import read_metrics
from qwen3.train.trainer import Trainer

from .conftest import child_env, python_command, run_losses, tiny_config

pytestmark = pytest.mark.distributed


def torchrun(config, tmp_path, *args):
    config_file = tmp_path / f"{config.stage}.json"
    config_file.write_text(json.dumps(config.to_dict()))
    command = python_command(
        "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "qwen3.train", str(config_file), "--no-progress", *args,
    )  # fmt: skip
    done = subprocess.run(command, env=child_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]


def metric(run_dir, key):
    return [record[key] for record in read_metrics(run_dir)]


@pytest.mark.parametrize(
    ("strategy", "preset", "micro"),
    [
        ("ddp", "qwen3-debug-tiny", 2),  # 2 micro-batches per rank: gradient accumulation without sync
        ("fsdp", "qwen3-debug-tiny", 2),
        # No accumulation: across ranks the global-batch LBL is exact (within a rank's accumulation it is not).
        ("ddp", "qwen3-debug-moe-tiny", 4),
    ],
)
def test_two_processes_match_one_with_the_same_global_batch(tmp_path, strategy, preset, micro):
    common = dict(steps=3, model__name=preset, model__router_aux_loss_coef=0.1, schedule__kind="constant",
                  checkpoint__every=3)  # fmt: skip
    two = tiny_config(tmp_path / "two", micro_batch_size=micro, global_batch_size=8, distributed=strategy,
                      stage=strategy, **common)  # fmt: skip
    torchrun(two, tmp_path)
    one = tiny_config(tmp_path / "one", micro_batch_size=8, **{**common, "steps": 5})
    reference = Trainer(one, progress=False).fit().losses
    assert run_losses(two.run_dir) == pytest.approx(reference[:3], rel=1e-5)
    if preset.endswith("moe-tiny"):
        # The expert counts are all-reduced: the global-batch LBL equals the single-process one.
        assert metric(two.run_dir, "aux_loss") == pytest.approx(metric(one.run_dir, "aux_loss")[:3], rel=1e-5)
    # The 2-process checkpoint resumes in one process (any world size): same losses as the 1-process run.
    resumed = tiny_config(two.run_dir, micro_batch_size=8, **{**common, "steps": 5})
    Trainer(resumed, resume=True, progress=False).fit()
    assert run_losses(two.run_dir) == pytest.approx(reference, rel=1e-5)


def test_a_one_process_checkpoint_resumes_in_two_fsdp_processes(tmp_path):
    common = dict(schedule__kind="constant", global_batch_size=8)
    one = tiny_config(tmp_path / "one", micro_batch_size=8, steps=5, **common)
    reference = Trainer(one, progress=False).fit().losses
    first = tiny_config(tmp_path / "run", micro_batch_size=8, steps=3, checkpoint__every=3, **common)
    Trainer(first, progress=False).fit()
    # Sharded AdamW moments and weights are loaded from the full single-process checkpoint.
    resumed = tiny_config(
        first.run_dir, micro_batch_size=2, steps=5, distributed="fsdp", stage="fsdp", **common
    )
    torchrun(resumed, tmp_path, "--resume")
    assert run_losses(first.run_dir) == pytest.approx(reference, rel=1e-5)


def test_two_processes_match_one_with_per_sequence_normalisation(tmp_path):
    # Packed SFT rows hold different numbers of sequences: the denominator must be the global batch's count.
    common = dict(steps=3, data__kind="sft", data__synthetic="chat", data__synthetic_documents=64, data__seq_len=96,
                  schedule__kind="constant", loss__options={"normalization": "sequences"})  # fmt: skip
    two = tiny_config(
        tmp_path / "two", micro_batch_size=2, global_batch_size=8, stage="ddp-sequences", **common
    )
    torchrun(two, tmp_path)
    one = tiny_config(tmp_path / "one", micro_batch_size=8, **common)
    assert run_losses(two.run_dir) == pytest.approx(Trainer(one, progress=False).fit().losses, rel=1e-5)
