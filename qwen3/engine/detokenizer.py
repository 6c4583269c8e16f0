"""Per-sequence output text: incremental detokenisation, stop strings, and the chat parser's deltas.

Text is released to the caller only when it can no longer change: the detokenizer keeps incomplete UTF-8
characters, and while stop strings are set the last ``len(longest stop) - 1`` characters are held back, since they
could be the start of a stop string that the next token completes.

A request whose caller takes only the final output (``stream=False``: ``LLM.generate``/``LLM.chat``) and has no stop
strings needs no text before it finishes, so its tokens are only collected and decoded once at the end (the same
text: the incremental decoder gives the same result however the ids are split).
"""

from __future__ import annotations

from dataclasses import dataclass

from qwen3.chat.parse import ParsedOutput, parse, random_tool_call_id
from qwen3.chat.streaming import DeltaMessage, StreamingParser
from qwen3.tokenizer.streaming import IncrementalDetokenizer


@dataclass(frozen=True)
class ChatOptions:
    """How to parse a chat completion: ``enable_thinking`` is the hard switch only (False when the prompt ends with
    the empty think block), as ``qwen3.chat.parse`` takes it; ``tool_calls=False`` leaves ``<tool_call>`` blocks as
    text (a request that offered no tools)."""

    enable_thinking: bool = True
    tool_calls: bool = True


class OutputText:
    def __init__(
        self,
        tokenizer,
        stop: list[str],
        include_stop: bool,
        skip_special_tokens: bool,
        chat: ChatOptions | None,
        stream: bool = True,
    ):
        self._detokenizer = IncrementalDetokenizer(tokenizer, skip_special_tokens=skip_special_tokens)
        # Token ids not decoded yet: only when nothing needs the text before the end (see the module docstring).
        self._deferred: list[int] | None = None if stream or stop else []
        self._stop = stop
        self._include_stop = include_stop
        self._hold = max((len(s) for s in stop), default=1) - 1
        # Released text in pieces (joined only when the whole text is asked for: no quadratic concatenation),
        # then the decoded text not released yet (at most the held-back tail plus the newest piece).
        self._released: list[str] = []
        self._pending = ""
        self.matched_stop: str | None = None
        self.chat = chat
        self._tool_ids: dict[int, str] = {}
        self._parser = (
            StreamingParser(
                enable_thinking=chat.enable_thinking,
                tool_call_id=self.tool_call_id,
                tool_calls=chat.tool_calls,
            )
            if chat and stream
            else None
        )

    @property
    def text(self) -> str:
        self._decode_deferred()
        return "".join(self._released) + self._pending

    def _decode_deferred(self) -> None:
        if self._deferred:
            self._pending += self._detokenizer.push(self._deferred)
            self._deferred.clear()

    def tool_call_id(self, index: int) -> str:
        """One random id per tool call, the same in the streamed deltas and the final output."""
        return self._tool_ids.setdefault(index, random_tool_call_id(index))

    def push(self, token_ids: list[int]) -> str | None:
        """Add tokens; return the stop string when one now appears in the text (the text is cut there)."""
        if self._deferred is not None:
            self._deferred.extend(token_ids)
            return None
        if self.matched_stop is not None:
            return self.matched_stop
        new = self._detokenizer.push(token_ids)
        if new:
            self._pending += new
            if self._stop:
                self._find_stop()
        return self.matched_stop

    def _find_stop(self) -> None:
        # A stop string that the new text completes starts within the held-back tail, so searching the pending
        # text is enough.
        best: tuple[int, str] | None = None
        for stop in self._stop:
            at = self._pending.find(stop)
            if at >= 0 and (best is None or at < best[0]):
                best = (at, stop)
        if best is not None:
            at, stop = best
            self._pending = self._pending[: at + (len(stop) if self._include_stop else 0)]
            self.matched_stop = stop

    def release(self, final: bool) -> tuple[str, list[DeltaMessage]]:
        """The text that became final since the last call, and the chat parser's deltas for it."""
        if self._deferred is not None and not final:
            return "", []
        self._decode_deferred()
        if final and self.matched_stop is None:
            self._pending += self._detokenizer.flush()
        keep = 0 if final or self.matched_stop is not None else min(self._hold, len(self._pending))
        new = self._pending[: len(self._pending) - keep]
        self._pending = self._pending[len(self._pending) - keep :]
        if new:
            self._released.append(new)
        messages: list[DeltaMessage] = []
        if self._parser is not None:
            messages = self._parser.feed(new) if new else []
            if final:
                messages += self._parser.finish()
        return new, messages

    def parsed(self) -> ParsedOutput | None:
        if self.chat is None:
            return None
        return parse(
            self.text,
            enable_thinking=self.chat.enable_thinking,
            tool_call_id=self.tool_call_id,
            tool_calls=self.chat.tool_calls,
        )
