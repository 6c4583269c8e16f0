"""``Reply``: one model reply as the graders see it, from raw completion text or from an OpenAI message.

Grading is thinking-aware (Qwen3 report §4.6; lighteval#869): only the content after ``</think>`` is an answer, a
thought that never closed is no answer at all, and the reply's mode is read from the parsed reasoning (a non-empty
thought is thinking mode, an empty think block is non-thinking mode).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qwen3.tokenizer.special import THINK_END, THINK_START

MODES = ("think", "no_think")


@dataclass
class Reply:
    """``reasoning``: the thought (None when empty or absent); ``content``: the answer text ("" when none);
    ``tool_calls``: OpenAI ``{"id", "type", "function": {"name", "arguments"}}`` dicts (arguments as JSON text);
    ``think_closed``: False when the thought never ended (cut off by the length limit): such a reply has no
    answer. ``raw``: the completion text when known; ``finish_reason`` and ``reasoning_tokens`` when the backend
    reports them; ``error``: why the backend produced no reply (the item is then graded wrong with that reason)."""

    content: str = ""
    reasoning: str | None = None
    tool_calls: list[dict[str, Any]] = field(default_factory=list)
    think_closed: bool = True
    raw: str | None = None
    finish_reason: str | None = None
    reasoning_tokens: int | None = None
    error: str | None = None

    @classmethod
    def from_text(cls, raw: str, enable_thinking: bool = True, tools: bool = True, **extra: Any) -> Reply:
        """Parse a completion with the chat parser. ``enable_thinking=False`` only when the prompt itself closed
        the thought (the hard switch); ``tools=False`` leaves ``<tool_call>`` text as content."""
        from qwen3.chat.parse import parse

        if not enable_thinking and raw.lstrip().startswith(THINK_START):
            enable_thinking = (
                True  # the prompt closed the thought, but the model opened another: read it as one
            )
        parsed = parse(raw, enable_thinking=enable_thinking, tool_call_id=_call_id, tool_calls=tools)
        # As the parser reads it: a tool call also ends a thought that lacks </think>.
        closed = not enable_thinking or THINK_END in raw or bool(parsed.tool_calls)
        return cls(
            content=parsed.content or "",
            reasoning=parsed.reasoning_content,
            tool_calls=[call.to_dict() for call in parsed.tool_calls],
            think_closed=closed,
            raw=raw,
            **extra,
        )

    @classmethod
    def from_message(
        cls,
        message: dict[str, Any],
        finish_reason: str | None = None,
        thinking_prompt: bool = True,
        **extra: Any,
    ) -> Reply:
        """An OpenAI assistant message (``reasoning_content`` or vLLM's newer ``reasoning``, ``content``,
        ``tool_calls``). A server without a reasoning parser leaves ``<think>`` in the content: it is re-parsed.
        The message does not say whether ``</think>`` came, so after a prompt that leaves thinking to the model
        (``thinking_prompt``: not the hard switch) a reply with neither content nor tool calls counts as an
        unclosed thought (no answer)."""
        if not isinstance(message, dict):
            raise TypeError(f"an OpenAI message must be a dict, got {type(message).__name__}")
        content = message.get("content") or ""
        reasoning = message.get("reasoning_content") or message.get("reasoning") or None
        calls = [_call_dict(call) for call in message.get("tool_calls") or []]
        if reasoning is None and (THINK_START in content or THINK_END in content):
            reply = cls.from_text(content, enable_thinking=True, finish_reason=finish_reason, **extra)
            reply.tool_calls = calls + reply.tool_calls
            return reply
        if not thinking_prompt and reasoning and not content.strip() and not calls:
            # The prompt closed the thought (hard switch), yet some servers' parsers still file the whole answer
            # as reasoning (vllm#19839, QwenLM/Qwen3#1297): it is the answer.
            content, reasoning = reasoning, None
        closed = not thinking_prompt or bool(content.strip()) or bool(calls)
        return cls(
            content=content.strip("\n"),
            reasoning=reasoning.strip("\n") or None if reasoning else None,
            tool_calls=calls,
            think_closed=closed,
            finish_reason=finish_reason,
            **extra,
        )

    @classmethod
    def failed(cls, error: str) -> Reply:
        return cls(think_closed=False, error=error)

    @property
    def mode(self) -> str:
        """ "think" (a non-empty thought), "no_think" (an empty or no think block) or "unclosed"."""
        if not self.think_closed:
            return "unclosed"
        return "think" if self.reasoning and self.reasoning.strip() else "no_think"

    @property
    def answer_text(self) -> str | None:
        """The gradable content: None when there is no answer (an unclosed thought or a failed request)."""
        if self.error is not None or not self.think_closed:
            return None
        return self.content

    def message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation (multi-round tool use)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.reasoning:
            message["reasoning_content"] = self.reasoning
        if self.tool_calls:
            message["tool_calls"] = self.tool_calls
        return message

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "reasoning": self.reasoning,
            "content": self.content,
            "tool_calls": self.tool_calls,
            "finish_reason": self.finish_reason,
            "reasoning_tokens": self.reasoning_tokens,
            "error": self.error,
        }


def _call_id(index: int) -> str:
    """Deterministic ids, so records and the conversations built from them repeat for a seed."""
    return f"call_{index}"


def _call_dict(call: Any) -> dict[str, Any]:
    """An OpenAI tool call (a dict, or the openai package's object) as a plain dict."""
    if hasattr(call, "model_dump"):
        call = call.model_dump()
    function = call.get("function") or {}
    arguments = function.get("arguments")
    return {
        "id": call.get("id") or "call",
        "type": "function",
        "function": {"name": function.get("name"), "arguments": arguments if arguments is not None else "{}"},
    }
