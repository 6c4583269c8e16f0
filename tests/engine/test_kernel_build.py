"""The C kernels must compile wherever they can: a compile error would otherwise only skip every kernel test."""

from __future__ import annotations

import os
import platform
import shutil

import pytest

from qwen3.engine import cpu_kernels


def test_the_kernels_build_where_a_compiler_is(tmp_path, monkeypatch):
    if os.environ.get("QWEN3_NO_KERNELS") == "1" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("kernels are off here by design")
    compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        pytest.skip("no C compiler")
    monkeypatch.setenv("QWEN3_CACHE", str(tmp_path))  # a fresh build, not a cached library
    built = cpu_kernels._build(compiler)  # raises RuntimeError with the compiler's message on failure
    assert built.is_file() and built.parent == tmp_path / "kernels"
