import json

import pytest

from qwen3.chat import parse, render
from qwen3.chat.parse import FunctionCall, ParsedOutput, ToolCall


def numbered(index: int) -> str:
    return f"call_{index}"


def calls(*pairs: tuple[str, dict]) -> list[ToolCall]:
    return [
        ToolCall(numbered(i), FunctionCall(name, json.dumps(args, ensure_ascii=False)))
        for i, (name, args) in enumerate(pairs)
    ]


CALL_F = '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n</tool_call>'
CALL_G = '<tool_call>\n{"name": "g", "arguments": "{\\"y\\": \\"é\\"}"}\n</tool_call>'


@pytest.mark.parametrize(
    ("text", "enable_thinking", "expected"),
    [
        # thinking on, with and without the <think> that the model itself generates
        ("<think>\nplan\n</think>\n\nAnswer", True, ParsedOutput("plan", "Answer")),
        ("plan\n</think>\n\nAnswer", True, ParsedOutput("plan", "Answer")),
        # an empty think block (/no_think or the hard switch in the prompt) gives no reasoning
        ("<think>\n\n</think>\n\nAnswer", True, ParsedOutput(None, "Answer")),
        # a thought cut off by the length limit: all reasoning, no content
        ("<think>\nstill thinking", True, ParsedOutput("still thinking", None)),
        ("", True, ParsedOutput(None, None)),
        # thinking off: everything is content, tags included
        ("<think>\nx\n</think>\n\nAnswer", False, ParsedOutput(None, "<think>\nx\n</think>\n\nAnswer")),
        ("Answer\n", False, ParsedOutput(None, "Answer")),
        # only the first </think> ends the reasoning; only a leading <think> is dropped
        ("a</think>b</think>c", True, ParsedOutput("a", "b</think>c")),
        ("x<think>a</think>b", True, ParsedOutput("x<think>a", "b")),
        # only newlines are stripped, and only at the ends
        ("\n\n  r \n\n</think>\n\n  c \n\n", True, ParsedOutput("  r ", "  c ")),
        # tool calls after the reasoning; text between and around calls is content
        (
            f"<think>\nr\n</think>\n\n{CALL_F}\n{CALL_G}",
            True,
            ParsedOutput("r", None, calls(("f", {"x": 1}), ("g", {"y": "é"}))),
        ),
        (
            f"Let me look.\n\n{CALL_F}\nand more",
            False,
            ParsedOutput(None, "Let me look.\n\n\nand more", calls(("f", {"x": 1}))),
        ),
        # a tool call before any </think> ends the reasoning, which keeps its trailing newlines (as vLLM)
        (f"\nthinking\n{CALL_F}", True, ParsedOutput("thinking\n", None, calls(("f", {"x": 1})))),
        # ... unless a </think> follows: then the call was part of the reasoning
        (f"thinking\n{CALL_F}\n</think>\n\nok", True, ParsedOutput(f"thinking\n{CALL_F}", "ok")),
        # a missing final </tool_call> is tolerated
        (
            '<tool_call>\n{"name": "f", "arguments": {"x": 1}}\n',
            False,
            ParsedOutput(None, None, calls(("f", {"x": 1}))),
        ),
    ],
)
def test_rules(text, enable_thinking, expected):
    assert parse(text, enable_thinking, tool_call_id=numbered) == expected


@pytest.mark.parametrize(
    "block",
    [
        "<tool_call>\n{not json}\n</tool_call>",
        '<tool_call>\n{"arguments": {}}\n</tool_call>',  # no name
        '<tool_call>\n{"name": 3, "arguments": {}}\n</tool_call>',
        '<tool_call>\n{"name": "f"}\n</tool_call>',  # no arguments
        '<tool_call>\n{"name": "f", "arguments": [1]}\n</tool_call>',
        '<tool_call>\n["f", {}]\n</tool_call>',
        '<tool_call>\n{"name": "f", "arguments": {}} {"name": "g", "arguments": {}}\n</tool_call>',
        "<tool_call>\n{unterminated",
    ],
)
def test_invalid_calls_stay_in_the_content_verbatim(block):
    text = f"Before {block} after" if block.endswith("</tool_call>") else f"Before {block}"
    result = parse(text, enable_thinking=False)
    assert result.content == text
    assert result.tool_calls == []


def test_valid_and_invalid_calls_mixed():
    text = f"{CALL_F}\n<tool_call>\nbroken\n</tool_call>\n{CALL_G}"
    result = parse(text, enable_thinking=False, tool_call_id=numbered)
    assert [c.function.name for c in result.tool_calls] == ["f", "g"]
    assert result.content == "<tool_call>\nbroken\n</tool_call>"


def test_default_ids_are_unique_openai_style():
    result = parse(f"{CALL_F}\n{CALL_F}", enable_thinking=False)
    ids = [call.id for call in result.tool_calls]
    assert all(i.startswith("call_") and len(i) > 10 for i in ids) and len(set(ids)) == 2


def test_arguments_are_reserialised_like_the_template():
    result = parse('<tool_call>{"name":"f","arguments":{"city":"Zürich","n":[1,2]}}</tool_call>', False)
    assert result.tool_calls[0].function.arguments == '{"city": "Zürich", "n": [1, 2]}'


def test_parsed_message_renders_back_to_the_generated_text():
    prompt = [{"role": "user", "content": "q"}]
    generated = f'<think>\nr\n</think>\n\nI will call.\n{CALL_F}\n<tool_call>\n{{"name": "g", "arguments": {{"y": "é"}}}}\n</tool_call>'
    message = parse(generated, True).to_message()
    assert message["tool_calls"][1]["function"] == {"name": "g", "arguments": '{"y": "é"}'}
    assert (
        render([*prompt, message]) == render(prompt, add_generation_prompt=True) + generated + "<|im_end|>\n"
    )


def test_bad_arguments_name_the_argument_and_type():
    with pytest.raises(TypeError, match="text: must be a str, got NoneType"):
        parse(None)
    with pytest.raises(ValueError, match="enable_thinking: must be True or False, got str 'no'"):
        parse("x", enable_thinking="no")
    with pytest.raises(ValueError, match="tool_calls: must be True or False, got int 1"):
        parse("x", tool_calls=1)
