"""vLLM's own test cases for the Qwen3 reasoning parser and the Hermes tool parser, run through ours.

The inputs and expected results are those of vLLM's tests/reasoning/test_qwen3_reasoning_parser.py and
tests/tool_parsers/test_hermes_tool_parser.py (read 2026-12; written here as data, the test code is ours). Each case
is checked non-streamed (``parse``), streamed token by token through the real tokenizer, and streamed in chunks of
2, 3, 5 and 8 tokens (vLLM's ``stream_interval``) or in vLLM's own multi-token deltas.

Where our result differs from vLLM's by design, the case records both and docs/chat.md says why:
- newlines at the ends of the reasoning and the content are stripped (the template writes them; vLLM keeps them).
  The cases below have none, except the implicit end, where both keep the reasoning's trailing whitespace.
"""

from __future__ import annotations

import json

import pytest

from qwen3.chat import StreamingParser, accumulate, parse

# -- the reasoning parser (thinking on unless a case says otherwise) ----------------------------------------------

# A Qwen3-Coder style call (XML body, not Hermes JSON): not a valid Hermes call, so it stays content verbatim.
TOOL_CALL_BODY = "<tool_call>\n<function=bash>\n<parameter=command>\ncat /etc/hosts\n</parameter>\n</function>\n</tool_call>"

REASONING_CASES = {
    "without_start_token": (
        "This is a reasoning section</think>This is the rest",
        "This is a reasoning section",
        "This is the rest",
    ),
    "without_start_token_complete_reasoning": (
        "This is a reasoning section</think>",
        "This is a reasoning section",
        None,
    ),
    "with_think": (
        "<think>This is a reasoning section</think>This is the rest",
        "This is a reasoning section",
        "This is the rest",
    ),
    "without_think": ("This is the rest", "This is the rest", None),
    "complete_reasoning": ("<think>This is a reasoning section</think>", "This is a reasoning section", None),
    "multiline_reasoning": (
        "<think>This is a reasoning\nsection</think>This is the rest\nThat",
        "This is a reasoning\nsection",
        "This is the rest\nThat",
    ),
    "only_open_tag": ("<think>This is a reasoning section", "This is a reasoning section", None),
    "truncated_no_start_token": ("This is a reasoning section", "This is a reasoning section", None),
    "tool_call_no_think_end": (
        "I need to read the file.\n\n" + TOOL_CALL_BODY,
        "I need to read the file.\n\n",
        TOOL_CALL_BODY,
    ),
    "tool_call_with_think_no_end": (
        "<think>I need to read the file.\n\n" + TOOL_CALL_BODY,
        "I need to read the file.\n\n",
        TOOL_CALL_BODY,
    ),
}

# vLLM's multi-token deltas: the chunks as its streaming test feeds them.
MULTI_TOKEN_DELTAS = {
    "start_token_grouped_with_text": (
        ["<think>This is a reasoning section", "</think>", "This is the rest"],
        "This is a reasoning section",
        "This is the rest",
    ),
    "end_token_grouped_with_content": (
        ["reasoning section", "</think>This is the rest"],
        "reasoning section",
        "This is the rest",
    ),
    "start_and_end_in_one_delta_no_content": (["<think>reasoning</think>"], "reasoning", None),
    "no_start_end_grouped_with_content": (
        ["reasoning section", "</think>content"],
        "reasoning section",
        "content",
    ),
    "tool_call_implicit_reasoning_end": (
        ["I need to read the file.\n\n", "<tool_call>\n<function=bash>"],
        "I need to read the file.\n\n",
        "<tool_call>\n<function=bash>",
    ),
}

THINKING_DISABLED_CASES = {
    "thinking_disabled_plain_content": "This is plain content",
    "thinking_disabled_no_think_tokens": "Some output without think tokens",
    "thinking_disabled_with_tool_call": "I need to read the file.\n\n" + TOOL_CALL_BODY,
}

INTERVALS = (1, 2, 3, 5, 8)


def stream(chunks: list[str], enable_thinking: bool = True):
    parser = StreamingParser(enable_thinking=enable_thinking, tool_call_id=lambda i: f"call_{i}")
    deltas = [delta for chunk in chunks for delta in parser.feed(chunk)]
    return accumulate(deltas + parser.finish())


def token_chunks(tokenizer, text: str, interval: int) -> list[str]:
    """The text cut where vLLM's test cuts it: every ``interval`` tokens of the real Qwen3 tokenizer."""
    ids = tokenizer.encode(text)
    assert tokenizer.decode(ids) == text
    pieces = [tokenizer.decode(ids[i : i + interval]) for i in range(0, len(ids), interval)]
    assert "".join(pieces) == text  # no multi-byte character is split in these cases
    return pieces


@pytest.mark.parametrize("name", REASONING_CASES)
def test_reasoning_cases_non_streamed(name):
    text, reasoning, content = REASONING_CASES[name]
    result = parse(text, enable_thinking=True)
    assert (result.reasoning_content, result.content, result.tool_calls) == (reasoning, content, [])


@pytest.mark.parametrize("interval", INTERVALS)
@pytest.mark.parametrize("name", REASONING_CASES)
def test_reasoning_cases_streamed(tokenizer, name, interval):
    text, reasoning, content = REASONING_CASES[name]
    result = stream(token_chunks(tokenizer, text, interval))
    assert (result.reasoning_content, result.content, result.tool_calls) == (reasoning, content, [])


@pytest.mark.parametrize("name", MULTI_TOKEN_DELTAS)
def test_reasoning_multi_token_deltas(name):
    chunks, reasoning, content = MULTI_TOKEN_DELTAS[name]
    result = stream(chunks)
    assert (result.reasoning_content, result.content) == (reasoning, content)
    assert parse("".join(chunks)) == result


@pytest.mark.parametrize("name", THINKING_DISABLED_CASES)
def test_thinking_disabled_is_all_content(name):
    text = THINKING_DISABLED_CASES[name]
    for result in (parse(text, enable_thinking=False), stream([text], enable_thinking=False)):
        assert (result.reasoning_content, result.content, result.tool_calls) == (None, text, [])


# -- the Hermes tool parser (thinking off: vLLM runs these without a reasoning parser) ------------------------------


def call(name: str, args: str) -> str:
    return f'<tool_call>{{"name": "{name}", "arguments": {args}}}</tool_call>'


def both(tokenizer, text: str, interval: int):
    """parse() and the stream at ``interval`` tokens; they must agree exactly (ids are numbered)."""
    whole = parse(text, enable_thinking=False, tool_call_id=lambda i: f"call_{i}")
    streamed = stream(token_chunks(tokenizer, text, interval), enable_thinking=False)
    assert streamed == whole
    return whole


def calls_of(result) -> list[tuple[str, object]]:
    return [(c.function.name, json.loads(c.function.arguments)) for c in result.tool_calls]


@pytest.mark.parametrize("interval", INTERVALS)
@pytest.mark.parametrize(
    "text",
    ["This is some prior text that has nothing to do with tool calling.", "This is not a tool call."],
)
def test_hermes_plain_text_is_forwarded(tokenizer, text, interval):
    result = both(tokenizer, text, interval)
    assert (result.content, result.tool_calls) == (text, [])


@pytest.mark.parametrize("interval", INTERVALS)
def test_hermes_call_between_tags_bug_19056(tokenizer, interval):
    text = '<tool_call>\n{"name": "final_answer", "arguments": {"trigger": true}}\n</tool_call>'
    result = both(tokenizer, text, interval)
    assert result.content is None
    assert [(c.function.name, c.function.arguments) for c in result.tool_calls] == [
        ("final_answer", '{"trigger": true}')
    ]


@pytest.mark.parametrize("interval", INTERVALS)
def test_hermes_call_until_eos(tokenizer, interval):
    text = '<tool_call>\n{"name": "final_answer", "arguments": {"trigger": true}}'
    result = both(tokenizer, text, interval)
    assert [(c.function.name, c.function.arguments) for c in result.tool_calls] == [
        ("final_answer", '{"trigger": true}')
    ]


@pytest.mark.parametrize("interval", INTERVALS)
def test_hermes_call_over_lines(tokenizer, interval):
    text = (
        '<tool_call>{"name": "get_current_temperature","arguments": {"location":'
        '"San Francisco, California, United States", "unit": "celsius"}}</tool_call>'
    )
    result = both(tokenizer, text, interval)
    assert calls_of(result) == [
        (
            "get_current_temperature",
            {"location": "San Francisco, California, United States", "unit": "celsius"},
        )
    ]


@pytest.mark.parametrize("interval", INTERVALS)
def test_hermes_content_then_call(tokenizer, interval):
    text = "Sure, let me check the weather." + call("get_weather", '{"city": "NYC"}')
    result = both(tokenizer, text, interval)
    assert result.content == "Sure, let me check the weather."
    assert calls_of(result) == [("get_weather", {"city": "NYC"})]


@pytest.mark.parametrize("interval", INTERVALS)
def test_hermes_two_calls_keep_their_order(tokenizer, interval):
    text = call("search", '{"q": "cats"}') + call("search", '{"q": "dogs"}')
    result = both(tokenizer, text, interval)
    assert calls_of(result) == [("search", {"q": "cats"}), ("search", {"q": "dogs"})]
    assert [c.id for c in result.tool_calls] == ["call_0", "call_1"]


def test_hermes_content_and_call_in_one_chunk():
    text = "Hi!" + call("f", '{"x": 1}')
    result = stream([text], enable_thinking=False)
    assert result.content == "Hi!"
    assert calls_of(result) == [("f", {"x": 1})]


def test_hermes_invalid_json_is_no_call():
    text = '<tool_call>\n{"name": "final_answer", "arguments": {"trigger": true}'
    result = parse(text, enable_thinking=False)
    assert (result.content, result.tool_calls) == (text, [])


@pytest.mark.parametrize("interval", INTERVALS)
@pytest.mark.parametrize(
    ("args_value", "expected"),
    [
        # serialised arguments are decoded once, never encoded twice
        ('{"param": "max_connections"}', {"param": "max_connections"}),
        # any other string stays a string, serialised as JSON
        ("hello", "hello"),
        ("{hello world}", "{hello world}"),
        ("[oops", "[oops"),
        ('{"a": 1} tail text', '{"a": 1} tail text'),
    ],
)
def test_hermes_string_arguments(tokenizer, args_value, expected, interval):
    text = "<tool_call>" + json.dumps({"name": "f", "arguments": args_value}) + "</tool_call>"
    result = both(tokenizer, text, interval)
    assert result.content is None
    assert calls_of(result) == [("f", expected)]
