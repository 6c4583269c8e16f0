"""A teacher's top-k next-token distribution per position, stored compactly for off-policy logit distillation.

One safetensors file (written atomically) holds every sequence back to back:

- ``input_ids`` int32 [P], ``labels`` int32 [P] (the training row: targets after each input, IGNORE elsewhere);
- ``topk_ids`` int32 [P, k] and ``topk_logprobs`` float16 [P, k]: the teacher's k most likely next tokens at
  each position and their log-probabilities (log-softmax over the whole vocabulary at the store's temperature,
  so their exponentials sum to at most 1: the rest of the mass is the tail the store leaves out);
- ``offsets`` int64 [n + 1]: sequence i is positions ``offsets[i]:offsets[i+1]``;

and in the metadata ``k``, ``temperature``, ``vocab_size`` and the ``teacher`` name. k x (4 + 2) bytes per position
instead of 4 x vocab (k = 32 against Qwen3's 151,936 entries: 192 bytes instead of 608 KB).

Only target positions carry a distribution the loss reads; the others are stored as zeros (ids 0, log-prob 0).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from qwen3.train.batch import IGNORE, Row
from qwen3.utils.atomic import atomic_write_bytes

EXTRA_IDS, EXTRA_LOGPROBS = "teacher_topk_ids", "teacher_topk_logprobs"


@dataclass
class TopKSequence:
    input_ids: list[int]
    labels: list[int]
    topk_ids: Tensor  # int32 [T, k]
    topk_logprobs: Tensor  # float16 [T, k]

    def __post_init__(self) -> None:
        length = len(self.input_ids)
        if (
            len(self.labels) != length
            or self.topk_ids.shape[0] != length
            or self.topk_logprobs.shape != self.topk_ids.shape
        ):
            raise ValueError(
                f"top-k sequence: {length} input ids, {len(self.labels)} labels, topk_ids {tuple(self.topk_ids.shape)}, "
                f"topk_logprobs {tuple(self.topk_logprobs.shape)} do not line up"
            )  # fmt: skip

    def to_row(self) -> Row:
        """A training row whose extras carry the teacher's top-k (see ``topk_extras``)."""
        return Row(
            list(self.input_ids), list(self.labels), extras=topk_extras(self.topk_ids, self.topk_logprobs)
        )


def topk_extras(ids: Tensor, logprobs: Tensor) -> dict[str, list[Any]]:
    """Row extras of shape [T][k]: integer ids (collated to int64) and float log-probabilities (float32)."""
    return {EXTRA_IDS: ids.long().tolist(), EXTRA_LOGPROBS: logprobs.float().tolist()}


def unpack_topk(extras: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """(ids long [B, T, k], log-probabilities float [B, T, k]) from a collated batch's extras."""
    if EXTRA_IDS not in extras or EXTRA_LOGPROBS not in extras:
        raise KeyError(f"batch has no teacher top-k extras ({EXTRA_IDS}, {EXTRA_LOGPROBS}); extras: "
                       f"{', '.join(extras) or 'none'}")  # fmt: skip
    return extras[EXTRA_IDS].long(), extras[EXTRA_LOGPROBS].float()


@dataclass
class TopKStore:
    """The sequences of a store file in memory; ``TopKStore.load(path)``, ``store[i]``, ``len(store)``."""

    sequences: list[TopKSequence]
    k: int
    temperature: float
    vocab_size: int
    teacher: str

    def __len__(self) -> int:
        return len(self.sequences)

    def __getitem__(self, index: int) -> TopKSequence:
        return self.sequences[index]

    def save(self, path: str | Path) -> Path:
        from safetensors.torch import save

        path = Path(path)
        if not self.sequences:
            raise ValueError(f"{path}: a top-k store needs at least one sequence")
        for index, sequence in enumerate(self.sequences):
            if sequence.topk_ids.shape[1] != self.k:
                raise ValueError(
                    f"{path}: sequence {index} has k={sequence.topk_ids.shape[1]}, the store k={self.k}"
                )
        lengths = [len(s.input_ids) for s in self.sequences]
        tensors = {
            "input_ids": torch.tensor([t for s in self.sequences for t in s.input_ids], dtype=torch.int32),
            "labels": torch.tensor([t for s in self.sequences for t in s.labels], dtype=torch.int32),
            "topk_ids": torch.cat([s.topk_ids.to(torch.int32) for s in self.sequences]),
            "topk_logprobs": torch.cat([s.topk_logprobs.to(torch.float16) for s in self.sequences]),
            "offsets": torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int64),
        }
        metadata = {"k": str(self.k), "temperature": repr(self.temperature), "vocab_size": str(self.vocab_size),
                    "teacher": self.teacher, "format": "qwen3-topk-v1"}  # fmt: skip
        atomic_write_bytes(path, save(tensors, metadata=metadata))
        return path

    @classmethod
    def load(cls, path: str | Path) -> TopKStore:
        from safetensors import safe_open

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"top-k store {path} does not exist")
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            if metadata.get("format") != "qwen3-topk-v1":
                raise ValueError(f"{path}: not a top-k store (format {metadata.get('format')!r})")
            data = {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118 (safe_open is not iterable)
        offsets = data["offsets"].tolist()
        sequences = [
            TopKSequence(
                data["input_ids"][a:b].tolist(), data["labels"][a:b].tolist(),
                data["topk_ids"][a:b], data["topk_logprobs"][a:b],
            )
            for a, b in zip(offsets[:-1], offsets[1:])
        ]  # fmt: skip
        return cls(sequences, int(metadata["k"]), float(metadata["temperature"]), int(metadata["vocab_size"]),
                   metadata.get("teacher", ""))  # fmt: skip


@torch.inference_mode()
def teacher_topk(
    teacher: torch.nn.Module, rows: Sequence[Row], k: int, temperature: float = 1.0, pad_id: int = 0
) -> list[TopKSequence]:
    """Score ``rows`` with ``teacher`` in one padded batch and keep its top-k at every target position."""
    from qwen3.train.batch import collate

    if not 0 < k <= teacher.config.vocab_size:
        raise ValueError(f"top-k store: k must be in [1, {teacher.config.vocab_size}], got {k}")
    if temperature <= 0:
        raise ValueError(f"top-k store: temperature must be > 0, got {temperature}")
    device = teacher.lm_head.weight.device
    batch = collate(rows, pad_id).to(device)
    logprobs = torch.log_softmax(teacher(batch.input_ids).float() / temperature, dim=-1)
    values, ids = logprobs.topk(k, dim=-1)
    out = []
    for index, row in enumerate(rows):
        length = len(row.input_ids)
        keep = (batch.labels[index, :length] != IGNORE)[:, None]
        out.append(TopKSequence(
            list(row.input_ids), list(row.labels),
            torch.where(keep, ids[index, :length], 0).to(torch.int32).cpu(),
            torch.where(keep, values[index, :length], 0.0).to(torch.float16).cpu(),
        ))  # fmt: skip
    return out


def topk_sequences(
    teacher: torch.nn.Module,
    rows: Iterable[Row],
    k: int,
    temperature: float = 1.0,
    batch_size: int = 8,
    pad_id: int = 0,
) -> list[TopKSequence]:
    """``teacher_topk`` over every row, ``batch_size`` rows a forward (padding a whole list at once would hold
    the logits of every row)."""
    rows = list(rows)
    sequences: list[TopKSequence] = []
    for start in range(0, len(rows), batch_size):
        sequences += teacher_topk(teacher, rows[start : start + batch_size], k, temperature, pad_id)
    return sequences


def build_topk_store(
    teacher: torch.nn.Module,
    rows: Iterable[Row],
    path: str | Path,
    k: int,
    temperature: float = 1.0,
    teacher_name: str = "",
    batch_size: int = 8,
    pad_id: int = 0,
) -> TopKStore:
    """Score every row with the teacher (batches of ``batch_size``) and write the store to ``path``."""
    sequences = topk_sequences(teacher, rows, k, temperature, batch_size, pad_id)
    store = TopKStore(sequences, k, temperature, teacher.config.vocab_size, teacher_name)
    store.save(path)
    return store


def describe(store: TopKStore) -> str:
    positions = sum(len(s.input_ids) for s in store.sequences)
    return json.dumps(
        {"sequences": len(store), "positions": positions, "k": store.k, "teacher": store.teacher}
    )
