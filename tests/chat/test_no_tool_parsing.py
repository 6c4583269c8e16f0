"""``tool_calls=False``: no tools were offered, so ``<tool_call>`` is ordinary text (vLLM without a tool parser)."""

import pytest

from qwen3.chat import StreamingParser, accumulate, parse
from tests.chat.test_streaming import CALL, OUTPUTS, ids


def stream(chunks, enable_thinking):
    parser = StreamingParser(enable_thinking, tool_call_id=ids, tool_calls=False)
    deltas = [delta for chunk in chunks for delta in parser.feed(chunk)]
    return deltas + parser.finish()


def test_calls_stay_verbatim_in_the_content():
    parsed = parse(f"<think>\nr\n</think>\n\nText {CALL} more", tool_calls=False)
    assert parsed.reasoning_content == "r"
    assert parsed.content == f"Text {CALL} more"
    assert parsed.tool_calls == []


def test_a_call_does_not_end_the_reasoning():
    parsed = parse(f"thinking {CALL}", tool_calls=False)
    assert parsed.reasoning_content == f"thinking {CALL}" and parsed.content is None
    assert parse(f"thinking {CALL}").tool_calls  # with tool parsing on, the call ends the thought


@pytest.mark.parametrize("enable_thinking", [True, False])
@pytest.mark.parametrize("text", OUTPUTS)
def test_every_pair_of_split_points_gives_the_parse_result(text, enable_thinking):
    expected = parse(text, enable_thinking, tool_call_id=ids, tool_calls=False)
    assert expected.tool_calls == []
    n = len(text)
    for i in range(n + 1):
        for j in range(i, n + 1):
            deltas = stream([text[:i], text[i:j], text[j:]], enable_thinking)
            assert accumulate(deltas) == expected, (i, j)


def test_content_is_not_held_back_at_a_partial_tool_call_tag():
    parser = StreamingParser(enable_thinking=False, tool_calls=False)
    assert parser.feed("Hello <tool")[0].content == "Hello <tool"
