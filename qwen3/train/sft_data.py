"""Supervised fine-tuning data: chat examples -> token ids + assistant-only targets, one per row or packed.

An example is a JSON object with ``messages`` (OpenAI format) and optional ``tools``, or a bare list of messages.
It is rendered and tokenised by ``qwen3.chat.tokenize_conversation``: the ids are exactly those of the chat
template, and only tokens the assistant produced (think block, content, tool calls, ``<|im_end|>``) are targets.
A row's inputs are ``ids[:-1]`` and targets ``ids[1:]`` where the target token is the assistant's (else IGNORE).

Packing (``pack=True``) fills rows of ``seq_len`` with whole examples in stream order (next-fit: an example that
does not fit starts the next row); each example is its own document, so attention and positions stay within it.
Examples longer than ``seq_len`` are truncated (or skipped, ``overlong="skip"``); either way they are counted, and
the first one dropped is logged as a warning (a kind of example too long for ``seq_len`` is otherwise never trained).
The saved position is the stream position before the example waiting for the next row plus the counters as they
were then (that example is read and counted again on resume).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from qwen3.train.batch import IGNORE, Row
from qwen3.train.corpus import DataError, Document
from qwen3.train.data import DocumentStream

log = logging.getLogger(__name__)


@dataclass
class Example:
    input_ids: list[int]  # ids[:-1]
    labels: list[int]  # ids[1:] where the assistant produced them, else IGNORE


def conversation_example(
    document: Document,
    tokenizer: Any,
    messages_field: str = "messages",
    tools_field: str = "tools",
    train_on: str = "final",
) -> Example:
    """A chat record -> ``Example``; malformed conversations raise ``DataError`` naming the record."""
    from qwen3.chat import tokenize_conversation

    record = document.record
    if isinstance(record, dict):
        if messages_field not in record:
            raise DataError(
                f"{document.location}: no {messages_field!r} field (keys: {', '.join(map(str, record))})"
            )
        messages, tools = record[messages_field], record.get(tools_field)
    elif isinstance(record, list):
        messages, tools = record, None
    else:
        raise DataError(
            f"{document.location}: expected an object with {messages_field!r} or a list of messages"
        )
    if not isinstance(messages, list):
        raise DataError(
            f"{document.location}: {messages_field!r} must be a list, got {type(messages).__name__}"
        )
    try:
        tokenized = tokenize_conversation(messages, tokenizer, tools=tools, train_on=train_on)
    except (ValueError, TypeError, KeyError) as err:
        raise DataError(f"{document.location}: {err}") from None
    ids, mask = tokenized.input_ids, tokenized.assistant_mask
    labels = [token if trained else IGNORE for token, trained in zip(ids[1:], mask[1:])]
    return Example(ids[:-1], labels)


class PackedConversations:
    """Rows of whole SFT examples (``pack``) or one example per row; ``next_row()`` and a resumable position."""

    def __init__(
        self,
        stream: DocumentStream,
        seq_len: int,
        pack: bool = True,
        overlong: str = "truncate",
        document_mask: bool = True,
    ):
        self.stream, self.seq_len, self.pack, self.overlong = stream, seq_len, pack, overlong
        self.document_mask = document_mask
        self.truncated = self.dropped = 0
        self._pending: tuple[dict[str, Any], Example] | None = None  # read but not yet placed

    def counters(self) -> dict[str, int]:
        """Running totals logged with each step: examples read so far that were malformed, cut or left out."""
        return {
            **self.stream.counters(),
            "overlong_truncated": self.truncated,
            "overlong_dropped": self.dropped,
        }

    def state_dict(self) -> dict[str, Any]:
        # An example waiting for the next row is read (and counted) again on resume: save the state before it.
        state = self._pending[0] if self._pending else self._state()
        return {**state, "stream": dict(state["stream"])}

    def _state(self) -> dict[str, Any]:
        return {"stream": self.stream.state_dict(), "truncated": self.truncated, "dropped": self.dropped}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.stream.load_state_dict(state["stream"])
        self.truncated, self.dropped = int(state["truncated"]), int(state["dropped"])
        self._pending = None

    def _take(self) -> tuple[dict[str, Any], Example]:
        """The next example that fits ``seq_len`` (truncated or skipping overlong ones), with the state (stream
        position and counters) before it."""
        if self._pending is not None:
            taken, self._pending = self._pending, None
            return taken
        while True:
            before = self._state()
            example = self.stream.next()
            if len(example.input_ids) <= self.seq_len:
                return before, example
            cut = Example(example.input_ids[: self.seq_len], example.labels[: self.seq_len])
            if self.overlong == "truncate" and any(label != IGNORE for label in cut.labels):
                self.truncated += 1
                return before, cut
            self.dropped += 1
            if self.dropped == 1:  # once: the count goes on in the metrics (overlong_dropped)
                log.warning(
                    "an SFT example of %d tokens is dropped: it does not fit data.seq_len %d (overlong=%s; "
                    "'truncate' drops only examples whose targets all lie past the cut). Examples like it are "
                    "never trained on unless data.seq_len is raised; overlong_dropped counts them",
                    len(example.input_ids), self.seq_len, self.overlong,
                )  # fmt: skip

    def next_row(self) -> Row:
        _, example = self._take()
        if not self.pack:
            return Row(example.input_ids, example.labels, None)
        inputs, labels, documents = (
            list(example.input_ids),
            list(example.labels),
            [0] * len(example.input_ids),
        )
        while True:
            before, candidate = self._take()
            if len(inputs) + len(candidate.input_ids) > self.seq_len:
                self._pending = (before, candidate)
                return Row(inputs, labels, documents if self.document_mask else None)
            documents.extend([documents[-1] + 1] * len(candidate.input_ids))
            inputs.extend(candidate.input_ids)
            labels.extend(candidate.labels)
