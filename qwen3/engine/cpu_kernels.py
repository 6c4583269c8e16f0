"""The CPU decode and prefill-attention kernels of cpu_kernels.c: compiled on first use, cached, called through
ctypes.

Why: torch has no fast weight-only int8 matrix-vector product on this CPU (``_weight_int8pack_mm`` reads int8
weights at about half the memory bandwidth), and its attention for one query per sequence spends most of its time
in per-head overhead when heads are small and sequences many; its CPU flash attention for prefill runs bf16 far
below what AVX512-BF16 dot products reach (the numbers: docs/benchmarks.md). The kernels are plain C (AVX-512
intrinsics where the compiler targets them, portable loops otherwise).

The library is built with the system C compiler (``$CC``, else gcc/cc) into ``$QWEN3_CACHE/kernels`` (default
``~/.cache/qwen3/kernels``), named by a hash of the source, compiler and CPU flags, and written atomically.
Without a compiler, on other architectures, or with ``QWEN3_NO_KERNELS=1``, ``library()`` returns None and callers
use the torch path (the reference in tests).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

SOURCE = Path(__file__).with_name("cpu_kernels.c")  # includes the files of kernels/: one translation unit
KERNEL_FILES = Path(__file__).with_name("kernels")


def _sources_text() -> str:
    """The root file and every kernel file, for the library's cache key."""
    files = [SOURCE, *sorted(KERNEL_FILES.glob("*.[ch]"))]
    return "\0".join(f"{path.name}\0{path.read_text()}" for path in files)


# QWEN3_KERNEL_MARCH builds for another CPU level than this one's (e.g. x86-64-v3: no AVX-512), so the kernels'
# portable paths can be tested on a machine that would never take them.
MARCH = os.environ.get("QWEN3_KERNEL_MARCH", "native")
FLAGS = ["-O3", f"-march={MARCH}", "-fopenmp", "-fno-math-errno", "-fno-trapping-math", "-shared", "-fPIC"]
MAX_DECODE_ROWS = 8

# One declared prototype per kernel of cpu_kernels.c: name -> (return type, argument types). Every kernel but
# argmax_rows returns a status: 0 done, -1 an input it does not take, -2 no memory for its scratch.
_P, _I, _I64, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_float
PROTOTYPES: dict[str, tuple[type | None, list[type]]] = {
    "woq_int8_matmul": (_I, [_P, _P, _P, _P, _I, _I, _I, _I]),
    "argmax_rows": (None, [_P, _I, _I, _P, _I]),
    "sample_rows": (_I, [_P, _I, _I, _I, _P, _P, _P, _P, _P, _P]),
    "add_rms_norm": (_I, [_P, _P, _P, _P, _P, _I, _I, _F, _I]),
    "silu_mul": (_I, [_P, _P, _I, _I, _I]),
    "decode_step": (_I, [_P, _I, *[_P] * 7, *[_I] * 7, _I64, _I64, _F, _I]),
    "decode_layer_attention": (_I, [*[_P] * 9, _I, _I, _I, _I, _F, _I64, _I64, _I, _I]),
    "pack_bf16_pairs": (_I, [_P, _P, _I, _I]),
    "gemm_bf16": (_I, [_P, _P, _P, _I, _I, _I, _I]),
    "gemm_available": (_I, []),
    "prefill_attention": (_I, [_P, _I64, _I64, _P, _P, _I64, _P, _I64, _I64, _I, _I, _I, _I, _I, _F]),
}
STATUS_REFUSED, STATUS_NO_MEMORY = -1, -2


class KernelError(ValueError):
    """A kernel returned a failing status for its input (the message names the kernel and the input)."""


def check_status(kernel: str, status: int, what: str) -> None:
    """Raise for a failing status: MemoryError for -2, KernelError naming ``what`` the kernel refused otherwise."""
    if status == STATUS_NO_MEMORY:
        raise MemoryError(f"{kernel}: no memory for the kernel's scratch ({what})")
    if status != 0:
        raise KernelError(f"{kernel}: the kernel refused {what} (status {status})")


def check_tensor(
    kernel: str,
    name: str,
    t: Tensor,
    dtypes: tuple[torch.dtype, ...],
    dim: int,
    dense_dims: int | None = None,
) -> None:
    """The checks every wrapper makes before a pointer goes to C: a CPU tensor of a dtype and rank the kernel
    reads, dense (C sees only the data pointer and the strides it is given, so anything else is read as garbage).
    ``dense_dims``: only that many trailing dims must be dense (the kernel takes the leading strides)."""
    if not isinstance(t, Tensor):
        raise TypeError(f"{kernel}: {name} must be a tensor, got {type(t).__name__}")
    inner = dim if dense_dims is None else dense_dims
    dense = t.dim() == dim and _dense_trailing(t, inner)
    if t.device.type != "cpu" or t.dtype not in dtypes or not dense:
        allowed = "/".join(str(d).removeprefix("torch.") for d in dtypes)
        layout = "contiguous" if inner == dim else f"{inner} dense trailing dims"
        raise ValueError(
            f"{kernel}: {name} must be a {dim}-d CPU {allowed} tensor ({layout}), got {t.dtype} "
            f"{tuple(t.shape)} strides {t.stride()} on {t.device}"
        )


def _dense_trailing(t: Tensor, dims: int) -> bool:
    """Whether the last ``dims`` dims of ``t`` are laid out densely (row-major)."""
    expected = 1
    for size, stride in zip(reversed(t.shape[t.dim() - dims :]), reversed(t.stride()[t.dim() - dims :])):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return True


_lock = threading.Lock()
_library: ctypes.CDLL | None = None
_tried = False


def cache_dir() -> Path:
    root = os.environ.get("QWEN3_CACHE") or Path.home() / ".cache" / "qwen3"
    return Path(root) / "kernels"


def _cpu_flags() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return line
    except OSError:
        pass
    return platform.processor()


def _build(compiler: str) -> Path:
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    key = hashlib.sha256("\0".join([_sources_text(), version, _cpu_flags(), *FLAGS]).encode()).hexdigest()
    target = cache_dir() / f"cpu_kernels-{key[:16]}.so"
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        built = Path(tmp) / target.name
        result = subprocess.run(
            [compiler, *FLAGS, str(SOURCE), "-o", str(built), "-lm"], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"{compiler} failed on {SOURCE}:\n{result.stderr[-2000:]}")
        os.replace(built, target)  # atomic: a concurrent builder writes the same bytes
    return target


def library() -> ctypes.CDLL | None:
    """The loaded kernels, or None when they cannot be used here (the reason is warned once)."""
    global _library, _tried
    if _tried:  # the common case, without the lock
        return _library
    with _lock:
        if _tried:
            return _library
        _tried = True
        if os.environ.get("QWEN3_NO_KERNELS") == "1" or platform.machine() not in ("x86_64", "AMD64"):
            return None
        compiler = os.environ.get("CC") or shutil.which("gcc") or shutil.which("cc")
        if compiler is None:
            warnings.warn(
                "no C compiler found: the engine uses torch's slower CPU decode paths", stacklevel=2
            )
            return None
        try:
            lib = ctypes.CDLL(str(_build(compiler)))
        except (OSError, RuntimeError) as err:
            warnings.warn(f"CPU kernels unavailable, using torch's paths: {err}", stacklevel=2)
            return None
        for name, (restype, argtypes) in PROTOTYPES.items():
            function = getattr(lib, name)
            function.restype, function.argtypes = restype, argtypes
        _library = lib
        return lib


FUSED_DTYPES = (torch.float32, torch.bfloat16)


def _kernels() -> ctypes.CDLL:
    lib = library()
    if lib is None:
        raise RuntimeError("the CPU kernels are not available here (see cpu_kernels.library)")
    return lib


def woq_int8_matmul(x: Tensor, weight: Tensor, scales: Tensor) -> Tensor:
    """x [..., K] (fp32 or bf16, at most 8 rows) @ (weight int8 [N, K] * scales fp32 [N]).T, in x's dtype.

    Torch reference: ``F.linear(x.float(), weight.float() * scales[:, None]).to(x.dtype)``
    (``Int8Linear.dequantized`` in qwen3/engine/fast_weights.py)."""
    lib = _kernels()
    check_tensor("woq_int8_matmul", "weight", weight, (torch.int8,), 2)
    check_tensor("woq_int8_matmul", "scales", scales, (torch.float32,), 1)
    if x.dtype not in FUSED_DTYPES or x.shape[-1] != weight.shape[1] or scales.shape[0] != weight.shape[0]:
        raise ValueError(
            f"woq_int8_matmul: x {x.dtype} {tuple(x.shape)} does not fit weight {tuple(weight.shape)} with "
            f"scales {tuple(scales.shape)}"
        )
    rows = x.reshape(-1, x.shape[-1]).float().contiguous()
    out = torch.empty(rows.shape[0], weight.shape[0], dtype=x.dtype)
    status = lib.woq_int8_matmul(
        rows.data_ptr(), weight.data_ptr(), scales.data_ptr(), out.data_ptr(), int(x.dtype == torch.bfloat16),
        rows.shape[0], weight.shape[0], weight.shape[1],
    )  # fmt: skip
    check_status("woq_int8_matmul", status, f"the shape {tuple(x.shape)} x {tuple(weight.shape)}")
    return out.view(*x.shape[:-1], weight.shape[0])


def argmax(logits: Tensor) -> Tensor:
    """Row-wise argmax of fp32 or bf16 logits [R, V] (first index on ties), without torch's slow CPU reduction.

    Torch reference: ``logits.argmax(dim=-1)``. The kernel returns no status: it takes every shape."""
    lib = _kernels()
    rows = logits.contiguous()
    check_tensor("argmax", "logits", rows, FUSED_DTYPES, 2)
    out = torch.empty(rows.shape[0], dtype=torch.int64)
    bf16 = int(rows.dtype == torch.bfloat16)
    lib.argmax_rows(rows.data_ptr(), rows.shape[0], rows.shape[1], out.data_ptr(), bf16)
    return out


def sample(logits: Tensor, params: Sequence, uniforms: list[float]) -> Tensor:
    """One token per row of logits [R, V] (fp32 or bf16) with that row's ``SamplingParams`` (temperature, top_k,
    top_p, min_p) and uniform number, in one C call.

    Torch reference: ``sample_rows`` of qwen3/engine/sampler.py (the same draw for the same uniform numbers)."""
    lib = _kernels()
    rows = logits.contiguous()
    check_tensor("sample", "logits", rows, FUSED_DTYPES, 2)
    count = rows.shape[0]
    if len(params) != count or len(uniforms) != count:
        raise ValueError(
            f"sample: logits {rows.dtype} {tuple(rows.shape)} and settings for {count} rows needed"
        )
    settings = [
        torch.tensor([getattr(p, name) for p in params], dtype=dtype)
        for name, dtype in (("temperature", torch.float32), ("top_k", torch.int32), ("top_p", torch.float32),
                            ("min_p", torch.float32))
    ]  # fmt: skip
    settings.append(torch.tensor(uniforms, dtype=torch.float64))
    out = torch.empty(count, dtype=torch.int64)
    status = lib.sample_rows(
        rows.data_ptr(), count, rows.shape[1], int(rows.dtype == torch.bfloat16),
        *(column.data_ptr() for column in settings), out.data_ptr(),
    )  # fmt: skip
    check_status("sample", status, f"logits {tuple(rows.shape)}")
    return out


def _pointer(t: Tensor | None) -> int | None:
    return None if t is None else t.data_ptr()


def add_rms_norm(h: Tensor, delta: Tensor | None, weight: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """h [rows, dim] (+ delta) -> (h + delta, RMSNorm(h + delta) * weight), rounded like the torch ops.

    Torch reference: ``h = h + delta`` then ``RMSNorm.forward`` of qwen3/model/layers.py (fp32 statistics, cast
    back to h's dtype, times the weight). The kernel refuses a hidden size above its MAX_HIDDEN (8192)."""
    lib = _kernels()
    check_tensor("add_rms_norm", "h", h, FUSED_DTYPES, 2)
    check_tensor("add_rms_norm", "weight", weight, FUSED_DTYPES, 1)
    if delta is not None:
        check_tensor("add_rms_norm", "delta", delta, (h.dtype,), 2)
    if weight.shape[0] != h.shape[1] or (delta is not None and delta.shape != h.shape):
        raise ValueError(
            f"add_rms_norm: h {tuple(h.shape)}, delta {None if delta is None else tuple(delta.shape)} and weight "
            f"{tuple(weight.shape)} do not fit"
        )
    h_out, y = torch.empty_like(h), torch.empty_like(h)
    status = lib.add_rms_norm(
        h.data_ptr(), _pointer(delta), weight.data_ptr(), h_out.data_ptr(), y.data_ptr(), h.shape[0], h.shape[1],
        eps, int(h.dtype == torch.bfloat16),
    )  # fmt: skip
    check_status("add_rms_norm", status, f"hidden size {h.shape[1]}")
    return h_out, y


def silu_mul(gate_up: Tensor) -> Tensor:
    """[rows, 2 * inter] (gate | up) -> silu(gate) * up, in gate_up's dtype.

    Torch reference: ``F.silu(gate) * up`` with ``gate, up = gate_up.chunk(2, dim=-1)`` (``MLP.forward`` of
    qwen3/model/layers.py on the fused projection). The kernel refuses inter above 4 * MAX_HIDDEN (32768)."""
    lib = _kernels()
    check_tensor("silu_mul", "gate_up", gate_up, FUSED_DTYPES, 2)
    if gate_up.shape[1] % 2:
        raise ValueError(f"silu_mul: gate_up {tuple(gate_up.shape)} must have an even number of columns")
    inter = gate_up.shape[1] // 2
    out = torch.empty(gate_up.shape[0], inter, dtype=gate_up.dtype)
    status = lib.silu_mul(
        gate_up.data_ptr(), out.data_ptr(), gate_up.shape[0], inter, int(gate_up.dtype == torch.bfloat16)
    )
    check_status("silu_mul", status, f"intermediate size {inter}")
    return out


def decode_layer_attention(
    qkv: Tensor,
    q_norm: Tensor,
    k_norm: Tensor,
    cos: Tensor,
    sin: Tensor,
    keys: Tensor,
    values: Tensor,
    positions: Tensor,
    heads: int,
    max_length: int,
    eps: float,
) -> Tensor | None:
    """See ``SlotKVCache.decode_layer``. cos, sin: tables [P, D] read at each row's position (P > every position);
    keys/values the layer's cache; positions [B] int64 (< max_length). None when the kernel does not take the
    shape (status -1: head_dim above 512 or odd, too large a GQA group): the caller then runs the torch path.

    Torch reference: q_norm / k_norm (``RMSNorm``), ``apply_rotary`` of qwen3/model/rope.py, the cache write and
    the grouped SDPA of ``SlotKVCache._attend_decode`` (qwen3/engine/kv_cache.py)."""
    lib = _kernels()
    check_tensor("decode_layer_attention", "qkv", qkv, FUSED_DTYPES, 2)
    check_tensor("decode_layer_attention", "keys", keys, (qkv.dtype,), 4, dense_dims=2)
    check_tensor("decode_layer_attention", "values", values, (qkv.dtype,), 4, dense_dims=2)
    if values.stride() != keys.stride():
        raise ValueError(
            f"decode_layer_attention: keys and values strides differ: {keys.stride()}, {values.stride()}"
        )
    check_tensor("decode_layer_attention", "positions", positions, (torch.int64,), 1)
    for name, table in (("cos", cos), ("sin", sin), ("q_norm", q_norm), ("k_norm", k_norm)):
        check_tensor("decode_layer_attention", name, table, FUSED_DTYPES, table.dim())
    batch = qkv.shape[0]
    kv_heads, dim = keys.shape[1], keys.shape[3]
    out = torch.empty(batch, heads * dim, dtype=qkv.dtype)
    status = lib.decode_layer_attention(
        qkv.data_ptr(), q_norm.data_ptr(), k_norm.data_ptr(), cos.data_ptr(), sin.data_ptr(), keys.data_ptr(),
        values.data_ptr(), positions.data_ptr(), out.data_ptr(), batch, heads, kv_heads, dim,
        eps, keys.stride(0), keys.stride(1), max_length, int(qkv.dtype == torch.bfloat16),
    )  # fmt: skip
    if status == STATUS_REFUSED:
        return None
    check_status("decode_layer_attention", status, f"qkv {tuple(qkv.shape)} with cache {tuple(keys.shape)}")
    return out


# -- the whole decode step of a dense model ------------------------------------------------------------------------
WEIGHT_KINDS = {torch.float32: 0, torch.bfloat16: 1, torch.int8: 2}


class _Linear(ctypes.Structure):
    _fields_ = [
        ("weight", ctypes.c_void_p),
        ("scale", ctypes.c_void_p),
        ("kind", ctypes.c_int),
        ("n", ctypes.c_int),
        ("k", ctypes.c_int),
        ("packed", ctypes.c_void_p),
    ]


class _Layer(ctypes.Structure):
    _fields_ = [
        ("qkv", _Linear),
        ("o", _Linear),
        ("gate_up", _Linear),
        ("down", _Linear),
        ("input_norm", ctypes.c_void_p),
        ("post_norm", ctypes.c_void_p),
        ("q_norm", ctypes.c_void_p),
        ("k_norm", ctypes.c_void_p),
        ("keys", ctypes.c_void_p),
        ("values", ctypes.c_void_p),
    ]


def linear_spec(weight: Tensor, scales: Tensor | None = None) -> _Linear:
    """A weight [n, k] (fp32, bf16, or int8 with per-row fp32 scales) as the kernel's Linear."""
    assert weight.is_contiguous() and weight.dtype in WEIGHT_KINDS
    return _Linear(
        weight.data_ptr(),
        _pointer(scales),
        WEIGHT_KINDS[weight.dtype],
        weight.shape[0],
        weight.shape[1],
        None,
    )


# -- the bf16 GEMM of many-row decode steps -------------------------------------------------------------------------
def gemm_available() -> bool:
    """Whether the library has the AVX512-BF16 GEMM (``gemm_rows`` of cpu_kernels.c) on this CPU."""
    lib = library()
    return lib is not None and bool(lib.gemm_available())


def can_pack(weight: Tensor) -> bool:
    return (
        weight.dtype == torch.bfloat16
        and weight.dim() == 2
        and weight.shape[0] % 16 == 0
        and weight.shape[1] % 2 == 0
    )


def pack_pairs(weight: Tensor) -> Tensor:
    """A bf16 weight [n, k] (n a multiple of 16, k even) in the GEMM's layout: [n / 16, k / 2, 16, 2], flattened.

    Torch reference: ``weight.view(n // 16, 16, k // 2, 2).transpose(1, 2).flatten()``."""
    lib = _kernels()
    if not can_pack(weight):
        raise ValueError(
            f"pack_pairs: needs a bf16 [16 i, 2 j] weight, got {weight.dtype} {tuple(weight.shape)}"
        )
    source = weight.detach().contiguous()
    packed = torch.empty(source.numel(), dtype=torch.bfloat16)
    status = lib.pack_bf16_pairs(source.data_ptr(), packed.data_ptr(), *source.shape)
    check_status("pack_pairs", status, f"weight {tuple(source.shape)}")
    return packed


GEMM_STORES = {"float32": 0, "rounded": 1, "bfloat16": 2}


def gemm_bf16(x: Tensor, packed: Tensor, out_features: int, store: str = "rounded") -> Tensor:
    """x bf16 [M, K] @ W.T with W packed by ``pack_pairs``: [M, out_features] as ``store`` says: "float32" (the fp32
    sums), "rounded" (fp32 holding their bf16 roundings, what the decode step keeps between ops) or "bfloat16".

    Torch reference: ``F.linear(x.float(), W.float())`` (fp32 sums in k order), rounded as ``store`` says."""
    lib = _kernels()
    if not gemm_available():
        raise RuntimeError("gemm_bf16: this CPU has no AVX512-BF16 (see gemm_available)")
    if store not in GEMM_STORES:
        raise ValueError(f"gemm_bf16: store must be one of {', '.join(GEMM_STORES)}, got {store!r}")
    rows = x.contiguous()
    check_tensor("gemm_bf16", "x", rows, (torch.bfloat16,), 2)
    check_tensor("gemm_bf16", "packed", packed, (torch.bfloat16,), 1)
    if rows.dtype != torch.bfloat16 or rows.dim() != 2 or packed.numel() != out_features * rows.shape[1]:
        raise ValueError(f"gemm_bf16: x {rows.dtype} {tuple(rows.shape)} does not fit the packed weight")
    out = torch.empty(
        rows.shape[0], out_features, dtype=torch.bfloat16 if store == "bfloat16" else torch.float32
    )
    status = lib.gemm_bf16(
        rows.data_ptr(), packed.data_ptr(), out.data_ptr(), rows.shape[0], out_features, rows.shape[1],
        GEMM_STORES[store],
    )  # fmt: skip
    check_status("gemm_bf16", status, f"the shape {tuple(rows.shape)} x [{out_features}, {rows.shape[1]}]")
    return out


@dataclass
class DenseLayerWeights:
    qkv: _Linear
    o: _Linear
    gate_up: _Linear
    down: _Linear
    input_norm: Tensor
    post_norm: Tensor
    q_norm: Tensor
    k_norm: Tensor


class DecodeStep:
    """``decode_step`` of cpu_kernels.c bound to a model's weights and a cache: embeddings [B, H] in, logits
    [B, V] out, one C call for all layers. The weights stay where they are (the pointers are taken once; the
    tensors must outlive this object, which the fast-weights view and the cache guarantee).

    Which batches it takes:
    - one row: its matrix-vector products stream the weights at memory speed. From two rows on, the row-by-row
      products lose to oneDNN's blocked GEMM (the layer-by-layer path; docs/benchmarks.md has the step times); the
      kernel itself takes up to 8 rows that way.
    - ``GEMM_MIN_ROWS`` rows and more, once ``use_packed`` gave it bf16 weights in the pair-packed layout: every
      product is the AVX512-BF16 GEMM of cpu_kernels.c and the whole step is still one call (no per-op dispatch,
      no oneDNN call overhead)."""

    MAX_ROWS = 1
    GEMM_MIN_ROWS = 2

    def __init__(self, layers: list[DenseLayerWeights], final_norm: Tensor, lm_head: _Linear, cache, config):
        self.table = (_Layer * len(layers))()
        for entry, layer, keys, values in zip(self.table, layers, cache.keys, cache.values):
            entry.qkv, entry.o, entry.gate_up, entry.down = layer.qkv, layer.o, layer.gate_up, layer.down
            for name in ("input_norm", "post_norm", "q_norm", "k_norm"):
                setattr(entry, name, getattr(layer, name).data_ptr())
            entry.keys, entry.values = keys.data_ptr(), values.data_ptr()
        self.final_norm = final_norm
        self.lm_head = lm_head
        self.cache = cache
        self.shape = (
            config.hidden_size,
            config.num_attention_heads,
            config.num_key_value_heads,
            config.head_dim,
            config.intermediate_size,
        )
        self.eps = config.rms_norm_eps
        self.bf16 = int(final_norm.dtype == torch.bfloat16)
        self.packed: tuple | None = None

    def accepts(self, rows: int) -> bool:
        return rows <= self.MAX_ROWS or (self.packed is not None and rows >= self.GEMM_MIN_ROWS)

    def use_packed(self, layers: list[tuple[Tensor, Tensor, Tensor, Tensor]], lm_head: Tensor) -> None:
        """Give the GEMM path its weights: per layer (qkv, o, gate_up, down) from ``pack_pairs``, and the LM head's.
        The tensors are kept here for as long as the table points at them."""
        for entry, packs in zip(self.table, layers, strict=True):
            for name, packed in zip(("qkv", "o", "gate_up", "down"), packs, strict=True):
                getattr(entry, name).packed = packed.data_ptr()
        self.lm_head.packed = lm_head.data_ptr()
        self.packed = (layers, lm_head)

    def __call__(
        self, embeddings: Tensor, cos: Tensor, sin: Tensor, positions: Tensor, span: int
    ) -> Tensor | None:
        """cos, sin: rotary tables [P, D] read at ``positions`` (see ``decode_layer_attention``). None when the
        kernel does not take the batch (status -1): the caller runs the layer-by-layer path.

        Torch reference: ``FusedForward``'s layer-by-layer decode (qwen3/engine/fast_weights.py), itself tested
        against ``Qwen3ForCausalLM.forward``."""
        lib = _kernels()
        check_tensor("decode_step", "embeddings", embeddings, (self.final_norm.dtype,), 2)
        check_tensor("decode_step", "positions", positions, (torch.int64,), 1)
        batch = embeddings.shape[0]
        logits = torch.empty(batch, self.lm_head.n, dtype=self.final_norm.dtype)
        keys = self.cache.keys[0]
        status = lib.decode_step(
            self.table, len(self.table), self.final_norm.data_ptr(), ctypes.byref(self.lm_head),
            embeddings.data_ptr(), cos.data_ptr(), sin.data_ptr(), positions.data_ptr(), logits.data_ptr(), batch,
            *self.shape, span, keys.stride(0), keys.stride(1), self.eps, self.bf16,
        )  # fmt: skip
        if status == STATUS_REFUSED:
            return None
        check_status("decode_step", status, f"a batch of {batch}")
        return logits


# -- causal attention of a prefill segment --------------------------------------------------------------------------
def prefill_attention_fits(q: Tensor, keys: Tensor) -> bool:
    """Whether ``prefill_attention`` takes these queries and this cache: bf16 both, head_dim a multiple of 32 (at
    most 512), at most 64 query heads per KV head, the AVX512-BF16 kernels available."""
    heads, kv_heads, dim = q.shape[1], keys.shape[1], q.shape[-1]
    return (
        q.dtype == keys.dtype == torch.bfloat16
        and q.device.type == "cpu"
        and dim % 32 == 0
        and dim <= 512
        and heads % kv_heads == 0
        and heads // kv_heads <= 64
        and gemm_available()
    )


def prefill_attention(
    q: Tensor, keys: Tensor, values: Tensor, slot: int, start: int, out: Tensor | None = None
) -> Tensor:
    """Causal grouped-query attention of one prefill segment (``prefill_attention`` of cpu_kernels.c).

    q: bf16 [1, Hq, T, D], the queries of positions start..start+T-1 (any strides; copied unless the head dim is
    contiguous).
    keys, values: a layer's bf16 cache [slots, Hkv, max_len, D]; slot ``slot`` holds positions 0..start+T-1.
    Query i attends to cached positions 0..start+i, scale D ** -0.5. Returns [1, Hq, T, D] bf16: written into
    ``out`` when given (any strides, head dim contiguous: e.g. a slice of a [1, N, Hq, D] buffer seen transposed),
    else a new tensor.

    Torch reference: ``attend`` of qwen3/model/attention.py (SDPA) over the slot's positions 0..start+T-1 with
    the causal mask of an offset segment."""
    lib = _kernels()
    if q.dim() != 4 or q.shape[0] != 1 or keys.dim() != 4:
        raise ValueError(
            f"prefill_attention: q {tuple(q.shape)} is not [1, Hq, T, D] or the cache is not 4-d"
        )
    _, heads, length, dim = q.shape
    slots, kv_heads, max_len, cache_dim = keys.shape
    if not prefill_attention_fits(q, keys) or cache_dim != dim or values.shape != keys.shape:
        raise ValueError(
            f"prefill_attention: q {q.dtype} {tuple(q.shape)} with cache {keys.dtype} {tuple(keys.shape)}"
            " is not a shape or dtype the kernel takes"
        )
    if not 0 <= slot < slots or start < 0 or start + length > max_len:
        raise ValueError(
            f"prefill_attention: positions {start}..{start + length - 1} of slot {slot} are outside the cache"
            f" [{slots} slots, {max_len} positions]"
        )
    if keys.stride()[2:] != (dim, 1) or values.stride() != keys.stride():
        raise ValueError(
            f"prefill_attention: the cache's positions and head dims must be contiguous, strides {keys.stride()}"
        )
    if q.stride(3) != 1:
        q = q.contiguous()
    if out is None:
        out = torch.empty(1, heads, length, dim, dtype=torch.bfloat16)
    elif out.shape != q.shape or out.dtype != torch.bfloat16 or out.stride(3) != 1:
        raise ValueError(
            f"prefill_attention: out {out.dtype} {tuple(out.shape)} does not fit q {tuple(q.shape)}"
        )
    status = lib.prefill_attention(
        q.data_ptr(), q.stride(1), q.stride(2), keys[slot].data_ptr(), values[slot].data_ptr(), keys.stride(1),
        out.data_ptr(), out.stride(1), out.stride(2), heads, kv_heads, length, dim, start, dim**-0.5,
    )  # fmt: skip
    check_status("prefill_attention", status, f"q {tuple(q.shape)}, cache {tuple(keys.shape)}")
    return out
