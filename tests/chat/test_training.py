import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3.chat import expand_turns, render, render_segments, tokenize_conversation
from qwen3.chat.messages import normalize_messages
from qwen3.chat.template import last_query_index
from tests.chat.strategies import conversation, tools

CONVERSATION = [
    {"role": "system", "content": "Be helpful."},
    {"role": "user", "content": "2+2?"},
    {"role": "assistant", "content": "<think>\nadd\n</think>\n\n4"},
    {"role": "user", "content": "Weather in Paris? /no_think"},
    {"role": "assistant", "content": "", "tool_calls": [{"name": "weather", "arguments": {"city": "Paris"}}]},
    {"role": "tool", "content": "20C"},
    {"role": "assistant", "content": "It is 20C.", "reasoning_content": "tool said 20C"},
]


def runs(tokenizer, result):
    """The decoded text of each maximal run of masked tokens."""
    texts, current = [], []
    for token, masked in zip([*result.input_ids, None], [*result.assistant_mask, False]):
        if masked:
            current.append(token)
        elif current:
            texts.append(tokenizer.decode(current))
            current = []
    return texts


def tokenized_form(tokenizer, text):
    """``text`` as tokens give it back: the tokenizer NFC-normalises (e.g. "H" + U+0323 -> "\u1e24")."""
    return tokenizer.decode(tokenizer.encode(text))


def test_mask_of_a_turn_that_is_not_nfc(tokenizer):
    messages = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "<think></think>H\u0323"}]
    result = tokenize_conversation(messages, tokenizer)
    assert runs(tokenizer, result) == ["<think>\n\n</think>\n\n\u1e24<|im_end|>"]


def test_final_trains_the_turns_after_the_last_query(tokenizer):
    result = tokenize_conversation(CONVERSATION, tokenizer)
    assert result.input_ids == tokenizer.encode(render(CONVERSATION))
    assert runs(tokenizer, result) == [
        '<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "<think>\ntool said 20C\n</think>\n\nIt is 20C.<|im_end|>",
    ]


def test_all_trains_every_turn_as_rendered(tokenizer):
    result = tokenize_conversation(CONVERSATION, tokenizer, train_on="all")
    assert runs(tokenizer, result)[0] == "4<|im_end|>"  # the first answer lost its thinking in the rendering
    assert len(runs(tokenizer, result)) == 3


def test_prefix_preserving_keeps_every_think_block(tokenizer):
    result = tokenize_conversation(CONVERSATION, tokenizer, train_on="all", prefix_preserving=True)
    assert result.input_ids == tokenizer.encode(render(CONVERSATION, prefix_preserving=True))
    assert runs(tokenizer, result) == [
        "<think>\nadd\n</think>\n\n4<|im_end|>",
        '<think>\n\n</think>\n\n<tool_call>\n{"name": "weather", "arguments": {"city": "Paris"}}\n</tool_call><|im_end|>',
        "<think>\ntool said 20C\n</think>\n\nIt is 20C.<|im_end|>",
    ]


def test_headers_and_the_newline_after_im_end_are_not_trained(tokenizer):
    result = tokenize_conversation(CONVERSATION[:3], tokenizer)
    masked = [t for t, m in zip(result.input_ids, result.assistant_mask) if m]
    assert masked[0] == tokenizer.think_start_id and masked[-1] == tokenizer.im_end_id
    end = result.input_ids.index(tokenizer.im_end_id, result.input_ids.index(tokenizer.think_start_id))
    assert result.input_ids[end + 1 :] == tokenizer.encode("\n") and not result.assistant_mask[end + 1]
    header = result.input_ids.index(tokenizer.think_start_id) - 1
    assert tokenizer.decode(result.input_ids[header - 2 : header + 1]) == "<|im_start|>assistant\n"
    assert not any(result.assistant_mask[header - 2 : header + 1])


def test_expand_turns_makes_every_turn_a_final_turn(tokenizer):
    examples = expand_turns(CONVERSATION)
    assert [len(example) for example in examples] == [3, 5, 7]
    first = tokenize_conversation(examples[0], tokenizer)
    assert runs(tokenizer, first) == ["<think>\nadd\n</think>\n\n4<|im_end|>"]


def test_bad_arguments(tokenizer):
    with pytest.raises(ValueError, match="train_on"):
        tokenize_conversation(CONVERSATION, tokenizer, train_on="last")
    with pytest.raises(ValueError, match="no assistant turn to train on"):
        tokenize_conversation(CONVERSATION[:2], tokenizer)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    messages=conversation(),
    tools=tools,
    train_on=st.sampled_from(["final", "all"]),
    prefix_preserving=st.booleans(),
)
def test_ids_are_those_of_the_rendering_and_the_mask_covers_each_target_turn(
    tokenizer, messages, tools, train_on, prefix_preserving
):
    normalized = normalize_messages(messages)
    first = last_query_index(normalized) + 1 if train_on == "final" else 0
    targets = [
        s.text
        for s in render_segments(messages, tools, prefix_preserving=prefix_preserving)
        if s.assistant and s.message_index >= first
    ]
    if not targets:
        with pytest.raises(ValueError):
            tokenize_conversation(
                messages, tokenizer, tools=tools, train_on=train_on, prefix_preserving=prefix_preserving
            )
        return
    result = tokenize_conversation(
        messages, tokenizer, tools=tools, train_on=train_on, prefix_preserving=prefix_preserving
    )
    assert result.input_ids == tokenizer.encode(
        render(messages, tools=tools, prefix_preserving=prefix_preserving)
    )
    decoded = runs(tokenizer, result)
    assert len(decoded) == len(targets)
    for text, target in zip(decoded, (tokenized_form(tokenizer, t) for t in targets)):
        # Exact when the turn starts with its think block (a token boundary); a turn rendered without one may
        # share its first token with the header's "\n" (see docs/chat.md), so only its end is certain.
        if prefix_preserving or target.startswith("<think>"):
            assert text == target
        else:
            assert target.endswith(text) and text.endswith("<|im_end|>")
