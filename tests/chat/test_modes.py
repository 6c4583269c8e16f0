import pytest

from qwen3.chat import resolve_thinking
from qwen3.chat.modes import last_soft_switch


def user(text):
    return {"role": "user", "content": text}


def test_default_is_thinking():
    assert resolve_thinking([user("Hi")]) is True
    assert resolve_thinking([user("Hi")], enable_thinking=True) is True


def test_hard_switch_overrides_every_flag():
    assert resolve_thinking([user("Hi /think")], enable_thinking=False) is False


def test_last_flag_wins_across_messages_and_within_a_message():
    assert resolve_thinking([user("Hi /no_think")]) is False
    assert (
        resolve_thinking(
            [user("Hi /no_think"), {"role": "assistant", "content": "a"}, user("Really? /think")]
        )
        is True
    )
    assert resolve_thinking([user("/think first, then /no_think")]) is False
    assert resolve_thinking([{"role": "system", "content": "Be brief. /no_think"}, user("Hi")]) is False
    # A later message without a flag does not reset the mode.
    assert resolve_thinking([user("a /no_think"), {"role": "assistant", "content": "b"}, user("c")]) is False
    # The flag in enable_thinking=True mode still works (the model card's soft switch).
    assert resolve_thinking([user("Hi /no_think")], enable_thinking=True) is False


def test_assistant_and_tool_messages_are_not_instructions():
    assert resolve_thinking([user("q"), {"role": "assistant", "content": "/no_think"}]) is True
    assert resolve_thinking([user("q"), {"role": "tool", "content": "/no_think"}]) is True


def test_text_parts_and_missing_content():
    parts = [{"type": "text", "text": "q"}, {"type": "text", "text": "/no_think"}]
    assert resolve_thinking([user(parts), user(None)]) is False


@pytest.mark.parametrize(
    ("text", "flag"),
    [
        ("Really? /think", True),
        ("/no_think", False),
        ("Answer /no_think.", False),
        ("(/think)", True),
        ("line\n/no_think\n", False),
        ("use /thinking here", None),
        ("/think_more", None),
        ("/no_thinking", None),
        ("src/think", None),
        ("see /think/x", None),
        ("//think", None),
        ("/nothink", None),
        ("no flag at all", None),
    ],
)
def test_what_counts_as_a_flag(text, flag):
    assert last_soft_switch(text) is flag


def test_bad_enable_thinking():
    with pytest.raises(ValueError, match="enable_thinking"):
        resolve_thinking([user("x")], enable_thinking="no")
