"""What the README's commands write (models/ from `qwen3 init`, runs/ from `qwen3 train`) is ignored by git."""

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="not a git checkout")
@pytest.mark.parametrize("path", ["models/qwen3-0.6b/config.json", "runs/debug/metrics.jsonl"])
def test_readme_outputs_are_ignored(path):
    result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    assert result.returncode == 0, f"{path} is not ignored"
