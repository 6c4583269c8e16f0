"""Reading Hugging Face safetensors checkpoints: the tensor inventory from the file headers (following the index of
a sharded checkpoint), its validation against the model's parameters, and chunked copies into the parameters.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor

from qwen3.model.config import Qwen3Config
from qwen3.model.weights import EXPERT_LAYOUTS, HFTensor, hf_tensors

INDEX_FILE = "model.safetensors.index.json"
SINGLE_FILE = "model.safetensors"
FILE_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}
_MAX_LISTED = 20


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message lists every problem found."""


@dataclass(frozen=True)
class Stored:
    file: Path
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype code, e.g. "BF16"


def open_safetensors(file: Path):
    try:
        return safe_open(str(file), framework="pt")
    except (SafetensorError, OSError) as err:
        raise CheckpointError(
            f"{file}: not a readable safetensors file (truncated or corrupt?): {err}"
        ) from None


def stored_tensors(directory: Path) -> dict[str, Stored]:
    """name -> (file, shape, dtype) from the safetensors headers, following the index for sharded checkpoints."""
    index = directory / INDEX_FILE
    if index.is_file():
        files = index_files(index)
    elif (directory / SINGLE_FILE).is_file():
        files = {directory / SINGLE_FILE: None}
    else:
        raise CheckpointError(f"{directory}: no {SINGLE_FILE} or {INDEX_FILE}{_weights_hint(directory)}")
    stored, problems = {}, []
    for file, wanted in files.items():
        handle = open_safetensors(file)
        names = set(handle.keys())
        for name in sorted(names if wanted is None else wanted & names):
            piece = handle.get_slice(name)
            stored[name] = Stored(file, tuple(piece.get_shape()), piece.get_dtype())
        problems += [
            f"{index.name} maps {name!r} to {file.name}, which does not contain it"
            for name in sorted((wanted or set()) - names)
        ]
        del handle
    _raise_if(problems, directory)
    return stored


def _weights_hint(directory: Path) -> str:
    shards = sorted(p.name for p in directory.glob("*.safetensors"))
    if shards:
        return f"; found {shards} but no {INDEX_FILE}"
    pickles = sorted(p.name for pattern in ("*.bin", "*.pt", "*.pth") for p in directory.glob(pattern))
    if pickles:
        return f"; found {pickles}: pickle checkpoints are never loaded, convert them to safetensors"
    return ""


def index_files(index: Path) -> dict[Path, set[str]]:
    try:
        weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
            raise TypeError("weight_map must map tensor names to file names")
    except (json.JSONDecodeError, KeyError, TypeError) as err:
        raise CheckpointError(f"{index}: malformed index ({type(err).__name__}: {err})") from None
    files: dict[Path, set[str]] = {}
    for name, file_name in weight_map.items():
        files.setdefault(index.parent / file_name, set()).add(name)
    missing = [
        f"{file.name} (holds {len(names)} tensors, e.g. {min(names)!r})"
        for file, names in files.items()
        if not file.is_file()
    ]
    if missing:
        raise CheckpointError(f"{index}: names shard files that do not exist: {', '.join(missing)}")
    return files


def plan_tensors(
    directory: Path, config: Qwen3Config, shapes: dict[str, tuple[int, ...]], stored: dict[str, Stored]
) -> dict[str, HFTensor]:
    """Match stored tensors to our parameters; raise one error listing every unexpected, mis-shaped, duplicate
    or missing tensor."""
    specs = {spec.name: spec for layout in EXPERT_LAYOUTS for spec in hf_tensors(shapes, layout)}
    problems, plan = [], {}
    covered: dict[str, set] = {name: set() for name in shapes}
    for name, item in stored.items():
        spec = specs.get(name)
        if spec is None:
            # A tied checkpoint may still hold lm_head.weight; transformers ignores it too.
            if not (name == "lm_head.weight" and config.tie_word_embeddings):
                problems.append(f"unexpected tensor {name!r} {list(item.shape)} in {item.file.name}")
            continue
        if item.shape != spec.shape:
            problems.append(
                f"shape mismatch for {name!r} in {item.file.name}: checkpoint has {list(item.shape)}, "
                f"model expects {list(spec.shape)}"
            )
        if item.dtype not in FILE_DTYPES:
            problems.append(
                f"tensor {name!r} in {item.file.name} has dtype {item.dtype}, expected one of "
                f"{sorted(FILE_DTYPES)}"
            )
        for part in spec.parts:
            seen = covered[part.param]
            if part.param_index in seen or () in seen or (part.param_index == () and seen):
                problems.append(
                    f"tensor {name!r} loads {part.param} a second time (both expert layouts present?)"
                )
            seen.add(part.param_index)
        plan[name] = spec
    done = {
        name
        for name, parts in covered.items()
        if () in parts or (".experts." in name and len(parts) == shapes[name][0])
    }
    layout = "stacked" if any(name.endswith("experts.gate_up_proj") for name in stored) else "per_expert"
    problems += [
        f"missing tensor {spec.name!r}"
        for spec in hf_tensors(shapes, layout)
        if any(p.param not in done and p.param_index not in covered[p.param] for p in spec.parts)
    ]
    _raise_if(problems, directory)
    return plan


def _raise_if(problems: list[str], directory: Path) -> None:
    if not problems:
        return
    listed = problems[:_MAX_LISTED] + (
        [f"... and {len(problems) - _MAX_LISTED} more"] if len(problems) > _MAX_LISTED else []
    )
    raise CheckpointError(
        f"{directory}: cannot load checkpoint ({len(problems)} problems):\n  - " + "\n  - ".join(listed)
    )


class TensorReader:
    """Copies stored tensors into destination tensors in row chunks, reopening a file after ``budget`` bytes so
    that pages of the memory-mapped file we have already copied are released."""

    def __init__(self, budget: int = 64 << 20):
        self.budget = budget
        self.file: Path | None = None
        self.handle = None
        self.used = 0

    def copy(self, item: Stored, name: str, targets: list[tuple[tuple, Tensor]]) -> None:
        rows = item.shape[0] if item.shape else 1
        row_bytes = max(1, math.prod(item.shape[1:]) * FILE_DTYPES[item.dtype].itemsize)
        step = max(1, self.budget // row_bytes)
        for start in range(0, rows, step):
            try:
                chunk = self._handle(item.file).get_slice(name)[start : start + step]
            except (SafetensorError, OSError) as err:
                raise CheckpointError(f"{item.file}: cannot read tensor {name!r}: {err}") from None
            for tensor_index, dest in targets:
                dest[start : start + step].copy_(
                    chunk[(slice(None), *tensor_index[1:])] if tensor_index else chunk
                )
            self.used += chunk.numel() * chunk.element_size()
            del chunk
            if self.used >= self.budget:
                self.close()

    def _handle(self, file: Path):
        if self.handle is None or file != self.file:
            self.close()
            self.handle, self.file = open_safetensors(file), file
        return self.handle

    def close(self) -> None:
        self.handle, self.file, self.used = None, None, 0
