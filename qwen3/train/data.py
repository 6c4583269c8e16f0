"""Pre-training data: corpora of documents, a seeded resumable document order, and packing into rows.

- A corpus is text files (``.txt``: a document per non-blank line, or per file), JSON lines (``.jsonl``: an object
  per line), JSON arrays (``.json``) or a Python sequence/iterable. Documents are read lazily by byte offset, so
  the index of a large corpus costs 16 bytes per document.
- ``DocumentStream`` visits documents epoch after epoch, in a permutation drawn from ``(seed, epoch)`` when
  shuffling, converting each (e.g. tokenising). A malformed document raises ``DataError`` naming ``file:line``, or
  with ``on_error="skip"`` is skipped and counted. Its position is ``{epoch, cursor, skipped}``.
- ``PackedDocuments`` appends EOS to each document's tokens and cuts the concatenation into rows of ``seq_len``
  inputs and their next-token targets (consecutive rows share one boundary token, so no token is lost). With
  ``document_mask`` every token carries its document's id (the model then attends within documents only and
  restarts positions), and the EOS -> next document's first token target is dropped: it cannot be predicted
  without attending across. Its saved position is the stream position of the first document still in the
  buffer plus an offset; resuming re-reads and re-tokenises from there, so the state stays a few numbers.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from qwen3.train.batch import IGNORE, Row

SUFFIXES = (".txt", ".jsonl", ".json")


class DataError(ValueError):
    """A document cannot be used; the message starts with its location (``file:line`` or ``item N``)."""


@dataclass
class Document:
    record: Any  # str (text line/file), dict (JSON object), list, ...
    location: str


# ----------------------------------------------------------------------------------------------------- corpora
class FileCorpus:
    """Documents of files; ``text_unit`` "line" (default) or "file" for ``.txt`` files."""

    def __init__(self, paths: Sequence[str | Path], text_unit: str = "line"):
        self.files = expand_paths(paths)
        self.text_unit = text_unit
        self._parts = [
            self._index(path) for path in self.files
        ]  # per file: (offsets, line numbers) or records
        self._ends = np.cumsum([len(part[1]) for part in self._parts])
        self._handles: dict[int, Any] = {}

    def __len__(self) -> int:
        return int(self._ends[-1]) if len(self._ends) else 0

    def fingerprint(self) -> dict[str, Any]:
        return {"documents": len(self), "files": {str(p): p.stat().st_size for p in self.files}}

    def _index(self, path: Path) -> tuple[Any, Any]:
        if path.suffix == ".json":
            records = _load_json_array(path)
            return records, [f"{path}[{i}]" for i in range(len(records))]
        if path.suffix == ".txt" and self.text_unit == "file":
            return np.zeros(1, np.int64), np.zeros(1, np.int64)
        offsets, lines, position = [], [], 0
        with open(path, "rb") as handle:
            for number, line in enumerate(handle, start=1):
                if line.strip():
                    offsets.append(position)
                    lines.append(number)
                position += len(line)
        return np.array(offsets, np.int64), np.array(lines, np.int64)

    def __getitem__(self, index: int) -> Document:
        file_index = int(np.searchsorted(self._ends, index, side="right"))
        local = index - (int(self._ends[file_index - 1]) if file_index else 0)
        path, (offsets, lines) = self.files[file_index], self._parts[file_index]
        if path.suffix == ".json":
            return Document(offsets[local], lines[local])
        if path.suffix == ".txt" and self.text_unit == "file":
            return Document(_decode(path.read_bytes(), str(path)), str(path))
        handle = self._handles.get(file_index)
        if handle is None:
            handle = self._handles[file_index] = open(path, "rb")  # noqa: SIM115 (kept open for random reads)
        handle.seek(int(offsets[local]))
        location = f"{path}:{int(lines[local])}"
        text = _decode(handle.readline(), location).rstrip("\r\n")
        if path.suffix == ".txt":
            return Document(text, location)
        try:
            return Document(json.loads(text), location)
        except json.JSONDecodeError as err:
            raise DataError(f"{location}: invalid JSON ({err.msg} at column {err.colno})") from None

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Files as given, directories as their ``.txt``/``.jsonl``/``.json`` files (recursively, sorted)."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix in SUFFIXES)
            if not found:
                raise DataError(f"{path}: directory holds no {', '.join(SUFFIXES)} files")
            files.extend(found)
        elif path.is_file():
            if path.suffix not in SUFFIXES:
                raise DataError(f"{path}: unsupported file type (expected {', '.join(SUFFIXES)})")
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    if not files:
        raise DataError("no data files given")
    return files


def _decode(raw: bytes, location: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise DataError(f"{location}: not valid UTF-8 (byte {err.start})") from None


def _load_json_array(path: Path) -> list[Any]:
    try:
        records = json.loads(_decode(path.read_bytes(), str(path)))
    except json.JSONDecodeError as err:
        raise DataError(f"{path}:{err.lineno}: invalid JSON ({err.msg})") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: a .json data file must hold an array of documents")
    return records


class SequenceCorpus:
    """An in-memory list of documents (strings, dicts, token-id lists)."""

    def __init__(self, items: Sequence[Any]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> Document:
        return Document(self.items[index], f"item {index}")

    def fingerprint(self) -> dict[str, Any]:
        return {"documents": len(self.items)}


# ------------------------------------------------------------------------------------------ document order
class DocumentStream:
    """Converted documents in a deterministic order, endlessly (epoch after epoch); resumable.

    ``source``: a ``FileCorpus``/``SequenceCorpus`` (any order; shuffled per epoch) or a plain iterable (read in
    order; ``iter(source)`` is called again for each epoch and, on resume, replayed up to the saved cursor).
    """

    def __init__(
        self,
        source: FileCorpus | SequenceCorpus | Iterable[Any],
        convert: Callable[[Document], Any],
        shuffle: bool = True,
        seed: int = 0,
        on_error: str = "raise",
    ):
        self.indexed = isinstance(source, (FileCorpus, SequenceCorpus))
        if not self.indexed and shuffle:
            raise DataError(
                "shuffle needs an indexable corpus (a file list or a sequence), not a one-pass iterable"
            )
        if self.indexed and len(source) == 0:
            raise DataError("the corpus holds no documents")
        self.source, self.convert, self.shuffle, self.seed, self.on_error = (
            source,
            convert,
            shuffle,
            seed,
            on_error,
        )
        self.epoch, self.cursor, self.skipped = 0, 0, 0
        self._order: np.ndarray | None = None
        self._iterator: Iterator[Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        state = {"epoch": self.epoch, "cursor": self.cursor, "skipped": self.skipped}
        if self.indexed:
            state["documents"] = len(self.source)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if self.indexed and state.get("documents", len(self.source)) != len(self.source):
            raise DataError(
                f"the corpus now holds {len(self.source)} documents but the saved position was taken with "
                f"{state['documents']}: the data changed since the checkpoint"
            )
        self.epoch, self.cursor, self.skipped = (
            int(state["epoch"]),
            int(state["cursor"]),
            int(state["skipped"]),
        )
        self._order = None
        if not self.indexed:
            self._iterator = iter(self.source)
            for _ in range(self.cursor):
                if next(self._iterator, _END) is _END:
                    raise DataError(f"the iterable ended before the saved position {self.cursor}")

    def next(self) -> Any:
        """The next converted document (skipping malformed ones when asked)."""
        skipped_in_a_row = 0
        while True:
            try:
                return self.convert(self._next_document())
            except DataError:
                if self.on_error != "skip":
                    raise
                self.skipped += 1
                skipped_in_a_row += 1
                if self.indexed and skipped_in_a_row > len(self.source):
                    raise DataError(f"all {len(self.source)} documents are malformed (skipped)") from None

    def _next_document(self) -> Document:
        if self.indexed:
            if self.cursor >= len(self.source):
                self.epoch, self.cursor, self._order = self.epoch + 1, 0, None
            if self._order is None:
                count = len(self.source)
                rng = np.random.default_rng([self.seed, self.epoch])
                self._order = rng.permutation(count) if self.shuffle else np.arange(count)
            index = int(self._order[self.cursor])
            self.cursor += 1
            return self.source[index]
        if self._iterator is None:
            self._iterator = iter(self.source)
        item = next(self._iterator, _END)
        if item is _END:
            if self.cursor == 0:
                raise DataError(
                    "the iterable yielded no documents (a one-shot iterator cannot start a new epoch)"
                )
            self.epoch, self.cursor, self._iterator = self.epoch + 1, 0, None
            return self._next_document()
        self.cursor += 1
        return Document(item, f"epoch {self.epoch} item {self.cursor - 1}")


_END = object()


# -------------------------------------------------------------------------------------------- tokenising
def document_tokens(
    document: Document, encode: Callable[[str], list[int]] | None, text_field: str, vocab_size: int
) -> list[int]:
    """A pre-training document's token ids: text is encoded, ``input_ids`` / int lists are taken as they are."""
    record = document.record
    if isinstance(record, dict):
        if "input_ids" in record:
            record = record["input_ids"]
        elif text_field in record:
            record = record[text_field]
        else:
            raise DataError(
                f"{document.location}: no {text_field!r} field (keys: {', '.join(map(str, record))})"
            )
    if isinstance(record, str):
        if encode is None:
            raise DataError(f"{document.location}: a text document, but no tokenizer is configured")
        ids = encode(record)
    elif isinstance(record, (list, tuple)) and all(
        isinstance(t, int) and not isinstance(t, bool) for t in record
    ):
        ids = list(record)
    else:
        raise DataError(
            f"{document.location}: expected text or a list of token ids, got {type(record).__name__}"
        )
    bad = next((t for t in ids if not 0 <= t < vocab_size), None)
    if bad is not None:
        raise DataError(
            f"{document.location}: token id {bad} is outside the model's vocabulary [0, {vocab_size})"
        )
    return ids


# ---------------------------------------------------------------------------------------------------- packing
class PackedDocuments:
    """Rows of ``seq_len`` tokens cut from the EOS-separated concatenation of a stream's token documents."""

    def __init__(self, stream: DocumentStream, seq_len: int, eos_id: int, document_mask: bool = True):
        self.stream, self.seq_len, self.eos_id, self.document_mask = stream, seq_len, eos_id, document_mask
        self._segments: list[tuple[dict[str, Any], list[int]]] = []  # (stream state before it, tokens + EOS)
        self._offset = 0  # tokens of the first segment already consumed

    def state_dict(self) -> dict[str, Any]:
        head = self._segments[0][0] if self._segments else self.stream.state_dict()
        return {"stream": dict(head), "offset": self._offset}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self._segments, self._offset = [], 0
        if state["offset"]:
            self._read_segment()
            self._offset = int(state["offset"])

    def _read_segment(self) -> None:
        before = self.stream.state_dict()
        self._segments.append((before, [*self.stream.next(), self.eos_id]))

    def next_row(self) -> Row:
        need = self.seq_len + 1
        while sum(len(tokens) for _, tokens in self._segments) - self._offset < need:
            self._read_segment()
        tokens: list[int] = []
        documents: list[int] = []
        start = self._offset
        for index, (_, segment) in enumerate(self._segments):
            piece = segment[start : start + need - len(tokens)]
            tokens.extend(piece)
            documents.extend([index] * len(piece))
            start = 0
            if len(tokens) == need:
                break
        self._consume(self.seq_len)
        labels = tokens[1:]
        if self.document_mask:
            labels = [IGNORE if documents[i] != documents[i + 1] else label for i, label in enumerate(labels)]
        return Row(tokens[:-1], labels, documents[:-1] if self.document_mask else None)

    def _consume(self, count: int) -> None:
        self._offset += count
        while self._segments and self._offset >= len(self._segments[0][1]):
            self._offset -= len(self._segments[0][1])
            self._segments.pop(0)
