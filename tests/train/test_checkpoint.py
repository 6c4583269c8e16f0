import json
import signal
import subprocess
import time

from qwen3.train.checkpoint import PAUSE_ENV, checkpoints_dir, latest_checkpoint, list_checkpoints
from qwen3.train.trainer import Trainer

from .conftest import child_env, python_command, run_losses, tiny_config


def wait_for(path, process, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the training process never reached the save"
        time.sleep(0.05)


def test_kill_9_in_the_middle_of_a_save_then_resume(tmp_path):
    config = tiny_config(tmp_path / "run", steps=8, checkpoint__every=3)
    config_file = tmp_path / "config.json"
    config_file.write_text(json.dumps(config.to_dict()))
    marker = tmp_path / "paused"
    process = subprocess.Popen(
        python_command("-m", "qwen3.train", str(config_file), "--no-progress"),
        env=child_env(**{PAUSE_ENV: f"6:{marker}"}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        wait_for(marker, process)
        # Halfway through writing step 6: only its temporary directory exists.
        partial = [
            p.name
            for p in checkpoints_dir(config.run_dir).iterdir()
            if p.name.startswith(".tmp-step-00000006")
        ]
        assert partial, list(checkpoints_dir(config.run_dir).iterdir())
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert latest_checkpoint(config.run_dir).name == "step-00000003"

    resumed = Trainer(config, resume=True, progress=False)
    assert resumed.step == 3
    assert not [p for p in checkpoints_dir(config.run_dir).iterdir() if p.name.startswith(".tmp-")]
    resumed.fit()
    assert [p.name for p in list_checkpoints(config.run_dir)] == [
        "step-00000003",
        "step-00000006",
        "step-00000008",
    ]

    reference = tiny_config(tmp_path / "reference", steps=8, checkpoint__every=3)
    expected = Trainer(reference, progress=False).fit().losses
    assert run_losses(config.run_dir) == expected
