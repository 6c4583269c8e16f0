"""Split a Qwen3 completion into reasoning, content and tool calls.

The rules (vLLM's Qwen3 reasoning parser plus its Hermes tool parser, with the gaps they leave closed):

1. Thinking off: there is no reasoning; all text is content (tool calls are still extracted).
2. Thinking on: a leading ``<think>`` is dropped (the prompt may already hold it). Text before the first
   ``</think>`` is reasoning and the rest is content; tool calls inside the reasoning stay reasoning text. Without
   ``</think>``, the reasoning ends at the first ``<tool_call>``. Without either, the whole text is reasoning (a
   thought cut off by the length limit) and there is no content.
3. Each ``<tool_call>...</tool_call>`` block in the content (the last may lack ``</tool_call>``) whose body is a
   JSON object with a string ``name`` and an object or string ``arguments`` becomes a tool call; ``arguments`` is
   re-serialised as JSON text (``ensure_ascii=False``, default separators, the form the chat template writes
   back); a string holding a JSON object is that object, any other string stays a JSON string (as vLLM). Any
   other block stays in the content verbatim, so no text is lost. Content around and between tool calls is
   concatenated.
4. Whitespace: newlines (only ``"\\n"``) at both ends of the reasoning and of the content are stripped, like the
   official Qwen recipe's ``.strip("\\n")``; inner text is kept as is. A reasoning ended by a ``<tool_call>``
   (no ``</think>``) keeps its trailing whitespace, as vLLM returns it.
5. A field with no text after stripping is None, so ``reasoning_content`` and ``content`` are never ``""``.

With ``tool_calls=False`` (a request without tools, or OpenAI's ``tool_choice="none"``) rule 3 is off and
``<tool_call>`` is ordinary text: it neither ends the reasoning nor becomes a call, as vLLM does without a tool parser.

``StreamingParser`` (qwen3/chat/streaming.py) implements the same rules incrementally; the tests prove that its
deltas always add up to :func:`parse`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qwen3.chat.messages import check_flag, check_text, to_json
from qwen3.tokenizer.special import THINK_END, THINK_START, TOOL_CALL_END, TOOL_CALL_START

ToolCallIdFactory = Callable[[int], str]


def random_tool_call_id(index: int) -> str:
    """An OpenAI-style unique id; ``index`` (the call's position in the reply) is unused."""
    return f"call_{uuid.uuid4().hex[:24]}"


@dataclass
class FunctionCall:
    name: str
    arguments: str  # JSON text of an object


@dataclass
class ToolCall:
    id: str
    function: FunctionCall
    type: str = "function"

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "function": {"name": self.function.name, "arguments": self.function.arguments},
        }


@dataclass
class ParsedOutput:
    reasoning_content: str | None
    content: str | None
    tool_calls: list[ToolCall] = field(default_factory=list)

    def to_message(self) -> dict[str, Any]:
        """The OpenAI assistant message; it renders back through :func:`qwen3.chat.render`."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content}
        if self.reasoning_content is not None:
            message["reasoning_content"] = self.reasoning_content
        if self.tool_calls:
            message["tool_calls"] = [call.to_dict() for call in self.tool_calls]
        return message


def decode_arguments(arguments: Any) -> str | None:
    """The JSON text of a call's ``arguments``, or None when they cannot be a call's arguments.

    An object is serialised as the template writes it back. A string that holds a JSON object is that object
    (Granite-style pre-serialised arguments, not encoded twice); any other string is kept as a JSON string, as
    vLLM's Hermes parser does, so the client always receives valid JSON. Anything else is refused.
    """
    if isinstance(arguments, str):
        try:
            decoded = json.loads(arguments)
        except ValueError:
            return to_json(arguments)
        return to_json(decoded if isinstance(decoded, dict) else arguments)
    if isinstance(arguments, dict):
        return to_json(arguments)
    return None


def decode_tool_call(body: str) -> FunctionCall | None:
    """The call in a ``<tool_call>`` block's body, or None when the body is not a valid Hermes call."""
    try:
        call = json.loads(body)
    except ValueError:
        return None
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        return None
    arguments = decode_arguments(call.get("arguments"))
    if arguments is None:
        return None
    return FunctionCall(call["name"], arguments)


def strip_newlines(text: str | None) -> str | None:
    """Rule 4 and 5: strip newlines at both ends; None when nothing is left."""
    stripped = (text or "").strip("\n")
    return stripped or None


def split_reasoning(
    text: str, enable_thinking: bool, tool_calls: bool = True
) -> tuple[str | None, str, bool]:
    """(raw reasoning, raw rest, whether a ``<tool_call>`` ended the reasoning) by rules 1 and 2."""
    if not enable_thinking:
        return None, text, False
    if text.startswith(THINK_START):
        text = text[len(THINK_START) :]
    end = text.find(THINK_END)
    if end >= 0:
        return text[:end], text[end + len(THINK_END) :], False
    call = text.find(TOOL_CALL_START) if tool_calls else -1
    if call >= 0:
        return text[:call], text[call:], True
    return text, "", False


def split_reasoning_text(text: str, enable_thinking: bool, tool_calls: bool = True) -> tuple[str | None, str]:
    """(raw reasoning, raw rest) by rules 1 and 2, before any whitespace handling."""
    reasoning, rest, _ = split_reasoning(text, enable_thinking, tool_calls)
    return reasoning, rest


def reasoning_field(reasoning: str | None, implicit_end: bool) -> str | None:
    """Rule 4 for the reasoning: a thought cut short by a ``<tool_call>`` keeps its trailing whitespace."""
    if not implicit_end:
        return strip_newlines(reasoning)
    return (reasoning or "").lstrip("\n") or None


def extract_tool_calls(text: str) -> tuple[str, list[FunctionCall]]:
    """(content text, calls) by rule 3: valid blocks become calls, everything else stays content."""
    content: list[str] = []
    calls: list[FunctionCall] = []
    position = 0
    while (start := text.find(TOOL_CALL_START, position)) >= 0:
        content.append(text[position:start])
        body_start = start + len(TOOL_CALL_START)
        end = text.find(TOOL_CALL_END, body_start)
        block_end = len(text) if end < 0 else end + len(TOOL_CALL_END)
        call = decode_tool_call(text[body_start : len(text) if end < 0 else end])
        if call is None:
            content.append(text[start:block_end])
        else:
            calls.append(call)
        position = block_end
    content.append(text[position:])
    return "".join(content), calls


def check_parse_flags(enable_thinking: Any, tool_calls: Any) -> None:
    check_flag("enable_thinking", enable_thinking)
    check_flag("tool_calls", tool_calls)


def parse(
    text: str,
    enable_thinking: bool = True,
    tool_call_id: ToolCallIdFactory | None = None,
    tool_calls: bool = True,
) -> ParsedOutput:
    """Parse a completion (the text after the prompt, stop token removed) into reasoning, content and tool calls.

    ``enable_thinking=False`` only when the prompt was rendered with the hard switch (it ends in an empty think
    block); under a soft ``/no_think`` the model writes its own empty think block, so keep True.
    ``tool_call_id(index)`` names each call; the default gives random ``call_...`` ids. ``tool_calls=False`` leaves
    ``<tool_call>`` blocks as text (no tools offered). A ``text`` that is not a str is a TypeError, a flag that is
    not a bool a ValueError.
    """
    check_text("text", text)
    check_parse_flags(enable_thinking, tool_calls)
    make_id = tool_call_id or random_tool_call_id
    reasoning, rest, implicit_end = split_reasoning(text, enable_thinking, tool_calls)
    content, calls = extract_tool_calls(rest) if tool_calls else (rest, [])
    return ParsedOutput(
        reasoning_content=reasoning_field(reasoning, implicit_end),
        content=strip_newlines(content),
        tool_calls=[ToolCall(make_id(index), call) for index, call in enumerate(calls)],
    )
