"""Rows (one training sequence each), micro-batches of rows, and the protocol every row source follows.

A ``Row`` holds the model input, the next-token targets aligned with it (``IGNORE`` where no loss is taken) and,
for packed sequences whose attention must not cross documents, a document id per token. Stages that need more
per-token data put it in ``extras``: per token one number (``[T]``: advantages, reference log-probabilities) or a
fixed-size list (``[T][K]``: a teacher's top-k token ids and log-probabilities). Extras whose values are all
Python ints collate to int64 (ids), others to float32; ``collate`` pads them with 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor

IGNORE = -100  # label of positions without loss (torch's cross_entropy ignore_index)
PAD_DOCUMENT = -1  # document id of padding: padding attends only to padding


@dataclass
class Row:
    input_ids: list[int]
    labels: list[int]  # labels[i] is the target after input_ids[i], or IGNORE
    document_ids: list[int] | None = None
    extras: dict[str, list[Any]] = field(default_factory=dict)  # name -> [T] numbers or [T][K] lists

    def __post_init__(self) -> None:
        if len(self.labels) != len(self.input_ids):
            raise ValueError(f"row has {len(self.input_ids)} input ids but {len(self.labels)} labels")
        if self.document_ids is not None and len(self.document_ids) != len(self.input_ids):
            raise ValueError(
                f"row has {len(self.input_ids)} input ids but {len(self.document_ids)} document ids"
            )
        for name, values in self.extras.items():
            if len(values) != len(self.input_ids):
                raise ValueError(
                    f"row has {len(self.input_ids)} input ids but extra {name!r} has {len(values)} values"
                )

    @property
    def num_targets(self) -> int:
        return sum(label != IGNORE for label in self.labels)


class RowSource(Protocol):
    """An endless, deterministic supply of rows whose position can be saved and restored."""

    def next_row(self) -> Row: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...

    # Optional: ``counters() -> dict[str, int]``, running totals (e.g. skipped documents) logged with each step.


@dataclass
class Batch:
    input_ids: Tensor  # [B, T]
    labels: Tensor  # [B, T]
    document_ids: Tensor | None = None  # [B, T]
    attention_mask: Tensor | None = None  # [B, T], 1 = real token; None when nothing is padding
    extras: dict[str, Tensor] = field(default_factory=dict)

    @property
    def num_tokens(self) -> int:
        return self.input_ids.numel() if self.attention_mask is None else int(self.attention_mask.sum())

    def to(self, device: torch.device | str) -> Batch:
        def move(tensor: Tensor | None) -> Tensor | None:
            return None if tensor is None else tensor.to(device, non_blocking=True)

        extras = {name: tensor.to(device, non_blocking=True) for name, tensor in self.extras.items()}
        return Batch(
            move(self.input_ids),
            move(self.labels),
            move(self.document_ids),
            move(self.attention_mask),
            extras,
        )


def collate(rows: Sequence[Row], pad_id: int) -> Batch:
    """Stack rows, right-padding to the longest with ``pad_id`` / ``IGNORE`` / ``PAD_DOCUMENT`` / 0."""
    length = max(len(row.input_ids) for row in rows)

    def stack(values: list[Sequence[Any]], pad: Any, dtype: torch.dtype) -> Tensor:
        return torch.tensor([list(v) + [pad] * (length - len(v)) for v in values], dtype=dtype)

    padded = any(len(row.input_ids) < length for row in rows)
    with_documents = any(row.document_ids is not None for row in rows)
    if with_documents and any(row.document_ids is None for row in rows):
        raise ValueError("rows of one batch must all have document ids or none")
    lengths = torch.tensor([len(row.input_ids) for row in rows])
    return Batch(
        input_ids=stack([row.input_ids for row in rows], pad_id, torch.long),
        labels=stack([row.labels for row in rows], IGNORE, torch.long),
        document_ids=stack([row.document_ids for row in rows], PAD_DOCUMENT, torch.long)
        if with_documents
        else None,
        attention_mask=(torch.arange(length)[None, :] < lengths[:, None]).long() if padded else None,
        extras={
            name: _stack_extra(name, [row.extras.get(name) for row in rows], length)
            for name in rows[0].extras
        },
    )


def _stack_extra(name: str, values: list[list[Any] | None], length: int) -> Tensor:
    """[B, T] or [B, T, K] of one extra, right-padded with 0; int64 when every value is an int, else float32."""
    if any(v is None for v in values):
        raise ValueError(f"extra {name!r}: rows of one batch must all have it or none")
    widths = {_width(name, token) for row in values for token in row}
    if len(widths) > 1:
        raise ValueError(f"extra {name!r}: mixes per-token sizes {sorted(widths, key=str)}; use one size K")
    width = widths.pop() if widths else None
    flat = (x for row in values for token in row for x in (token if width is not None else (token,)))
    integer = all(isinstance(x, int) and not isinstance(x, bool) for x in flat)
    dtype = torch.long if integer else torch.float32
    shape = (len(values), length) if width is None else (len(values), length, width)
    out = torch.zeros(shape, dtype=dtype)
    for i, row in enumerate(values):
        if row:
            out[i, : len(row)] = torch.tensor(row, dtype=dtype)
    return out


def _width(name: str, token: Any) -> int | None:
    if isinstance(token, (list, tuple)):
        return len(token)
    if isinstance(token, (int, float)):
        return None
    raise ValueError(f"extra {name!r}: expected numbers or lists of numbers per token, got {token!r}")
