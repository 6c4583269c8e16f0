"""Run untrusted Python (code a model wrote) in a child process with a time and a memory limit.

The child is a fresh ``python -I`` (isolated mode: no user site, no PYTHON* variables, the current directory not
on the path) in a temporary working directory, with ``resource.setrlimit`` caps on address space and CPU time set
before it starts, and a wall-clock timeout enforced by the parent, which kills the whole process group. Our own
process never executes the code. This is a guard against runaway programs, not a security boundary against a
hostile one (no network or filesystem isolation): run evaluations of untrusted models in a container.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass

MAX_OUTPUT_CHARS = 64_000


@dataclass
class RunResult:
    """``returncode`` None when the run was killed for time; ``timed_out`` then True. ``stdout``/``stderr`` are
    cut to ``MAX_OUTPUT_CHARS``."""

    stdout: str
    stderr: str
    returncode: int | None
    timed_out: bool

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and not self.timed_out


def _limits(timeout_s: float, memory_mb: int):
    def apply() -> None:
        import resource

        memory = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        cpu = max(1, int(timeout_s) + 1)
        resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
        os.setsid()  # its own process group, so a timeout kills its children too

    return apply


def run_python(code: str, timeout_s: float = 5.0, memory_mb: int = 512, stdin: str = "") -> RunResult:
    """Run ``code`` as a script in a child interpreter; never raises for what the code does."""
    if not isinstance(code, str):
        raise TypeError(f"code must be a str, got {type(code).__name__}")
    if not (timeout_s > 0) or memory_mb < 16:
        raise ValueError(f"run_python needs timeout_s > 0 and memory_mb >= 16, got {timeout_s}, {memory_mb}")
    with tempfile.TemporaryDirectory(prefix="qwen3-sandbox-") as workdir:
        process = subprocess.Popen(
            [sys.executable, "-I", "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=workdir,
            env={"PATH": os.environ.get("PATH", ""), "PYTHONHASHSEED": "0"},
            preexec_fn=_limits(timeout_s, memory_mb),
            text=True,
        )
        try:
            out, err = process.communicate(stdin, timeout=timeout_s)
            return RunResult(out[:MAX_OUTPUT_CHARS], err[:MAX_OUTPUT_CHARS], process.returncode, False)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            return RunResult(out[:MAX_OUTPUT_CHARS], err[:MAX_OUTPUT_CHARS], None, True)
