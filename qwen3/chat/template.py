"""Native Python rendering of the Qwen3 chat format, byte-identical to the official Jinja template.

The official hybrid-thinking template (2025-04-29, revised 2025-05-20 for non-string content) does, in order:

1. a system turn: the first system message, and when ``tools`` are given the Hermes-style tools block after it;
2. ``last_query_index``: the last user message with text content that is not entirely a ``<tool_response>``;
3. one ChatML turn per message, where an assistant turn after ``last_query_index`` gets a think block when it is
   the last message or has non-empty reasoning, and every earlier assistant turn loses its thinking;
4. consecutive ``tool`` messages merged into one user turn of ``<tool_response>`` blocks;
5. the generation prompt, pre-filled with an empty think block when ``enable_thinking is False``.

``prefix_preserving=True`` changes step 3 only: every assistant turn keeps its think block (an empty one when it had
no reasoning), so appending messages never rewrites what was rendered before (QwenLM/Qwen3#1826).

:func:`render_segments` returns the same text cut into pieces that say which characters the assistant produced;
the training view uses it to build loss masks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from qwen3.chat.messages import Message, check_flag, normalize_messages, normalize_tools
from qwen3.tokenizer.special import (
    IM_END,
    IM_START,
    THINK_END,
    THINK_START,
    TOOL_RESPONSE_END,
    TOOL_RESPONSE_START,
)

EMPTY_THINK_BLOCK = "<think>\n\n</think>\n\n"

TOOLS_PREAMBLE = (
    "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
    "You are provided with function signatures within <tools></tools> XML tags:\n<tools>"
)
TOOLS_POSTAMBLE = (
    "\n</tools>\n\nFor each function call, return a json object with function name and arguments within "
    '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": <args-json-object>}\n'
    "</tool_call>"
)


@dataclass(frozen=True)
class Segment:
    """A piece of the rendering. ``assistant`` is True for text the assistant produced (a loss target)."""

    text: str
    message_index: int | None
    assistant: bool = False


def is_query(message: Message) -> bool:
    """A real user query: a user message with text that is not entirely a wrapped tool response."""
    if message.role != "user" or not message.has_text:
        return False
    wrapped = message.content.startswith(TOOL_RESPONSE_START) and message.content.endswith(TOOL_RESPONSE_END)
    return not wrapped


def last_query_index(messages: Sequence[Message]) -> int:
    """Index of the last real user query; ``len(messages) - 1`` when there is none (as in the template)."""
    for index in range(len(messages) - 1, -1, -1):
        if is_query(messages[index]):
            return index
    return len(messages) - 1


def split_reasoning(message: Message) -> tuple[str, str]:
    """(reasoning, content) of an assistant message: the reasoning field, else an inline ``<think>`` block."""
    if message.reasoning is not None:
        return message.reasoning, message.content
    content = message.content
    if THINK_END not in content:
        return "", content
    before, after = content.split(THINK_END)[0], content.split(THINK_END)[-1]
    return before.rstrip("\n").split(THINK_START)[-1].lstrip("\n"), after.lstrip("\n")


def _system_header(messages: Sequence[Message], tool_texts: Sequence[str]) -> str:
    system = messages[0].content if messages[0].role == "system" else None
    if not tool_texts:
        return "" if system is None else f"{IM_START}system\n{system}{IM_END}\n"
    prefix = "" if system is None else system + "\n\n"
    tools = "".join("\n" + text for text in tool_texts)
    return f"{IM_START}system\n{prefix}{TOOLS_PREAMBLE}{tools}{TOOLS_POSTAMBLE}{IM_END}\n"


def _assistant_body(message: Message, with_think_block: bool) -> str:
    """What the assistant produced: optional think block, content, tool calls and the closing ``<|im_end|>``."""
    reasoning, content = split_reasoning(message)
    if with_think_block:
        body = f"{THINK_START}\n{reasoning.strip(chr(10))}\n{THINK_END}\n\n{content.lstrip(chr(10))}"
    else:
        body = content
    for call_index, call in enumerate(message.tool_calls):
        # The template separates calls by "\n", and the first from the content only when the content is non-empty.
        if call_index > 0 or content:
            body += "\n"
        body += f'<tool_call>\n{{"name": "{call.name}", "arguments": {call.arguments}}}\n</tool_call>'
    return body + IM_END


def _keeps_think_block(message: Message, index: int, last_index: int, query_index: int) -> bool:
    if index <= query_index:
        return False
    return index == last_index or bool(split_reasoning(message)[0])


def render_segments(
    messages: Sequence[Any],
    tools: Sequence[Any] | None = None,
    add_generation_prompt: bool = False,
    enable_thinking: bool | None = None,
    prefix_preserving: bool = False,
) -> list[Segment]:
    """The rendering of :func:`render`, cut into segments (their concatenation is the rendered text)."""
    check_flag("add_generation_prompt", add_generation_prompt)
    check_flag("enable_thinking", enable_thinking, optional=True)
    check_flag("prefix_preserving", prefix_preserving)
    turns = normalize_messages(messages)
    segments = [Segment(_system_header(turns, normalize_tools(tools)), 0)]
    query_index = last_query_index(turns)
    last_index = len(turns) - 1
    for index, message in enumerate(turns):
        role = message.role
        if role == "user" or (role == "system" and index > 0):
            segments.append(Segment(f"{IM_START}{role}\n{message.content}{IM_END}\n", index))
        elif role == "assistant":
            think = prefix_preserving or _keeps_think_block(message, index, last_index, query_index)
            segments.append(Segment(f"{IM_START}assistant\n", index))
            segments.append(Segment(_assistant_body(message, think), index, assistant=True))
            segments.append(Segment("\n", index))
        elif role == "tool":
            opens = index == 0 or turns[index - 1].role != "tool"
            closes = index == last_index or turns[index + 1].role != "tool"
            # A run of tool results is one user turn: the first opens it, the last closes it.
            opening = f"{IM_START}user" if opens else ""
            closing = f"{IM_END}\n" if closes else ""
            response = f"\n{TOOL_RESPONSE_START}\n{message.content}\n{TOOL_RESPONSE_END}"
            segments.append(Segment(opening + response + closing, index))
    if add_generation_prompt:
        prompt = f"{IM_START}assistant\n" + (EMPTY_THINK_BLOCK if enable_thinking is False else "")
        segments.append(Segment(prompt, None))
    return [segment for segment in segments if segment.text]


def render(
    messages: Sequence[Any],
    tools: Sequence[Any] | None = None,
    add_generation_prompt: bool = False,
    enable_thinking: bool | None = None,
    prefix_preserving: bool = False,
) -> str:
    """Render a conversation exactly as the official Qwen3 chat template does.

    ``enable_thinking=False`` pre-fills the generation prompt with an empty think block (the hard switch);
    ``None`` and ``True`` leave the model free to think. ``prefix_preserving=True`` keeps every assistant turn's
    think block so that each rendering is a byte prefix of the next one in a multi-turn conversation.
    Raises ValueError naming the message index and field for malformed input, or the argument when a flag is not a
    bool (``enable_thinking`` may also be None).
    """
    return "".join(
        s.text
        for s in render_segments(messages, tools, add_generation_prompt, enable_thinking, prefix_preserving)
    )
