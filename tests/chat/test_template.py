import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3.chat import qwen3_template, render, render_jinja
from tests.chat.strategies import conversation, for_official_template, official_template, tools

OFFICIAL = official_template()
OURS = qwen3_template()

SYSTEM = {"role": "system", "content": "You are a helpful assistant."}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


# -- the official template's renderings (run once with jinja2), spelled out ----------------------------------


def test_generation_prompt_thinking_and_hard_switch():
    messages = [SYSTEM, {"role": "user", "content": "Hi"}]
    head = "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
    assert render(messages, add_generation_prompt=True) == head + "<|im_start|>assistant\n"
    assert (
        render(messages, add_generation_prompt=True, enable_thinking=True) == head + "<|im_start|>assistant\n"
    )
    assert (
        render(messages, add_generation_prompt=True, enable_thinking=False)
        == head + "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )


def test_final_turn_keeps_thinking_and_earlier_turns_lose_it():
    final = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "<think>\nreasoning A\n</think>\n\nAnswer A"},
    ]
    assert render(final) == (
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n<think>\nreasoning A\n</think>\n\nAnswer A<|im_end|>\n"
    )
    no_reasoning = [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]
    assert render(no_reasoning).endswith("<|im_start|>assistant\n<think>\n\n</think>\n\nHello<|im_end|>\n")
    history = [SYSTEM, *final, {"role": "user", "content": "Next /no_think"}]
    assert render(history, add_generation_prompt=True) == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\nAnswer A<|im_end|>\n<|im_start|>user\nNext /no_think<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


def test_tools_header_tool_call_and_merged_tool_results():
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": None,
            "reasoning_content": "need tool",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": {"city": "Paris"}},
                },
                {"name": "get_weather", "arguments": '{"city": "Rome"}'},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 20}'},
        {"role": "tool", "content": '{"temp": 25}'},
    ]
    text = render(messages, tools=[WEATHER_TOOL], add_generation_prompt=True)
    assert text.startswith(
        "<|im_start|>system\n# Tools\n\nYou may call one or more functions to assist with the user query.\n\n"
        "You are provided with function signatures within <tools></tools> XML tags:\n<tools>\n"
        '{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", '
        '"properties": {"city": {"type": "string"}}}}}\n</tools>\n\n'
        "For each function call, return a json object with function name and arguments within "
        '<tool_call></tool_call> XML tags:\n<tool_call>\n{"name": <function-name>, "arguments": '
        "<args-json-object>}\n</tool_call><|im_end|>\n"
    )
    assert text.endswith(
        "<|im_start|>assistant\n<think>\nneed tool\n</think>\n\n"
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>\n'
        '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call><|im_end|>\n'
        '<|im_start|>user\n<tool_response>\n{"temp": 20}\n</tool_response>\n'
        '<tool_response>\n{"temp": 25}\n</tool_response><|im_end|>\n<|im_start|>assistant\n'
    )
    assert text == render_jinja(OFFICIAL, messages, tools=[WEATHER_TOOL], add_generation_prompt=True)


def test_system_content_goes_before_the_tools_block():
    text = render([SYSTEM, {"role": "user", "content": "x"}], tools=[WEATHER_TOOL])
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.\n\n# Tools\n\n")


def test_wrapped_tool_response_in_a_user_turn_is_not_a_query():
    messages = [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "content": "",
            "reasoning_content": "step 1",
            "tool_calls": [{"name": "f", "arguments": {}}],
        },
        {"role": "user", "content": "<tool_response>\nok\n</tool_response>"},
        {"role": "assistant", "content": "done", "reasoning_content": "step 2"},
    ]
    text = render(messages)
    # Both steps answer the same query, so both keep their thinking.
    assert "<think>\nstep 1\n</think>" in text and "<think>\nstep 2\n</think>" in text
    assert text == render_jinja(OFFICIAL, messages)


def test_newline_only_reasoning_of_an_intermediate_step():
    # A reasoning field of "\n" is non-empty, so the step keeps a (blank) think block; an inline "<think>\n\n</think>"
    # leaves an empty reasoning, so that step is rendered without one.
    step = {"tool_calls": [{"name": "f", "arguments": {}}]}
    for assistant, kept in (
        ({"content": "x", "reasoning_content": "\n", **step}, True),
        ({"content": "<think>\n\n</think>\n\nx", **step}, False),
    ):
        messages = [
            {"role": "user", "content": "q"},
            {"role": "assistant", **assistant},
            {"role": "tool", "content": "r"},
        ]
        text = render(messages)
        assert ("<|im_start|>assistant\n<think>\n\n</think>\n\nx\n<tool_call>" in text) is kept
        assert text == render_jinja(OFFICIAL, messages) == render_jinja(OURS, messages)


# -- content given as None or as text parts ------------------------------------------------------


def test_text_parts_are_joined_with_newlines_like_vllm():
    parts = [{"type": "text", "text": "first"}, {"type": "text", "text": "second"}]
    text = render([{"role": "user", "content": parts}])
    assert text == "<|im_start|>user\nfirst\nsecond<|im_end|>\n"
    # The official template silently renders a list content as "" (the text would be lost).
    assert render_jinja(OFFICIAL, [{"role": "user", "content": parts}]) == "<|im_start|>user\n<|im_end|>\n"


def test_none_content_renders_empty_and_a_contentless_user_is_not_a_query():
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a", "reasoning_content": "r"},
        {"role": "user", "content": None},
        {"role": "assistant", "content": "b"},
    ]
    text = render(messages)
    assert "<|im_start|>user\n<|im_end|>\n" in text
    assert "<think>\nr\n</think>" in text  # the last query is still the first user message
    assert text == render_jinja(OFFICIAL, messages)


def test_contentless_leading_system_renders_empty_where_the_official_template_fails():
    messages = [{"role": "system", "content": None}, {"role": "user", "content": "x"}]
    assert render(messages) == "<|im_start|>system\n<|im_end|>\n<|im_start|>user\nx<|im_end|>\n"
    with pytest.raises(Exception):  # noqa: B017 - jinja2's UndefinedError
        render_jinja(OFFICIAL, messages)


def test_reasoning_aliases():
    base = [{"role": "user", "content": "q"}]
    expected = render(
        [*base, {"role": "assistant", "content": "a", "reasoning_content": "r"}], add_generation_prompt=False
    )
    for name in ("reasoning", "thinking"):
        assert render([*base, {"role": "assistant", "content": "a", name: "r"}]) == expected
        assert render_jinja(OURS, [*base, {"role": "assistant", "content": "a", name: "r"}]) == expected


def test_reasoning_field_wins_over_inline_think_and_keeps_content_verbatim():
    messages = [
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "<think>x</think>y", "reasoning_content": "r"},
    ]
    assert render(messages).endswith("<think>\nr\n</think>\n\n<think>x</think>y<|im_end|>\n")
    assert render(messages) == render_jinja(OFFICIAL, messages)


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("messages", "message"),
    [
        ([], "the conversation is empty"),
        ([{"role": "developer", "content": "x"}], r"messages\[0\]\.role: unknown role 'developer'"),
        ([{"role": "user", "content": 3}], r"messages\[0\]\.content: content must be"),
        ([{"role": "user", "content": [{"type": "image_url"}]}], r"messages\[0\]\.content\[0\]\.type"),
        ([{"role": "user", "content": [{"type": "text", "text": 1}]}], r"messages\[0\]\.content\[0\]\.text"),
        (
            [
                {"role": "user", "content": "x"},
                {"role": "assistant", "tool_calls": [{"function": {"arguments": {}}}]},
            ],
            r"messages\[1\]\.tool_calls\[0\]\.function\.name",
        ),
        (
            [{"role": "assistant", "tool_calls": [{"name": "f", "arguments": 3}]}],
            r"messages\[0\]\.tool_calls\[0\]\.arguments",
        ),
        ([{"role": "assistant", "reasoning_content": ["x"]}], r"messages\[0\]\.reasoning_content"),
        (["hello"], r"messages\[0\]: a message must be a dict"),
    ],
)
def test_malformed_messages_name_the_index_and_field(messages, message):
    with pytest.raises(ValueError, match=message):
        render(messages)


def test_malformed_tools_are_rejected():
    with pytest.raises(ValueError, match=r"tools\[1\]"):
        render([{"role": "user", "content": "x"}], tools=[WEATHER_TOOL, "get_weather"])


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"enable_thinking": "false"}, "enable_thinking: must be True, False or None, got str 'false'"),
        ({"enable_thinking": 0}, "enable_thinking: must be True, False or None, got int 0"),
        ({"add_generation_prompt": "yes"}, "add_generation_prompt: must be True or False, got str 'yes'"),
        ({"prefix_preserving": None}, "prefix_preserving: must be True or False, got NoneType None"),
    ],
)
def test_flags_that_are_not_bools_are_rejected(flags, message):
    with pytest.raises(ValueError, match=message):
        render([{"role": "user", "content": "x"}], **flags)


def test_our_template_raises_on_unknown_roles_too():
    with pytest.raises(Exception, match="unknown role"):  # noqa: B017 - jinja2's TemplateError
        render_jinja(OURS, [{"role": "user", "content": "x"}, {"role": "developer", "content": "y"}])


# -- byte identity on random conversations -----------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    messages=conversation(),
    tools=tools,
    add_generation_prompt=st.booleans(),
    enable_thinking=st.sampled_from([None, True, False]),
)
def test_render_matches_the_official_template_byte_for_byte(
    messages, tools, add_generation_prompt, enable_thinking
):
    kwargs = {"tools": tools, "add_generation_prompt": add_generation_prompt}
    if enable_thinking is not None:
        kwargs["enable_thinking"] = enable_thinking
    official = render_jinja(OFFICIAL, for_official_template(messages), **kwargs)
    assert (
        render(
            messages,
            enable_thinking=enable_thinking,
            tools=tools,
            add_generation_prompt=add_generation_prompt,
        )
        == official
    )
    assert render_jinja(OURS, messages, **kwargs) == official


@settings(max_examples=100, deadline=None)
@given(messages=conversation(), tools=tools, add_generation_prompt=st.booleans())
def test_our_template_matches_render_in_prefix_preserving_mode(messages, tools, add_generation_prompt):
    expected = render(
        messages, tools=tools, add_generation_prompt=add_generation_prompt, prefix_preserving=True
    )
    assert (
        render_jinja(
            OURS, messages, tools=tools, add_generation_prompt=add_generation_prompt, prefix_preserving=True
        )
        == expected
    )
