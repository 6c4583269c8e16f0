import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3.chat import StreamingParser, accumulate, parse

CALL = '<tool_call>\n{"name": "f", "arguments": {"x": "é"}}\n</tool_call>'
BAD = "<tool_call>\n{oops}\n</tool_call>"

# Outputs that put every rule at a chunk boundary; short enough for all pairs of split points.
OUTPUTS = [
    "<think>\nplan\n</think>\n\nAnswer",
    "plan\n</think>\n\nAnswer\n",
    "<think>\n\n</think>\n\nHi",
    "<thi",
    "<think>cut off </thi",
    "\n\n",
    "a</think>b</think>c",
    "x<think>a</think>b<think>",
    f"r\n</think>\n\n{CALL}",
    f"Text.\n{CALL}\n{CALL}\nmore",
    f"think {CALL}",
    f"think {CALL} </think>\n\nok",
    "think <tool_call>\n{oops</think>c",
    f"{BAD} b\n\n",
    '<tool_call>{"name": "f", "arguments": {}}',
    "<tool_call>{unterminated",
    "<<tool_call>></tool_call>>",
    "a\n\n<\n\n</\n\nb",
    "你好🙂\n</think>\n\n</tool_call>",
]


def ids(index):
    return f"call_{index}"


def stream(chunks, enable_thinking):
    parser = StreamingParser(enable_thinking, tool_call_id=ids)
    deltas = [delta for chunk in chunks for delta in parser.feed(chunk)]
    deltas += parser.finish()
    return deltas


@pytest.mark.parametrize("enable_thinking", [True, False])
@pytest.mark.parametrize("text", OUTPUTS)
def test_every_pair_of_split_points_gives_the_parse_result(text, enable_thinking):
    expected = parse(text, enable_thinking, tool_call_id=ids)
    n = len(text)
    for i in range(n + 1):
        for j in range(i, n + 1):
            deltas = stream([text[:i], text[i:j], text[j:]], enable_thinking)
            assert accumulate(deltas) == expected, (i, j)
    assert accumulate(stream(list(text), enable_thinking)) == expected


SHORT_CALL = '<tool_call>{"name": "f", "arguments": {}}</tool_call>'

# (output, window, enable_thinking): every one of the 2^(n-1) chunkings of the window (n <= 13 characters) is tried,
# with the text before and after it fed as one chunk each. A short output is its own window.
WINDOWS = [
    ("<think>\nhi\nb", "<think>\nhi\nb", True),  # <think> split anywhere, newlines around the reasoning
    ("<think>\nhi\nb", "<think>\nhi\nb", False),  # thinking off: all of it is content
    ("r\n</think>\nok", "r\n</think>\nok", True),  # </think> split anywhere
    ("r<tool_call>{}", "r<tool_call>{", True),  # a block with no </think> before it (held); not a call
    ("<tool_call>{x}</tool_call>", "}</tool_call>", False),  # invalid JSON stays content
    (f"r</think>{SHORT_CALL}\nok", "</think><tool", True),  # a valid call after </think>
    (f"r{SHORT_CALL}", "}</tool_call>", True),  # a valid call with no </think> before it
    (f"r{SHORT_CALL}</think>ok", "l></think>ok", True),  # a call inside a thought that is then closed
]


def chunkings(text: str):
    """All 2^(len(text) - 1) ways to cut a non-empty ``text`` into non-empty chunks."""
    for mask in range(1 << (len(text) - 1)):
        cuts = [0, *(i for i in range(1, len(text)) if mask >> (i - 1) & 1), len(text)]
        yield [text[a:b] for a, b in zip(cuts, cuts[1:])]


@pytest.mark.parametrize(("text", "window", "enable_thinking"), WINDOWS)
def test_every_chunking_of_a_window_gives_the_parse_result(text, window, enable_thinking):
    before, found, after = text.partition(window)
    assert found and len(window) <= 13
    expected = parse(text, enable_thinking, tool_call_id=ids)
    count = 0
    for chunks in chunkings(window):
        deltas = stream([before, *chunks, after], enable_thinking)
        assert accumulate(deltas) == expected, chunks
        count += 1
    assert count == 2 ** (len(window) - 1)


fragments = st.sampled_from(
    [
        "<think>",
        "</think>",
        "<tool_call>",
        "</tool_call>",
        "\n",
        "\n\n",
        CALL,
        BAD,
        '{"name": "g", "arguments": {}}',
        "<",
        "</",
        " ",
    ]
)
outputs = st.lists(st.one_of(fragments, st.text(max_size=6)), max_size=12).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=outputs, enable_thinking=st.booleans(), data=st.data())
def test_random_chunkings_give_the_parse_result(text, enable_thinking, data):
    cuts = sorted(data.draw(st.lists(st.integers(0, len(text)), max_size=8)))
    chunks = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)])]
    deltas = stream(chunks, enable_thinking)
    assert accumulate(deltas) == parse(text, enable_thinking, tool_call_id=ids)
    assert all(d.reasoning_content != "" and d.content != "" for d in deltas)


def test_text_streams_without_waiting_for_more_than_a_possible_tag():
    parser = StreamingParser(enable_thinking=True)
    assert parser.feed("<think>\nLet me")[0].reasoning_content == "Let me"
    assert parser.feed(" see </thi")[0].reasoning_content == " see "
    out = parser.feed("nk>\n\nHello <tool")
    assert [d.content for d in out] == ["Hello "]
    out = parser.feed('_call>{"name": "f", "arguments": {}}')
    assert out == []  # inside a tool call block: wait for </tool_call>
    out = parser.feed("</tool_call>")
    assert out[0].tool_calls[0].function.arguments == "{}" and out[0].tool_calls[0].index == 0


def test_trailing_newlines_are_held_until_text_follows():
    parser = StreamingParser(enable_thinking=False)
    assert parser.feed("\n\nA\n\n")[0].content == "A"
    assert parser.feed("B")[0].content == "\n\nB"
    assert parser.feed("\n") == []
    assert parser.finish() == []


def test_a_tool_call_inside_an_unclosed_thought_is_held_to_the_end():
    parser = StreamingParser(enable_thinking=True, tool_call_id=ids)
    assert parser.feed("thinking ")[0].reasoning_content == "thinking "
    assert parser.feed(CALL) == []
    out = parser.finish()
    assert out[0].tool_calls[0].function.name == "f"


def test_misuse_is_an_error():
    parser = StreamingParser()
    parser.finish()
    with pytest.raises(RuntimeError):
        parser.feed("x")
    with pytest.raises(RuntimeError):
        parser.finish()
    with pytest.raises(ValueError, match="tokenizer"):
        StreamingParser().feed_tokens([1])


def test_bad_arguments_name_the_argument_and_type():
    with pytest.raises(TypeError, match="StreamingParser.feed: text: must be a str, got NoneType"):
        StreamingParser().feed(None)
    with pytest.raises(TypeError, match="got list"):
        StreamingParser().feed([1, 2])
    with pytest.raises(ValueError, match="enable_thinking: must be True or False, got str 'no'"):
        StreamingParser(enable_thinking="no")
    with pytest.raises(ValueError, match="tool_calls: must be True or False, got NoneType"):
        StreamingParser(tool_calls=None)


def test_token_deltas(tokenizer):
    text = f"<think>\n你好 plan 🙂\n</think>\n\nOK {CALL}"
    token_ids = tokenizer.encode(text) + [tokenizer.im_end_id]
    expected = parse(text, True, tool_call_id=ids)
    for size in (1, 2, 3):
        parser = StreamingParser(True, tokenizer=tokenizer, tool_call_id=ids)
        deltas = [
            d for i in range(0, len(token_ids), size) for d in parser.feed_tokens(token_ids[i : i + size])
        ]
        assert accumulate(deltas + parser.finish()) == expected
