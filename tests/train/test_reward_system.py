"""Rule rewards on hand-written replies: each passes and fails where it should."""

from __future__ import annotations

import pytest

from qwen3.eval import Reply
from qwen3.train.reward_system import (
    RewardMix,
    RewardResult,
    format_reward,
    length_reward,
    tool_call_reward,
)
from qwen3.world import Item


def item(content="What is 2+3?", family="reasoning", reference=None, tools=None, enable_thinking=None, **kw):
    return Item(family, "x", "train", [{"role": "user", "content": content}], reference or {}, tools=tools,
                enable_thinking=enable_thinking, **kw)  # fmt: skip


THOUGHT = "<think>\nadd them\n</think>\n\nAnswer: 5"
EMPTY = "<think>\n\n</think>\n\nAnswer: 5"


@pytest.mark.parametrize(
    ("content", "enable_thinking", "raw", "score", "why"),
    [
        ("2+3?", None, THOUGHT, 1.0, "well formed"),
        ("2+3? /think", None, THOUGHT, 1.0, "well formed"),
        ("2+3? /no_think", None, EMPTY, 1.0, "no_think obeyed"),
        ("2+3? /no_think", None, THOUGHT, 0.0, "holds a thought"),
        ("2+3?", None, EMPTY, 0.0, "empty"),
        ("2+3?", None, "Answer: 5", 0.0, "does not start with <think>"),
        ("2+3?", None, "<think>\na\n</think>\n\n<think>b</think>Answer: 5", 0.0, "exactly one"),
        ("2+3?", None, "<think>\na\n</think>\n\nAnswer: 5</think>", 0.0, "exactly one"),
        ("2+3?", None, "<think>\nthinking forever", 0.0, "exactly one"),
        (
            "2+3?",
            None,
            '<think>\n<tool_call>{"name": "f"}</tool_call>\n</think>\n\nok',
            0.0,
            "inside the think",
        ),
        ("2+3?", False, "Answer: 5", 1.0, "no_think obeyed"),
        ("2+3? /think", False, "Answer: 5", 1.0, "no_think obeyed"),  # the hard switch beats the soft flag
        ("2+3?", False, THOUGHT, 0.0, "the prompt closed the thought"),
        # The hard switch on (enable_thinking=True) leaves the soft flags in charge; without one it thinks.
        ("2+3?", True, THOUGHT, 1.0, "mode think obeyed"),
        ("2+3?", True, EMPTY, 0.0, "the think block is empty"),
        ("2+3? /no_think", True, EMPTY, 1.0, "no_think obeyed"),
        ("2+3? /no_think", True, THOUGHT, 0.0, "holds a thought"),
    ],
)
def test_format_reward(content, enable_thinking, raw, score, why):
    query = item(content, enable_thinking=enable_thinking)
    result = format_reward(query, Reply.from_text(raw, enable_thinking=enable_thinking is not False))
    assert result.score == score and why in result.reason


def test_format_follows_the_last_flag_of_a_multi_turn_dialogue():
    messages = [
        {"role": "user", "content": "hi /no_think"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "now think about 2+3 /think"},
    ]
    query = Item("thinkfollow", "t", "train", messages, {"mode": "think"})
    assert format_reward(query, Reply.from_text(THOUGHT)).score == 1.0
    assert format_reward(query, Reply.from_text(EMPTY)).score == 0.0


def test_length_reward_scores_the_distance_to_the_target():
    query = item(family="lengthctrl", reference={"target": 10, "unit": "words"})
    assert (
        length_reward(query, Reply.from_text(EMPTY.replace("Answer: 5", " ".join(["w"] * 10)))).score == 1.0
    )
    half = length_reward(query, Reply.from_text(EMPTY.replace("Answer: 5", " ".join(["w"] * 15))))
    assert half.score == pytest.approx(0.5) and "15 words" in half.reason
    assert length_reward(query, Reply.from_text(EMPTY.replace("Answer: 5", "w " * 40))).score == 0.0
    with pytest.raises(ValueError, match="positive int"):
        length_reward(item(reference={"target": 0}), Reply.from_text(EMPTY))


CALC = {"type": "function", "function": {"name": "calculator", "description": "evaluate", "parameters": {
    "type": "object", "properties": {"expression": {"type": "string"}, "precision": {"type": "integer"},
                                     "mode": {"type": "string", "enum": ["exact", "float"]}},
    "required": ["expression"], "additionalProperties": False}}}  # fmt: skip


def call(arguments: str, name: str = "calculator") -> str:
    return f'<think>\nuse the tool\n</think>\n\n<tool_call>\n{{"name": "{name}", "arguments": {arguments}}}\n</tool_call>'


@pytest.mark.parametrize(
    ("raw", "score", "why"),
    [
        (call('{"expression": "2+3"}'), 1.0, "1 valid"),
        (call('{"expression": "2+3", "precision": 2, "mode": "exact"}'), 1.0, "1 valid"),
        (EMPTY, 1.0, "none made"),
        (call('{"expression": "2+3"}', name="search"), 0.0, "not offered"),
        (call("{}"), 0.0, "calculator.expression is required"),
        (call('{"expression": 5}'), 0.0, "calculator.expression: 5 is not of type 'string'"),
        (call('{"expression": "1", "precision": true}'), 0.0, "is not of type 'integer'"),
        (call('{"expression": "1", "mode": "fuzzy"}'), 0.0, "is not one of"),
        (call('{"expression": "1", "x": 1}'), 0.0, "calculator.x is not a parameter"),
    ],
)
def test_tool_call_reward(raw, score, why):
    result = tool_call_reward(item(family="tooluse", tools=[CALC]), Reply.from_text(raw))
    assert result.score == score and why in result.reason


def test_mix_weights_the_named_rewards_per_family():
    def half(item, reply):
        return RewardResult(0.5, "half")

    mix = RewardMix({"reasoning": {"format": 3.0, "half": 1.0}}, rewards={"half": half})
    mixed = mix(item(), Reply.from_text(THOUGHT))
    assert mixed.score == pytest.approx((3 * 1.0 + 1 * 0.5) / 4)
    assert set(mixed.parts) == {"format", "half"} and "format=1.00" in mixed.reason
    with pytest.raises(ValueError, match="no reward mix for task family 'ifeval'"):
        mix(item(family="ifeval"), Reply.from_text(THOUGHT))
    with pytest.raises(ValueError, match="unknown reward 'nope'"):
        RewardMix({"reasoning": {"nope": 1.0}})
    with pytest.raises(ValueError, match="sum to 0"):
        RewardMix({"reasoning": {"format": 0.0}})


def test_a_score_outside_0_1_is_refused():
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        RewardResult(1.5, "too much")


def test_answer_reward_uses_the_eval_verifiers():
    from qwen3.train.reward_system import answer_reward

    query = item(reference={"answer": "5"})
    assert answer_reward(query, Reply.from_text(THOUGHT)).score == 1.0
    wrong = answer_reward(query, Reply.from_text(THOUGHT.replace("5", "6")))
    assert wrong.score == 0.0 and "expected '5'" in wrong.reason
    false_premise = item("Why is the moon made of cheese?", family="counterfact", reference={
        "false_premise": True, "premise": "the moon is made of cheese", "truth": "the moon is rock"})  # fmt: skip
    mix = RewardMix({"counterfact": {"format": 0.2, "answer": 0.8}})
    rejected = mix(
        false_premise, Reply.from_text("<think>\nhm\n</think>\n\nThe premise is false: the moon is rock.")
    )
    hallucinated = mix(false_premise, Reply.from_text("<think>\nhm\n</think>\n\nBecause of the cows."))
    assert rejected.score == pytest.approx(1.0) and hallucinated.score == pytest.approx(0.2)


def test_constraints_reward_on_world_items():
    from qwen3.train.reward_system import constraints_reward
    from qwen3.world import generate

    for query in generate("ifeval", "train", 6, seed=3):
        ideal = Reply.from_text(f"<think>\nplan\n</think>\n\n{query.direct}")
        assert constraints_reward(query, ideal).score == 1.0, query.reference
    query = generate("ifeval", "train", 1, seed=3)[0]
    bad = constraints_reward(query, Reply.from_text("<think>\nx\n</think>\n\n"))
    assert bad.score < 1.0 and "failed" in bad.reason
