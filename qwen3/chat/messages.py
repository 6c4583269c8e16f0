"""Validation and normalisation of OpenAI-style chat messages.

Every consumer of a conversation (the native renderer, the soft-switch resolver, the training view) goes through
:func:`normalize_messages`, so they all agree on what a message means:

- ``content`` may be a string, ``None`` (or missing) or a list of text parts ``{"type": "text", "text": ...}``.
  Text parts are joined with ``"\\n"``, as vLLM does before it applies a string-content template. ``None`` renders as
  the empty string, but a user message without content does not count as a query (the official template only
  counts string contents).
- An assistant's reasoning is read from ``reasoning_content``, then ``thinking``, then ``reasoning`` (the first one
  that is not ``None``), the order transformers' ``apply_chat_template`` aliases them in.
- ``tool_calls`` entries are ``{"type": "function", "function": {"name", "arguments"}}`` or the bare
  ``{"name", "arguments"}`` form; ``arguments`` is a JSON string (kept verbatim) or an object (serialised like the
  template's ``tojson``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")


@dataclass(frozen=True)
class ToolCallText:
    """A tool call as the template writes it: the function name and the arguments' JSON text."""

    name: str
    arguments: str


@dataclass(frozen=True)
class Message:
    """One validated message. ``content`` is always a string; ``has_text`` is False when it was None/missing."""

    role: str
    content: str
    has_text: bool
    reasoning: str | None = None
    tool_calls: tuple[ToolCallText, ...] = field(default_factory=tuple)


def to_json(value: Any) -> str:
    """The template's ``tojson``: ``json.dumps`` with ``ensure_ascii=False`` and the default separators."""
    return json.dumps(value, ensure_ascii=False)


def check_flag(name: str, value: Any, *, optional: bool = False) -> None:
    """Reject a flag that is not a real bool: ``"false"`` or ``"no"`` are truthy and would silently mean True."""
    if isinstance(value, bool) or (optional and value is None):
        return
    expected = "True, False or None" if optional else "True or False"
    raise ValueError(f"{name}: must be {expected}, got {type(value).__name__} {value!r}")


def check_text(name: str, value: Any) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name}: must be a str, got {type(value).__name__}")


def content_text(content: Any, where: str) -> str | None:
    """The text of a message content (str, None or a list of text parts); None when there is no content."""
    if content is None or isinstance(content, str):
        return content
    if isinstance(content, Sequence) and not isinstance(content, (bytes, bytearray)):
        texts = []
        for part_index, part in enumerate(content):
            part_where = f"{where}[{part_index}]"
            if not isinstance(part, Mapping):
                raise ValueError(f"{part_where}: a content part must be a dict, got {type(part).__name__}")
            if part.get("type") != "text":
                raise ValueError(
                    f"{part_where}.type: only text parts are supported by the text models, got {part.get('type')!r}"
                )
            if not isinstance(part.get("text"), str):
                raise ValueError(
                    f"{part_where}.text: must be a string, got {type(part.get('text')).__name__}"
                )
            texts.append(part["text"])
        return "\n".join(texts)
    raise ValueError(
        f"{where}: content must be a string, None or a list of text parts, got {type(content).__name__}"
    )


def _reasoning(message: Mapping[str, Any], where: str) -> str | None:
    for name in REASONING_FIELDS:
        value = message.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{where}.{name}: must be a string or None, got {type(value).__name__}")
        return value
    return None


def _tool_call(call: Any, where: str) -> ToolCallText:
    if not isinstance(call, Mapping):
        raise ValueError(f"{where}: a tool call must be a dict, got {type(call).__name__}")
    # The template uses ``function`` when it is truthy and otherwise reads name/arguments from the call itself.
    if call.get("function"):
        call, where = call["function"], f"{where}.function"
        if not isinstance(call, Mapping):
            raise ValueError(f"{where}: must be a dict, got {type(call).__name__}")
    name = call.get("name")
    if not isinstance(name, str):
        raise ValueError(f"{where}.name: must be a string, got {type(name).__name__}")
    arguments = call.get("arguments")
    if isinstance(arguments, str):
        return ToolCallText(name, arguments)
    if isinstance(arguments, Mapping):
        return ToolCallText(name, to_json(arguments))
    raise ValueError(f"{where}.arguments: must be a JSON string or an object, got {type(arguments).__name__}")


def normalize_message(message: Any, index: int) -> Message:
    where = f"messages[{index}]"
    if not isinstance(message, Mapping):
        raise ValueError(f"{where}: a message must be a dict, got {type(message).__name__}")
    role = message.get("role")
    if role not in ROLES:
        raise ValueError(f"{where}.role: unknown role {role!r} (expected one of {', '.join(ROLES)})")
    text = content_text(message.get("content"), f"{where}.content")
    if role != "assistant":
        return Message(role, text or "", text is not None)
    calls = message.get("tool_calls") or ()
    if not isinstance(calls, Sequence) or isinstance(calls, str):
        raise ValueError(f"{where}.tool_calls: must be a list, got {type(calls).__name__}")
    tool_calls = tuple(_tool_call(call, f"{where}.tool_calls[{i}]") for i, call in enumerate(calls))
    return Message(role, text or "", text is not None, _reasoning(message, where), tool_calls)


def normalize_messages(messages: Any) -> list[Message]:
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise ValueError(f"messages: must be a list of message dicts, got {type(messages).__name__}")
    if not messages:
        raise ValueError("messages: the conversation is empty")
    return [normalize_message(message, index) for index, message in enumerate(messages)]


def normalize_tools(tools: Any) -> list[str]:
    """Each tool's ``tojson`` text, in order; [] when ``tools`` is None or empty."""
    if not tools:
        return []
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise ValueError(f"tools: must be a list of tool dicts, got {type(tools).__name__}")
    texts = []
    for index, tool in enumerate(tools):
        if not isinstance(tool, Mapping):
            raise ValueError(
                f"tools[{index}]: a tool must be a dict (a JSON schema), got {type(tool).__name__}"
            )
        texts.append(to_json(dict(tool)))
    return texts
