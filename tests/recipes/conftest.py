"""One uninterrupted smoke run, through the CLI in a subprocess, shared by every recipe test (the baseline that
killed-and-resumed runs are compared with)."""

from __future__ import annotations

import subprocess

import pytest

from .processes import kill, recipe_process


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("recipe") / "smoke"
    log = out.parent / "smoke.log"
    process = recipe_process(out, log=log)
    try:
        code = process.wait(timeout=900)
    except subprocess.TimeoutExpired:
        kill(process)
        raise
    assert code == 0, log.read_text()
    return out
