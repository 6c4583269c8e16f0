"""The C kernels must compile wherever they can: a compile error would otherwise only skip every kernel test."""

from __future__ import annotations

import os
import platform
import shutil

import pytest

from qwen3.engine import cpu_kernels


def compiler() -> str:
    if os.environ.get("QWEN3_NO_KERNELS") == "1" or platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("kernels are off here by design")
    found = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
    if found is None:
        pytest.skip("no C compiler")
    return found


def test_the_kernels_build_where_a_compiler_is(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN3_CACHE", str(tmp_path))  # a fresh build, not a cached library
    built = cpu_kernels._build(compiler())  # raises RuntimeError with the compiler's message on failure
    assert built.is_file() and built.parent == tmp_path / "kernels"


@pytest.mark.parametrize("march", ["x86-64-v3", "skylake-avx512"])
def test_the_kernels_build_for_cpus_without_avx512_or_bf16(march, tmp_path, monkeypatch):
    """The portable and AVX-512-without-BF16 paths compile too (AVX512-BF16 code kept behind its #if). To run the
    tests on such a build: QWEN3_KERNEL_MARCH=x86-64-v3 python -m pytest tests/engine."""
    monkeypatch.setenv("QWEN3_CACHE", str(tmp_path))
    flags = [flag if not flag.startswith("-march=") else f"-march={march}" for flag in cpu_kernels.FLAGS]
    monkeypatch.setattr(cpu_kernels, "FLAGS", flags)
    assert cpu_kernels._build(compiler()).is_file()
