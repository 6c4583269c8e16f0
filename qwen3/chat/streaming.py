"""Incremental parsing of a streamed Qwen3 completion into reasoning / content / tool-call deltas.

The deltas of :class:`StreamingParser` always add up (per field, tool calls by index; see :func:`accumulate`) to
:func:`qwen3.chat.parse` of the whole text, however the text was cut into chunks. To guarantee that, the parser
holds back only what the rules do not let it decide yet:

- the end of a chunk that could be the start of a tag (``<think>`` at the very start, ``</think>``,
  ``<tool_call>``, ``</tool_call>``);
- newlines at the end of the reasoning or content so far (they are dropped if the field ends there);
- a ``<tool_call>`` block until its ``</tool_call>`` (or the end), then it is emitted as one tool-call delta, or as
  content when its body is not a valid call;
- in thinking mode, everything from a ``<tool_call>`` seen before any ``</think>``: a later ``</think>`` makes all of
  it reasoning, while the end of the stream without one makes it the start of the content. This is the one case
  that can delay output until the end of the stream.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qwen3.chat.messages import check_text
from qwen3.chat.parse import (
    FunctionCall,
    ParsedOutput,
    ToolCall,
    ToolCallIdFactory,
    check_parse_flags,
    decode_tool_call,
    random_tool_call_id,
)
from qwen3.tokenizer.special import THINK_END, THINK_START, TOOL_CALL_END, TOOL_CALL_START


@dataclass
class DeltaToolCall:
    """One tool call in a delta (OpenAI's ``choices[].delta.tool_calls[]``); ours always carry the whole call."""

    index: int
    id: str | None = None
    type: str | None = "function"
    function: FunctionCall | None = None

    def to_dict(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": self.index}
        if self.id is not None:
            entry["id"] = self.id
        if self.type is not None:
            entry["type"] = self.type
        if self.function is not None:
            entry["function"] = {"name": self.function.name, "arguments": self.function.arguments}
        return entry


@dataclass
class DeltaMessage:
    reasoning_content: str | None = None
    content: str | None = None
    tool_calls: list[DeltaToolCall] = field(default_factory=list)


def accumulate(deltas: list[DeltaMessage]) -> ParsedOutput:
    """Join deltas into the full result: text fields concatenated, tool calls assembled by index."""
    reasoning = "".join(d.reasoning_content for d in deltas if d.reasoning_content is not None)
    content = "".join(d.content for d in deltas if d.content is not None)
    calls: dict[int, dict[str, Any]] = {}
    for delta in deltas:
        for part in delta.tool_calls:
            call = calls.setdefault(part.index, {"id": None, "name": None, "arguments": ""})
            call["id"] = call["id"] or part.id
            if part.function is not None:
                call["name"] = call["name"] or part.function.name
                call["arguments"] += part.function.arguments
    tool_calls = [
        ToolCall(call["id"], FunctionCall(call["name"], call["arguments"]))
        for _, call in sorted(calls.items())
    ]
    return ParsedOutput(reasoning or None, content or None, tool_calls)


def _partial_tag_length(text: str, tags: tuple[str, ...]) -> int:
    """Length of the longest end of ``text`` that is a proper prefix of one of ``tags``."""
    if not tags:
        return 0
    longest = min(len(text), max(len(tag) for tag in tags) - 1)
    for size in range(longest, 0, -1):
        if any(tag.startswith(text[-size:]) for tag in tags):
            return size
    return 0


class _NewlineTrimmedField:
    """One text field, emitted with the newlines at both of its ends removed (parse rule 4)."""

    def __init__(self) -> None:
        self._started = False
        self._trailing_newlines = ""

    def push(self, text: str) -> str:
        if not self._started:
            text = text.lstrip("\n")
            if not text:
                return ""
            self._started = True
        text = self._trailing_newlines + text
        kept = text.rstrip("\n")
        self._trailing_newlines = text[len(kept) :]
        return kept

    def release(self) -> str:
        """The newlines held back at the end, for a field that ends where its trailing whitespace is kept."""
        held, self._trailing_newlines = self._trailing_newlines, ""
        return held


class _Deltas:
    """Collects the output of one ``feed``, merging neighbouring pieces of the same field."""

    def __init__(self) -> None:
        self.items: list[DeltaMessage] = []

    def text(self, name: str, text: str) -> None:
        if not text:
            return
        last = self.items[-1] if self.items else None
        if last is not None and not last.tool_calls and getattr(last, name) is not None:
            setattr(last, name, getattr(last, name) + text)
        else:
            self.items.append(DeltaMessage(**{name: text}))

    def tool_call(self, call: DeltaToolCall) -> None:
        self.items.append(DeltaMessage(tool_calls=[call]))


class StreamingParser:
    """Feed text (``feed``) or token ids (``feed_tokens``, needs ``tokenizer``), then call ``finish`` once.

    ``enable_thinking`` is as in :func:`qwen3.chat.parse` (False only under the hard switch);
    ``tool_call_id(index)`` names the calls (random ``call_...`` ids by default); ``tool_calls=False`` leaves
    ``<tool_call>`` blocks as text, as ``parse(..., tool_calls=False)`` does.
    """

    def __init__(
        self,
        enable_thinking: bool = True,
        tokenizer: Any = None,
        tool_call_id: ToolCallIdFactory | None = None,
        tool_calls: bool = True,
    ) -> None:
        check_parse_flags(enable_thinking, tool_calls)
        self._state = "think_start" if enable_thinking else "content"
        self._tool_calls = tool_calls
        # The tags whose start may be held back at the end of a chunk, in the reasoning and in the content.
        self._reasoning_tags = (THINK_END, TOOL_CALL_START) if tool_calls else (THINK_END,)
        self._content_tags = (TOOL_CALL_START,) if tool_calls else ()
        self._buffer = ""
        self._scan_from = 0  # where to resume looking for a closing tag in the held states
        self._reasoning = _NewlineTrimmedField()
        self._content = _NewlineTrimmedField()
        self._make_id = tool_call_id or random_tool_call_id
        self._calls = 0
        self._finished = False
        self._detokenizer = None
        if tokenizer is not None:
            from qwen3.tokenizer.streaming import IncrementalDetokenizer

            # Special tokens (a trailing <|im_end|>) are not text; <think>, <tool_call>, ... are not special.
            self._detokenizer = IncrementalDetokenizer(tokenizer, skip_special_tokens=True)

    def feed(self, text: str) -> list[DeltaMessage]:
        if self._finished:
            raise RuntimeError(
                "StreamingParser.feed after finish(): create a new parser for a new completion"
            )
        check_text("StreamingParser.feed: text", text)
        self._buffer += text
        return self._advance(final=False)

    def feed_tokens(self, token_ids: list[int]) -> list[DeltaMessage]:
        if self._detokenizer is None:
            raise ValueError(
                "StreamingParser.feed_tokens needs the tokenizer: StreamingParser(tokenizer=...)"
            )
        return self.feed(self._detokenizer.push(list(token_ids)))

    def finish(self) -> list[DeltaMessage]:
        if self._finished:
            raise RuntimeError("StreamingParser.finish called twice")
        if self._detokenizer is not None:
            self._buffer += self._detokenizer.flush()
        self._finished = True
        return self._advance(final=True)

    # -- the state machine -------------------------------------------------------------------------------------

    def _advance(self, final: bool) -> list[DeltaMessage]:
        out = _Deltas()
        step = {
            "think_start": self._think_start,
            "reasoning": self._in_reasoning,
            "reasoning_held": self._reasoning_held,
            "content": self._in_content,
            "tool_call": self._in_tool_call,
        }
        while step[self._state](out, final):
            pass
        return out.items

    def _emit(self, out: _Deltas, name: str, text: str) -> None:
        stream = self._reasoning if name == "reasoning_content" else self._content
        out.text(name, stream.push(text))

    def _take(self, size: int) -> str:
        taken, self._buffer = self._buffer[:size], self._buffer[size:]
        return taken

    def _think_start(self, out: _Deltas, final: bool) -> bool:
        if self._buffer.startswith(THINK_START):
            self._take(len(THINK_START))
        elif THINK_START.startswith(self._buffer) and not final:
            return False  # could still become "<think>"
        self._state = "reasoning"
        return True

    def _in_reasoning(self, out: _Deltas, final: bool) -> bool:
        end = self._buffer.find(THINK_END)
        call = self._buffer.find(TOOL_CALL_START) if self._tool_calls else -1
        if end >= 0 and (call < 0 or end < call):
            self._emit(out, "reasoning_content", self._take(end))
            self._take(len(THINK_END))
            self._state = "content"
            return True
        if call >= 0:
            # Reasoning up to here is certain either way; what follows waits for a "</think>" or the end.
            self._emit(out, "reasoning_content", self._take(call))
            self._state, self._scan_from = "reasoning_held", 0
            return True
        hold = 0 if final else _partial_tag_length(self._buffer, self._reasoning_tags)
        self._emit(out, "reasoning_content", self._take(len(self._buffer) - hold))
        return False

    def _reasoning_held(self, out: _Deltas, final: bool) -> bool:
        end = self._buffer.find(THINK_END, self._scan_from)
        if end >= 0:
            self._emit(out, "reasoning_content", self._take(end))
            self._take(len(THINK_END))
            self._state = "content"
            return True
        if final:
            # No "</think>": the reasoning ended at the "<tool_call>" and keeps its trailing newlines (rule 4).
            out.text("reasoning_content", self._reasoning.release())
            self._state = "content"
            return True
        self._scan_from = max(0, len(self._buffer) - len(THINK_END) + 1)
        return False

    def _in_content(self, out: _Deltas, final: bool) -> bool:
        call = self._buffer.find(TOOL_CALL_START) if self._tool_calls else -1
        if call >= 0:
            self._emit(out, "content", self._take(call))
            self._state, self._scan_from = "tool_call", len(TOOL_CALL_START)
            return True
        hold = 0 if final else _partial_tag_length(self._buffer, self._content_tags)
        self._emit(out, "content", self._take(len(self._buffer) - hold))
        return False

    def _in_tool_call(self, out: _Deltas, final: bool) -> bool:
        end = self._buffer.find(TOOL_CALL_END, self._scan_from)
        if end < 0 and not final:
            self._scan_from = max(len(TOOL_CALL_START), len(self._buffer) - len(TOOL_CALL_END) + 1)
            return False
        body_end = len(self._buffer) if end < 0 else end
        block = self._take(len(self._buffer) if end < 0 else end + len(TOOL_CALL_END))
        call = decode_tool_call(block[len(TOOL_CALL_START) : body_end])
        if call is None:
            self._emit(out, "content", block)  # not a valid call: it stays content, verbatim
        else:
            out.tool_call(DeltaToolCall(self._calls, self._make_id(self._calls), "function", call))
            self._calls += 1
        self._state = "content"
        return True
