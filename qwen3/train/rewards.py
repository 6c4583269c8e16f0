"""Reward functions for reinforcement learning with verifiable rewards (GRPO, report section 4.2).

A reward function maps ``(item, rollout)`` to a float: ``item`` is a ``qwen3.world.items.Item`` (its ``reference``
says what a right answer is), ``rollout`` a ``qwen3.train.rollout.Rollout`` (``text``, ``content``,
``reasoning``, ``token_ids``, ``finish_reason``). ``REWARDS`` names the built-in ones; any callable of that shape
can be passed instead. ``weighted_reward(functions, weights)`` combines several into one, as the report's rule-based
rewards combine answer correctness and format.

Correctness (``is_correct``) is a separate question from the reward: it is what the ``accuracy`` metrics count.
Items of the task world are graded by ``qwen3.eval.grade`` (the reply parsed with ``qwen3.eval.Reply`` in the
mode its prompt set); the built-in tasks here carry their own check in ``reference["check"]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

RewardFn = Callable[[Any, Any], float]

DIGITS = "0123456789"


def reply_content(rollout: Any) -> str:
    """The answer part of a reply: the parsed content (after ``</think>``), else the whole text."""
    content = getattr(rollout, "content", None)
    return rollout.text if content is None else content


def digit_fraction(item: Any, rollout: Any) -> float:
    """Share of the reply's non-space characters that are ASCII digits (0 for an empty reply): a dense reward a
    freshly initialised debug model can climb."""
    chars = [c for c in reply_content(rollout) if not c.isspace()]
    return sum(c in DIGITS for c in chars) / len(chars) if chars else 0.0


def digits_only(item: Any, rollout: Any) -> float:
    """1 when the reply is a non-empty string of digits, else 0."""
    text = reply_content(rollout).strip()
    return float(bool(text) and all(c in DIGITS for c in text))


def answer_match(item: Any, rollout: Any) -> float:
    """1 when the final answer (the last ``Answer:`` line of the content, else the content) equals
    ``item.reference["answer"]`` or one of its ``aliases`` by ``qwen3.eval.answers_equal`` (numbers, fractions,
    expressions, normalised text)."""
    from qwen3.eval import answers_equal, extract_answer

    predicted = extract_answer(_reply(rollout).content)
    references = [item.reference["answer"], *item.reference.get("aliases", [])]
    return float(any(answers_equal(predicted, str(reference)) for reference in references))


def thought_closed(item: Any, rollout: Any) -> float:
    """Format reward: 1 when the reply closed its thought (``</think>`` present) or had none to close."""
    return float("<think>" not in rollout.text or "</think>" in rollout.text)


def not_truncated(item: Any, rollout: Any) -> float:
    """1 unless the reply was cut off by ``max_new_tokens`` (a soft length penalty when weighted)."""
    return float(rollout.finish_reason != "length")


def verifier(item: Any, rollout: Any) -> float:
    """The task world's grader: ``qwen3.eval.grade(item, reply).score``."""
    from qwen3.eval import grade

    return float(grade(item, _reply(rollout)).score)


REWARDS: dict[str, RewardFn] = {
    "digit_fraction": digit_fraction,
    "digits_only": digits_only,
    "answer_match": answer_match,
    "thought_closed": thought_closed,
    "not_truncated": not_truncated,
    "verifier": verifier,
}


def resolve_rewards(names_or_functions: Sequence[str | RewardFn]) -> list[RewardFn]:
    """Names of ``REWARDS`` or callables -> callables (an unknown name raises ValueError naming it)."""
    functions = []
    for entry in names_or_functions:
        if callable(entry):
            functions.append(entry)
        elif entry in REWARDS:
            functions.append(REWARDS[entry])
        else:
            raise ValueError(f"unknown reward function {entry!r}; known: {', '.join(REWARDS)}")
    return functions


def weighted_reward(functions: Sequence[RewardFn], weights: Sequence[float] | None = None) -> RewardFn:
    """sum_i w_i f_i(item, rollout); weights default to 1 each."""
    weights = [1.0] * len(functions) if weights is None else list(weights)
    if len(weights) != len(functions):
        raise ValueError(f"{len(functions)} reward functions but {len(weights)} weights")

    def reward(item: Any, rollout: Any) -> float:
        return sum(w * float(f(item, rollout)) for f, w in zip(functions, weights))

    return reward


def is_correct(item: Any, rollout: Any) -> bool:
    """Whether a reply is right: ``item.reference["check"]`` names a reward in ``REWARDS`` that must give 1
    (built-in tasks), else the task world's grader."""
    check = item.reference.get("check")
    if check is not None:
        return resolve_rewards([check])[0](item, rollout) >= 1.0
    from qwen3.eval import grade

    return bool(grade(item, _reply(rollout)).correct)


def _reply(rollout: Any) -> Any:
    """The rollout as the graders read it: parsed in thinking mode unless its prompt closed the thought."""
    from qwen3.eval import Reply

    return Reply.from_text(rollout.text, enable_thinking=rollout.thinking)
