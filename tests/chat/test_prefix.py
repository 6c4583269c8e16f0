"""Prefix preservation: with ``prefix_preserving=True`` a multi-turn agent can reuse its KV cache every turn."""

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from qwen3.chat import parse, qwen3_template, render, render_jinja
from qwen3.chat.messages import to_json
from tests.chat.strategies import arguments_object, assistant_message, conversation, official_template, tools

OFFICIAL = official_template()

# Text as the model writes it in a canonical reply: no tags, no newlines at the ends.
reply_text = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="<"), max_size=20).map(
    lambda t: t.strip("\n")
)
call_name = st.from_regex(r"[a-z_][a-z0-9_]{0,8}", fullmatch=True)


@st.composite
def generated_reply(draw, thinking: bool) -> str:
    """What the model generates after the generation prompt, in the exact shape the template writes back."""
    content = draw(reply_text)
    text = f"<think>\n{draw(reply_text)}\n</think>\n\n" if thinking else ""
    text += content
    for index, (name, arguments) in enumerate(
        draw(st.lists(st.tuples(call_name, arguments_object), max_size=2))
    ):
        separator = "\n" if index > 0 or content else ""
        text += (
            f'{separator}<tool_call>\n{{"name": "{name}", "arguments": {to_json(arguments)}}}\n</tool_call>'
        )
    return text


def _cut_points(messages):
    """Lengths k at which a conversation can be cut: not inside a run of tool results (one merged user turn)."""
    return [
        k
        for k in range(1, len(messages) + 1)
        if k == len(messages) or not (messages[k - 1]["role"] == "tool" and messages[k]["role"] == "tool")
    ]


@settings(max_examples=150, deadline=None)
@given(messages=conversation(), tools=tools)
def test_every_rendering_is_a_prefix_of_the_next(messages, tools):
    full = render(messages, tools=tools, prefix_preserving=True)
    for k in _cut_points(messages):
        assert full.startswith(render(messages[:k], tools=tools, prefix_preserving=True))


@settings(max_examples=150, deadline=None)
@given(
    messages=conversation(),
    tools=tools,
    enable_thinking=st.sampled_from([None, True, False]),
    next_turn=st.sampled_from(["user", "tool"]),
    data=st.data(),
)
def test_prompt_plus_generated_reply_is_what_the_next_turn_renders(
    messages, tools, enable_thinking, next_turn, data
):
    thinking = enable_thinking is not False
    generated = data.draw(generated_reply(thinking))
    prompt = render(
        messages,
        tools=tools,
        add_generation_prompt=True,
        enable_thinking=enable_thinking,
        prefix_preserving=True,
    )
    reply = parse(generated, enable_thinking=thinking).to_message()
    after_reply = render([*messages, reply], tools=tools, prefix_preserving=True)
    # Token-in, token-out: the rendering of the parsed reply is exactly the prompt plus the generated text.
    assert after_reply == prompt + generated + "<|im_end|>\n"
    follow_up = {"role": next_turn, "content": "next"}
    assert render([*messages, reply, follow_up], tools=tools, prefix_preserving=True).startswith(after_reply)
    # Our own template gives the same bytes when asked for prefix preservation.
    ours = render_jinja(qwen3_template(), [*messages, reply, follow_up], tools=tools, prefix_preserving=True)
    assert ours == render([*messages, reply, follow_up], tools=tools, prefix_preserving=True)


def test_the_official_rendering_breaks_prefix_reuse():
    user = {"role": "user", "content": "Hi"}
    reply = {"role": "assistant", "content": "Hello", "reasoning_content": "greet"}
    nothink_reply = {"role": "assistant", "content": "Hello"}
    follow_up = {"role": "user", "content": "And?"}
    # Non-thinking (QwenLM/Qwen3#1826): the prompt ends in an empty think block that the next turn no longer has.
    prompt = render_jinja(OFFICIAL, [user], add_generation_prompt=True, enable_thinking=False)
    assert not render_jinja(OFFICIAL, [user, nothink_reply, follow_up]).startswith(prompt)
    # Thinking: the reply's think block disappears from the history once the next query arrives.
    after_reply = render_jinja(OFFICIAL, [user, reply])
    assert not render_jinja(OFFICIAL, [user, reply, follow_up]).startswith(after_reply)
    # Prefix-preserving rendering keeps both.
    prompt = render([user], add_generation_prompt=True, enable_thinking=False, prefix_preserving=True)
    assert render([user, nothink_reply, follow_up], prefix_preserving=True).startswith(prompt)
    after_reply = render([user, reply], prefix_preserving=True)
    assert render([user, reply, follow_up], prefix_preserving=True).startswith(after_reply)


@settings(max_examples=50, deadline=None)
@given(messages=conversation(), final=assistant_message())
def test_prefix_preserving_only_differs_in_the_think_blocks_of_history(messages, final):
    # When the only assistant turn is the last message and follows a query, both renderings agree.
    only_final = [m for m in messages if m["role"] != "assistant"] + [final]
    queries = [m for m in only_final if m["role"] == "user" and isinstance(m.get("content"), str)]
    assume(any(not m["content"].startswith("<tool_response>") for m in queries))
    assert render(only_final, prefix_preserving=True) == render(only_final)
