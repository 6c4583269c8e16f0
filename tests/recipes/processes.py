"""The recipe as a user runs it: `qwen3 recipe run smoke` in a subprocess, and a kill -9 of it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import qwen3

PACKAGE_ROOT = str(Path(qwen3.__file__).resolve().parents[1])


def recipe_process(out: Path, *options: str, log: Path | None = None) -> subprocess.Popen:
    """``qwen3 recipe run smoke --out OUT --no-progress OPTIONS`` in its own session (so a kill reaches every
    process it started), importing this checkout's qwen3; stdout and stderr go to ``log``."""
    paths = [PACKAGE_ROOT, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(paths)}
    command = [sys.executable, "-m", "qwen3", "recipe", "run", "smoke", "--out", str(out), "--no-progress"]
    with open(log or os.devnull, "w") as sink:  # the child keeps its own descriptor
        return subprocess.Popen(
            [*command, *options], stdout=sink, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )


def kill(process: subprocess.Popen) -> None:
    """SIGKILL the process's whole session (it leads it), as a kill -9 of the run would."""
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
