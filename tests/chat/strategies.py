"""Hypothesis strategies for random Qwen3 conversations and the reference template they are checked against."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import strategies as st

# Fragments that exercise the template's string logic: tags it splits on, soft switches, edge newlines.
FRAGMENTS = [
    "\n",
    "\n\n",
    " ",
    "<think>",
    "</think>",
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    " /think",
    " /no_think",
    "/thinking",
    '"',
    "{}",
    "é",
    "你好",
    "🙂",
]

plain_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=12)
edge_newlines = st.sampled_from(["", "", "\n", "\n\n"])
text = st.tuples(
    edge_newlines,
    st.lists(st.one_of(plain_text, st.sampled_from(FRAGMENTS)), max_size=5).map("".join),
    edge_newlines,
).map("".join)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-1000, 1000) | plain_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(plain_text, inner, max_size=3),
    max_leaves=6,
)
arguments_object = st.dictionaries(plain_text, json_values, max_size=3)


def text_parts(draw_text: st.SearchStrategy[str]) -> st.SearchStrategy[list[dict]]:
    return st.lists(draw_text.map(lambda t: {"type": "text", "text": t}), min_size=1, max_size=3)


# A content is a string most of the time, sometimes None or a list of text parts.
content = st.one_of(text, text, text, st.none(), text_parts(text))


@st.composite
def user_message(draw) -> dict:
    kind = draw(st.sampled_from(["text", "text", "flag", "tool_response", "other"]))
    if kind == "flag":
        body = draw(text) + draw(st.sampled_from([" /think", " /no_think", "/think", "/no_think"]))
    elif kind == "tool_response":
        body = "<tool_response>" + draw(text) + "</tool_response>"
    else:
        return {"role": "user", "content": draw(content)}
    return {"role": "user", "content": body}


@st.composite
def tool_call(draw) -> dict:
    name = draw(plain_text)
    arguments = draw(st.one_of(arguments_object, arguments_object.map(json.dumps), text))
    if draw(st.booleans()):
        call = {"type": "function", "function": {"name": name, "arguments": arguments}}
        if draw(st.booleans()):
            call["id"] = "call_" + draw(plain_text)
        return call
    return {"name": name, "arguments": arguments}


@st.composite
def assistant_message(draw) -> dict:
    message: dict = {"role": "assistant"}
    body = draw(content)
    if isinstance(body, str) and draw(st.booleans()):
        opening = draw(st.sampled_from(["<think>", "<think>\n", "", "\n<think>\n"]))
        body = f"{opening}{draw(text)}</think>{draw(text)}"
    message["content"] = body
    reasoning_field = draw(st.sampled_from([None, None, "reasoning_content", "reasoning", "thinking"]))
    if reasoning_field is not None:
        message[reasoning_field] = draw(st.one_of(text, st.none()))
    if draw(st.booleans()):
        message["tool_calls"] = draw(st.lists(tool_call(), max_size=3))
    return message


def tool_message() -> st.SearchStrategy[dict]:
    return content.map(lambda c: {"role": "tool", "content": c})


def system_message() -> st.SearchStrategy[dict]:
    return content.map(lambda c: {"role": "system", "content": c})


tool_schema = st.fixed_dictionaries(
    {
        "type": st.just("function"),
        "function": st.fixed_dictionaries({"name": plain_text, "description": text}),
    }
)
tools = st.one_of(st.none(), st.just([]), st.lists(tool_schema, min_size=1, max_size=2))


@st.composite
def conversation(draw) -> list[dict]:
    """A random mix of messages; runs of tool results and a leading system message are common."""
    messages = [draw(system_message())] if draw(st.booleans()) else []
    body = st.one_of(
        user_message(),
        user_message(),
        assistant_message(),
        assistant_message(),
        st.lists(tool_message(), min_size=1, max_size=3),
        system_message(),
    )
    for item in draw(st.lists(body, min_size=1, max_size=7)):
        messages.extend(item if isinstance(item, list) else [item])
    if draw(st.booleans()):
        messages.append(draw(assistant_message()))  # a final assistant turn, as in training data
    return messages


def for_official_template(messages: list[dict]) -> list[dict]:
    """The same conversation in the form the official template renders as we do (see docs/chat.md):
    lists of text parts joined with "\\n" (vLLM's rule; the official template would render them as ""), and a
    content-less leading system message given as "" (the official template fails on it)."""
    converted = []
    for index, message in enumerate(messages):
        message = dict(message)
        if isinstance(message.get("content"), list):
            message["content"] = "\n".join(part["text"] for part in message["content"])
        if index == 0 and message["role"] == "system" and message.get("content") is None:
            message["content"] = ""
        converted.append(message)
    return converted


def official_template() -> str:
    """The official Qwen3 template as shipped in the trl wheel (read at run time, never copied)."""
    import trl

    return (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text(encoding="utf-8")
