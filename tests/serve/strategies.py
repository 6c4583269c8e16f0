"""Hypothesis strategies for request bodies: well-formed ones built from the server's schema
(``qwen3.serve.protocol``: each field's type and ``ge`` / ``le`` bounds), and mutations of them (wrong types, missing
and extra fields, extreme numbers, NaN, huge strings and lists, lone surrogates, special-token text, malformed
messages and tool calls, bytes that are not JSON).

A body is drawn as ``Case(body_bytes, mutated)``: ``mutated`` holds the top-level fields a mutation touched, so a
test can check that a 400 names one of them.
"""

from __future__ import annotations

import json
import math
import types
import typing
from dataclasses import dataclass, field

import annotated_types
from hypothesis import strategies as st
from pydantic.fields import FieldInfo

from qwen3.serve.protocol import ChatCompletionRequest, CompletionRequest
from tests.chat.strategies import conversation

# Fields whose schema range would make a request slow (it generates that many tokens): kept small when valid.
SMALL = {"n": (1, 2), "max_tokens": (1, 4), "max_completion_tokens": (1, 4), "top_logprobs": (0, 3)}
# Fields a well-formed body never sets (each is refused or changes the protocol); the mutations still try them.
SKIPPED = {"messages", "prompt", "tools", "tool_choice", "logit_bias", "response_format", "suffix", "best_of",
           "echo", "chat_template_kwargs", "stream_options", "thinking_token_budget", "model", "stream",
           "parallel_tool_calls"}  # fmt: skip
SPECIAL_TEXT = ["<|im_start|>", "<|im_end|>", "<|endoftext|>", "<think>", "</think>", "<tool_call>", "</tool_call>",
                "<tool_response>", "<|vision_start|>", "/think", "/no_think", "{{", "{%", "\x00", "\ufeff"]  # fmt: skip
EXTREME_NUMBERS = [2**31, 2**31 - 1, 2**63, 2**63 - 1, -(2**63), -(2**63) - 1, 2**64, 10**100, -1, 0, -0.0,
                   1e-300, 5e-324, 1e308, -1e308, math.inf, -math.inf, math.nan, 0.5, 1.0000001]  # fmt: skip

any_text = st.text(max_size=30)  # lone surrogates included (category Cs)
special_text = st.lists(st.one_of(st.sampled_from(SPECIAL_TEXT), any_text), max_size=4).map("".join)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.sampled_from(EXTREME_NUMBERS),
    st.integers(),
    st.floats(),
    any_text,
    special_text,
)
weird = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(any_text, scalars, max_size=3),
    st.sampled_from(["x" * 50_000, [1] * 5_000, ["stop"] * 2_000, {"k": "v" * 10_000}]),  # huge
)


def _bounds(info: FieldInfo) -> tuple[float | None, float | None]:
    low = high = None
    for item in info.metadata:
        if isinstance(item, annotated_types.Ge):
            low = item.ge
        elif isinstance(item, annotated_types.Gt):
            low = item.gt + (1 if isinstance(item.gt, int) else 1e-6)
        elif isinstance(item, annotated_types.Le):
            high = item.le
    return low, high


def _of_type(kind, low, high) -> st.SearchStrategy | None:
    if kind is bool:
        return st.booleans()
    if kind is int:
        return st.integers(min_value=low, max_value=high)
    if kind is float:
        return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False)
    if kind is str:
        return special_text
    origin = typing.get_origin(kind)
    if origin is list:
        item = _of_type(typing.get_args(kind)[0], None, None)
        return None if item is None else st.lists(item, max_size=3)
    return None


def valid_value(name: str, info: FieldInfo) -> st.SearchStrategy | None:
    """A strategy of values the schema accepts for this field (None: a field this module builds by hand)."""
    low, high = SMALL.get(name, _bounds(info))
    kinds = [k for k in typing.get_args(info.annotation) or (info.annotation,) if k is not type(None)]
    if typing.get_origin(info.annotation) not in (typing.Union, types.UnionType):
        kinds = [info.annotation]
    options = [s for s in (_of_type(kind, low, high) for kind in kinds) if s is not None]
    return st.one_of(options) if options else None


def schema_fields(model) -> dict[str, st.SearchStrategy]:
    return {
        name: strategy
        for name, info in model.model_fields.items()
        if name not in SKIPPED and (strategy := valid_value(name, info)) is not None
    }


CHAT_FIELDS = schema_fields(ChatCompletionRequest)
COMPLETION_FIELDS = schema_fields(CompletionRequest)


def stops_are_text(body: dict) -> dict:
    """``stop`` strings must not be empty; ``stop_token_ids`` are drawn inside the tiny vocabulary."""
    if "stop" in body:
        stops = [body["stop"]] if isinstance(body["stop"], str) else body["stop"]
        body["stop"] = [s for s in stops if s] or None
    if "stop_token_ids" in body:
        body["stop_token_ids"] = [abs(t) % 400 for t in body["stop_token_ids"]]
    return body


@st.composite
def chat_body(draw) -> dict:
    chosen = draw(st.lists(st.sampled_from(sorted(CHAT_FIELDS)), unique=True, max_size=6))
    body = {name: draw(CHAT_FIELDS[name]) for name in chosen}
    body["messages"] = (
        draw(conversation().filter(bool))
        if draw(st.booleans())
        else [{"role": "user", "content": draw(special_text)}]
    )
    body.setdefault("max_tokens", draw(st.integers(1, 4)))
    if draw(st.booleans()):
        body["stream"] = True
    return stops_are_text(body)


@st.composite
def completion_body(draw) -> dict:
    chosen = draw(st.lists(st.sampled_from(sorted(COMPLETION_FIELDS)), unique=True, max_size=6))
    body = {name: draw(COMPLETION_FIELDS[name]) for name in chosen}
    body["prompt"] = draw(
        st.one_of(
            special_text.filter(bool),
            st.lists(special_text.filter(bool), min_size=1, max_size=2),
            st.lists(st.integers(0, 400), min_size=1, max_size=8),
        )
    )
    body.setdefault("max_tokens", draw(st.integers(1, 4)))
    if draw(st.booleans()):
        body["stream"] = True
    return stops_are_text(body)


@st.composite
def bad_message(draw) -> typing.Any:
    """A message broken in one place: role, content, tool calls, or the message itself."""
    message: dict = {"role": "user", "content": "hi"}
    kind = draw(
        st.sampled_from(["role", "content", "tool_calls", "call_args", "call_name", "extra", "whole"])
    )
    if kind == "role":
        message["role"] = draw(weird)
    elif kind == "content":
        message["content"] = draw(
            st.one_of(weird, st.lists(st.dictionaries(any_text, weird, max_size=2), max_size=2))
        )
    elif kind in ("tool_calls", "call_args", "call_name"):
        message = {"role": "assistant", "content": draw(st.one_of(st.none(), special_text))}
        call = {"type": "function", "function": {"name": "f", "arguments": "{}"}}
        if kind == "tool_calls":
            message["tool_calls"] = draw(weird)
        elif kind == "call_args":
            call["function"]["arguments"] = draw(st.one_of(weird, special_text.map(lambda t: '{"a": ' + t)))
            message["tool_calls"] = [call]
        else:
            call["function"]["name"] = draw(weird)
            message["tool_calls"] = [call]
    elif kind == "extra":
        message[draw(any_text)] = draw(weird)
    else:
        return draw(weird)
    return message


@dataclass
class Case:
    path: str
    content: bytes
    mutated: set[str] = field(default_factory=set)
    is_object: bool = True  # the bytes are a JSON object


def _dumps(body) -> bytes:
    # ensure_ascii: lone surrogates become \ud800 escapes (valid JSON syntax, no UTF-8 text); NaN stays NaN.
    return json.dumps(body, allow_nan=True).encode()


@st.composite
def mutated_body(draw) -> Case:
    chat = draw(st.booleans())
    body = draw(chat_body() if chat else completion_body())
    path = "/v1/chat/completions" if chat else "/v1/completions"
    fields = sorted((ChatCompletionRequest if chat else CompletionRequest).model_fields)
    mutated: set[str] = set()
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["set", "set", "drop", "extra", "message", "messages"]))
        name = draw(st.sampled_from(fields))
        if op == "set":
            body[name] = draw(weird)
            mutated.add(name)
        elif op == "drop" and name in body:
            del body[name]
            mutated.add(name)
        elif op == "extra":
            body[draw(any_text)] = draw(weird)  # unknown fields are accepted and ignored
        elif op == "message" and chat:
            messages = body["messages"] if isinstance(body.get("messages"), list) else []
            body["messages"] = messages
            messages.insert(draw(st.integers(0, len(messages))), draw(bad_message()))
            mutated.add("messages")
        elif op == "messages" and chat:
            body["messages"] = draw(st.sampled_from([[], {}, "hi", [{}] * 3, [{"role": "user"}] * 10_000]))
            mutated.add("messages")
    content = _dumps(body)
    shape = draw(st.sampled_from(["json"] * 8 + ["truncated", "bytes", "array", "utf8"]))
    if shape == "truncated":
        return Case(path, content[: draw(st.integers(0, max(0, len(content) - 1)))], mutated, False)
    if shape == "bytes":
        return Case(path, draw(st.binary(max_size=64)), mutated, False)
    if shape == "array":
        return Case(path, _dumps([body]), mutated, False)
    if shape == "utf8":  # invalid UTF-8 inside a string
        return Case(path, content.replace(b'"', b'"\xff\xfe', 1), mutated, False)
    return Case(path, content, mutated)
