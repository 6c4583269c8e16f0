"""Explicit mapping between our parameters and Hugging Face checkpoint tensors.

Dense parameters have the checkpoint's names. MoE experts are stacked here (``mlp.experts.gate_proj`` and
``up_proj`` [E, I, H], ``down_proj`` [E, H, I]) and appear in checkpoints in one of two layouts:

- "per_expert" (the released Qwen3 checkpoints, and what transformers 5.24 ``save_pretrained`` writes):
  ``mlp.experts.{e}.gate_proj.weight`` [I, H], ``...up_proj.weight`` [I, H], ``...down_proj.weight`` [H, I];
- "stacked" (transformers v5's in-memory layout): ``mlp.experts.gate_up_proj`` [E, 2I, H] (gate rows first, then
  up) and ``mlp.experts.down_proj`` [E, H, I].

Each checkpoint tensor is an ``HFTensor``: its name, shape, and the ``Part``s of our parameters it is made of.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import Tensor

EXPERT_LAYOUTS = ("per_expert", "stacked")
_EXPERT_PARAM = re.compile(r"^(?P<prefix>.*\.mlp\.experts)\.(?P<proj>gate|up|down)_proj$")

Index = tuple  # a tuple of ints/slices indexing a tensor


@dataclass(frozen=True)
class Part:
    param: str  # our parameter name
    param_index: Index  # which part of the parameter: () whole, (e,) expert e
    # Which part of the checkpoint tensor: () whole, or slices that keep the first dimension whole.
    tensor_index: Index


@dataclass(frozen=True)
class HFTensor:
    name: str
    shape: tuple[int, ...]
    parts: tuple[Part, ...]


def hf_tensors(param_shapes: dict[str, tuple[int, ...]], layout: str = "per_expert") -> list[HFTensor]:
    """The checkpoint tensors for our parameters (name -> shape, tied weights listed once), in parameter order."""
    if layout not in EXPERT_LAYOUTS:
        raise ValueError(f"expert_layout {layout!r} is not one of {EXPERT_LAYOUTS}")
    out = []
    for name, shape in param_shapes.items():
        match = _EXPERT_PARAM.match(name)
        if match is None:
            out.append(HFTensor(name, tuple(shape), (Part(name, (), ()),)))
        elif layout == "per_expert":
            prefix, proj = match["prefix"], match["proj"]
            out.extend(
                HFTensor(f"{prefix}.{e}.{proj}_proj.weight", tuple(shape[1:]), (Part(name, (e,), ()),))
                for e in range(shape[0])
            )
        elif match["proj"] == "down":
            out.append(HFTensor(name, tuple(shape), (Part(name, (), ()),)))
        elif match["proj"] == "gate":  # gate_up_proj = cat(gate, up) along the rows; emitted once, with gate
            experts, rows, cols = shape
            both = (slice(None), slice(0, rows)), (slice(None), slice(rows, 2 * rows))
            up = f"{match['prefix']}.up_proj"
            out.append(
                HFTensor(
                    f"{match['prefix']}.gate_up_proj",
                    (experts, 2 * rows, cols),
                    (Part(name, (), both[0]), Part(up, (), both[1])),
                )
            )
    return out


def export_tensor(spec: HFTensor, params: dict[str, Tensor]) -> Tensor:
    """Build one checkpoint tensor from our parameters (a fresh contiguous tensor)."""
    if len(spec.parts) == 1 and not spec.parts[0].tensor_index:
        part = spec.parts[0]
        return params[part.param][part.param_index].detach().contiguous().clone()
    first = params[spec.parts[0].param]
    out = torch.empty(spec.shape, dtype=first.dtype, device=first.device)
    for part in spec.parts:
        out[part.tensor_index] = params[part.param][part.param_index].detach()
    return out


def parts_by_tensor(specs: Iterable[HFTensor]) -> dict[str, HFTensor]:
    return {spec.name: spec for spec in specs}
