"""The ctypes boundary of qwen3/engine/cpu_kernels.py, without running C: every kernel has one declared
prototype, every wrapper checks its tensors before a pointer crosses, and every failing status raises (or, for
the two kernels whose callers fall back to torch, returns None for "refused" and raises for "no memory")."""

from __future__ import annotations

import ctypes
import re
from types import SimpleNamespace

import pytest
import torch

from qwen3.engine import cpu_kernels
from qwen3.engine.cpu_kernels import KERNEL_FILES, PROTOTYPES, SOURCE, KernelError


def exported_kernels() -> dict[str, str]:
    """name -> return type of every non-static function defined in the kernel sources."""
    text = "\n".join(p.read_text() for p in [SOURCE, *sorted(KERNEL_FILES.glob("*.c"))])
    found = re.findall(r"^(int|void)\s+(\w+)\s*\(([^)]*)\)\s*\{", text, flags=re.MULTILINE)
    return {name: (kind, args) for kind, name, args in found}


def test_every_kernel_has_one_prototype_matching_its_c_signature():
    kernels = exported_kernels()
    assert set(PROTOTYPES) == set(kernels)
    for name, (restype, argtypes) in PROTOTYPES.items():
        kind, args = kernels[name]
        assert (restype is None) == (kind == "void"), name
        count = 0 if args.strip() in ("", "void") else args.count(",") + 1
        assert len(argtypes) == count, name


class FakeLibrary:
    """Every kernel returns ``status`` (argmax_rows returns nothing, as in C); gemm is reported available."""

    def __init__(self, status: int):
        self.status = status

    def __getattr__(self, name):
        if name == "gemm_available":
            return lambda: 1
        return lambda *args: None if name == "argmax_rows" else self.status


def bf16(*shape):
    return torch.zeros(*shape, dtype=torch.bfloat16)


def prefill_args():
    return (bf16(1, 4, 3, 64), bf16(2, 2, 16, 64), bf16(2, 2, 16, 64), 0, 0)


CALLS = {
    "woq_int8_matmul": lambda: cpu_kernels.woq_int8_matmul(
        torch.zeros(2, 8), torch.zeros(4, 8, dtype=torch.int8), torch.ones(4)
    ),
    "sample": lambda: cpu_kernels.sample(
        torch.zeros(1, 5), [SimpleNamespace(temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)], [0.5]
    ),
    "add_rms_norm": lambda: cpu_kernels.add_rms_norm(
        torch.zeros(2, 8), torch.zeros(2, 8), torch.ones(8), 1e-6
    ),
    "silu_mul": lambda: cpu_kernels.silu_mul(torch.zeros(2, 8)),
    "pack_pairs": lambda: cpu_kernels.pack_pairs(bf16(16, 4)),
    "gemm_bf16": lambda: cpu_kernels.gemm_bf16(bf16(2, 4), bf16(16 * 4), 16),
    "prefill_attention": lambda: cpu_kernels.prefill_attention(*prefill_args()),
}


def decode_layer_call():
    qkv = torch.zeros(1, (4 + 2 * 2) * 8)
    cache = torch.zeros(1, 2, 16, 8)
    tables = torch.zeros(16, 8)
    return cpu_kernels.decode_layer_attention(
        qkv, torch.ones(8), torch.ones(8), tables, tables, cache, cache.clone(), torch.zeros(1, dtype=torch.int64),
        4, 16, 1e-6,
    )  # fmt: skip


@pytest.mark.parametrize("name", CALLS)
@pytest.mark.parametrize(("status", "error"), [(-1, KernelError), (-2, MemoryError), (3, KernelError)])
def test_a_failing_status_raises(monkeypatch, name, status, error):
    monkeypatch.setattr(cpu_kernels, "library", lambda: FakeLibrary(status))
    with pytest.raises(error, match=name):
        CALLS[name]()


@pytest.mark.parametrize("name", CALLS)
def test_status_zero_returns_a_result(monkeypatch, name):
    monkeypatch.setattr(cpu_kernels, "library", lambda: FakeLibrary(0))
    assert CALLS[name]() is not None


def test_kernels_with_a_torch_fallback_return_none_only_when_refused(monkeypatch):
    monkeypatch.setattr(cpu_kernels, "library", lambda: FakeLibrary(-1))
    assert decode_layer_call() is None
    monkeypatch.setattr(cpu_kernels, "library", lambda: FakeLibrary(-2))
    with pytest.raises(MemoryError, match="decode_layer_attention"):
        decode_layer_call()
    monkeypatch.setattr(cpu_kernels, "library", lambda: FakeLibrary(0))
    assert decode_layer_call().shape == (1, 32)


BAD_INPUTS = {
    "woq_int8_matmul": lambda: cpu_kernels.woq_int8_matmul(
        torch.zeros(2, 8),
        torch.zeros(4, 8),
        torch.ones(4),  # float weight, not int8
    ),
    "argmax": lambda: cpu_kernels.argmax(torch.zeros(5)),  # 1-d
    "sample": lambda: cpu_kernels.sample(torch.zeros(1, 5, dtype=torch.float16), [None], [0.5]),
    "add_rms_norm": lambda: cpu_kernels.add_rms_norm(torch.zeros(2, 8).t(), None, torch.ones(2), 1e-6),
    "silu_mul": lambda: cpu_kernels.silu_mul(torch.zeros(2, 8, dtype=torch.int32)),
    "decode_layer_attention": lambda: cpu_kernels.decode_layer_attention(
        torch.zeros(1, 64),
        torch.ones(8),
        torch.ones(8),
        torch.zeros(16, 8),
        torch.zeros(16, 8),
        torch.zeros(1, 2, 16, 8),
        torch.zeros(1, 2, 16, 8),
        torch.zeros(1, dtype=torch.int32),
        4,
        16,
        1e-6,
    ),  # fmt: skip
    "gemm_bf16": lambda: cpu_kernels.gemm_bf16(bf16(2, 4), bf16(16 * 4), 16, store="half"),
}


@pytest.mark.parametrize("name", BAD_INPUTS)
def test_bad_tensors_are_refused_before_c_sees_them(monkeypatch, name):
    called = []

    class Recording(FakeLibrary):
        def __getattr__(self, attr):
            called.append(attr)
            return super().__getattr__(attr)

    monkeypatch.setattr(cpu_kernels, "library", lambda: Recording(0))
    with pytest.raises(ValueError, match=name):
        BAD_INPUTS[name]()
    assert set(called) <= {"gemm_available"}  # no kernel ran


def test_without_the_library_a_wrapper_says_so(monkeypatch):
    monkeypatch.setattr(cpu_kernels, "library", lambda: None)
    with pytest.raises(RuntimeError, match="CPU kernels are not available"):
        cpu_kernels.silu_mul(torch.zeros(2, 8))


def test_prototypes_use_ctypes_types():
    for restype, argtypes in PROTOTYPES.values():
        assert restype in (None, ctypes.c_int)
        assert all(issubclass(t, ctypes._SimpleCData) for t in argtypes)
