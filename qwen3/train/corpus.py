"""Corpora: documents of files or of a Python sequence, read lazily, each with its location for error messages.

``.txt`` files hold a document per non-blank line (or one per file), ``.jsonl`` an object per line, ``.json`` an
array. Files are indexed by byte offset (16 bytes per document: offset and line number) and documents are read on
demand, so a large corpus costs little memory. Unreadable documents raise ``DataError`` naming ``file:line``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SUFFIXES = (".txt", ".jsonl", ".json")


class DataError(ValueError):
    """A document cannot be used; the message starts with its location (``file:line`` or ``item N``)."""


@dataclass
class Document:
    record: Any  # str (text line/file), dict (JSON object), list, ...
    location: str


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
