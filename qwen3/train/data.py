"""Pre-training data: corpora of documents, a seeded resumable document order, and packing into rows.

- A corpus (``qwen3.train.corpus``) is text files (``.txt``: a document per non-blank line, or per file), JSON
  lines (``.jsonl``: an object per line), JSON arrays (``.json``) or a Python sequence; a plain iterable works too.
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

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import numpy as np

from qwen3.train.batch import IGNORE, Row
from qwen3.train.corpus import DataError, Document, FileCorpus, SequenceCorpus


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

    def counters(self) -> dict[str, int]:
        """Running totals logged with each step (restored on resume)."""
        return {"malformed_skipped": self.skipped}

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

    def counters(self) -> dict[str, int]:
        return self.stream.counters()

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
