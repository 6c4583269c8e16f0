"""GRPO's reward functions on hand-made replies: the task world's grader in each mode, answer matching, format
and length rewards, weighting, and the built-in digits task."""

from __future__ import annotations

import pytest

from qwen3.train.grpo import digits_items
from qwen3.train.rewards import REWARDS, is_correct, resolve_rewards, weighted_reward
from qwen3.train.rollout import Rollout
from qwen3.world.items import Item

ITEM = Item(family="reasoning", id="r0", split="train", messages=[{"role": "user", "content": "17 x 23?"}],
            reference={"answer": "391"})  # fmt: skip


def rollout(
    text: str, thinking: bool = True, finish_reason: str = "stop", content: str | None = None
) -> Rollout:
    return Rollout(query=0, sample=0, prompt_ids=[1], token_ids=[2, 3], logprobs=[0.0, 0.0], forced=[False] * 2,
                   text=text, content=content, reasoning=None, finish_reason=finish_reason,
                   thinking=thinking)  # fmt: skip


def test_the_verifier_grades_the_answer_after_the_thought():
    right = rollout("<think>\n17 x 23 = 340 + 51</think>\n\nSo the product is:\nAnswer: 391")
    wrong = rollout("<think>\nguess</think>\n\nAnswer: 392")
    unclosed = rollout("<think>\n17 x 23 ... Answer: 391")  # the answer is inside a thought that never ended
    assert REWARDS["verifier"](ITEM, right) == 1.0 and is_correct(ITEM, right)
    assert REWARDS["verifier"](ITEM, wrong) == 0.0 and not is_correct(ITEM, wrong)
    assert REWARDS["verifier"](ITEM, unclosed) == 0.0


def test_a_non_thinking_reply_is_read_as_content():
    direct = rollout("Answer: 391", thinking=False)
    assert REWARDS["verifier"](ITEM, direct) == 1.0
    assert REWARDS["answer_match"](ITEM, direct) == 1.0
    assert (
        REWARDS["answer_match"](ITEM, rollout("Answer: 391.0", thinking=False)) == 1.0
    )  # numeric equivalence


def test_format_and_length_rewards():
    assert REWARDS["thought_closed"](ITEM, rollout("<think>\nabc</think>\n\nx")) == 1.0
    assert REWARDS["thought_closed"](ITEM, rollout("<think>\nabc")) == 0.0
    assert REWARDS["not_truncated"](ITEM, rollout("x", finish_reason="length")) == 0.0


def test_weighted_sum_and_unknown_names():
    reward = weighted_reward(resolve_rewards(["verifier", "thought_closed"]), [1.0, 0.25])
    assert reward(ITEM, rollout("<think>\n.</think>\n\nAnswer: 391")) == 1.25
    assert reward(ITEM, rollout("<think>\n.")) == 0.0
    custom = weighted_reward(resolve_rewards([lambda item, r: len(r.text)]))
    assert custom(ITEM, rollout("abcd")) == 4.0
    with pytest.raises(ValueError, match="unknown reward function 'nope'"):
        resolve_rewards(["nope"])
    with pytest.raises(ValueError, match="2 reward functions but 1 weights"):
        weighted_reward(resolve_rewards(["verifier", "digits_only"]), [1.0])


def test_the_digits_task():
    items = digits_items(6, "train")
    assert len({item.messages[0]["content"] for item in items}) == 6
    assert digits_items(6, "train")[3] == items[3]  # deterministic
    assert not {i.messages[0]["content"] for i in items} & {
        i.messages[0]["content"] for i in digits_items(6, "validation")
    }
    mixed = rollout("12ab", thinking=False, content="12ab")
    assert REWARDS["digit_fraction"](items[0], mixed) == 0.5
    assert not is_correct(items[0], mixed) and is_correct(
        items[0], rollout("", thinking=False, content=" 42 ")
    )


def test_a_world_task_the_world_cannot_make_is_a_settings_error():
    from qwen3.train.grpo import GRPOConfig, task_items
    from qwen3.train.settings import SettingsError

    with pytest.raises(SettingsError, match="grpo.task 'world:nosuchfamily'"):
        task_items(GRPOConfig(task="world:nosuchfamily"), "train", 4, 0)
