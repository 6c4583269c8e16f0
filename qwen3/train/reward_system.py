"""Stage 4's reward system (report section 4.4): small named rewards with one interface, mixed per task.

Every reward is a callable ``reward(item, reply) -> RewardResult(score in [0, 1], reason)``:

- ``item``: the query record, a ``qwen3.world.Item`` (its ``messages``, ``reference``, ``tools``,
  ``enable_thinking``) or anything with those attributes;
- ``reply``: the parsed response, a ``qwen3.eval.Reply`` (``Reply.from_text(completion)``; ``raw``, ``reasoning``,
  ``content``, ``tool_calls``, ``think_closed``).

The report names three kinds of reward; this module holds the rule-based ones (precise, hard to hack):

- ``format``: exactly one well-formed think block at the start of the reply when the prompt leaves thinking to
  the model, none when the hard switch (``enable_thinking=False``) already closed it, no think tag after
  ``</think>``; and the mode the conversation asked for (``/think``, ``/no_think``, the hard switch; the last flag
  wins, ``qwen3.chat.resolve_thinking``) is obeyed: a thought under thinking, an empty block under ``/no_think``.
- ``constraints``: the fraction of the item's verifiable instruction constraints the content satisfies
  (``qwen3.world.constraints``).
- ``length``: 1 - |length - target| / target, floored at 0 (LengthCtrl's "difference between the generated
  content length and the target length", report section 4.7; the evaluation grader's measure).
- ``tool_calls``: every call (of every turn of an agent rollout) names an offered tool and its arguments validate against that tool's JSON schema
  (``qwen3.world.schema``).
- ``answer``: correctness by the evaluation verifiers (``qwen3.eval.grade``).

The model-based kinds are ``qwen3.train.judge`` (with a reference) and ``qwen3.train.reward_model`` (without); any
callable of the same shape joins a ``RewardMix``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from qwen3.tokenizer.special import THINK_END, THINK_START, TOOL_CALL_START


@dataclass(frozen=True)
class RewardResult:
    score: float
    reason: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"reward score must be in [0, 1], got {self.score} ({self.reason})")


class Reward(Protocol):
    def __call__(self, item: Any, reply: Any) -> RewardResult: ...


def turns_of(reply: Any) -> list[Any]:
    """Every model turn of an agent rollout (``reply.turns``, set by qwen3.train.general_rl), else the reply."""
    return list(getattr(reply, "turns", None) or [reply])


def expected_thinking(item: Any) -> bool:
    """The mode the reply must have: True = think, by the hard switch and the last soft flag."""
    from qwen3.chat import resolve_thinking

    return resolve_thinking(item.messages, getattr(item, "enable_thinking", None))


# --------------------------------------------------------------------------------------------------- format
def format_reward(item: Any, reply: Any) -> RewardResult:
    raw = reply.raw
    if raw is None:
        return RewardResult(0.0, "format: no raw completion to check")
    hard_off = getattr(item, "enable_thinking", None) is False
    problem = _think_block_problem(raw, hard_off)
    if problem:
        return RewardResult(0.0, f"format: {problem}")
    thought = "" if hard_off else raw.split(THINK_END, 1)[0].replace(THINK_START, "", 1).strip()
    wants_thought = expected_thinking(item)
    if wants_thought and not thought:
        return RewardResult(0.0, "format: thinking mode asked for, but the think block is empty")
    if not wants_thought and thought:
        return RewardResult(0.0, "format: /no_think asked for, but the think block holds a thought")
    return RewardResult(1.0, f"format: well formed, mode {'think' if wants_thought else 'no_think'} obeyed")


def _think_block_problem(raw: str, hard_off: bool) -> str | None:
    """What is wrong with the reply's think tags (None when nothing is)."""
    opens, closes = raw.count(THINK_START), raw.count(THINK_END)
    if hard_off:
        return None if opens == closes == 0 else "the prompt closed the thought, yet the reply has think tags"
    if not raw.lstrip().startswith(THINK_START):
        return "the reply does not start with <think>"
    if opens != 1 or closes != 1:
        return f"expected exactly one <think> and one </think>, got {opens} and {closes}"
    thought = raw.split(THINK_END, 1)[0]
    if TOOL_CALL_START in thought:
        return "a <tool_call> inside the think block"
    return None


# ------------------------------------------------------------------------------------------- constraints
def constraints_reward(item: Any, reply: Any) -> RewardResult:
    from qwen3.world.constraints import check_constraint

    specs = item.reference.get("constraints")
    if not specs:
        raise ValueError(f"item {item.id!r}: reference has no 'constraints' for the constraints reward")
    failed = [spec["kind"] for spec in specs if not check_constraint(spec, reply.content)]
    score = 1.0 - len(failed) / len(specs)
    reason = "all constraints met" if not failed else f"failed {', '.join(failed)}"
    return RewardResult(score, f"constraints: {len(specs) - len(failed)}/{len(specs)}, {reason}")


# ---------------------------------------------------------------------------------------------- length
def length_reward(item: Any, reply: Any) -> RewardResult:
    """The LengthCtrl score of the evaluation grader (one definition of length for training and evaluation)."""
    from qwen3.eval.graders import grade_lengthctrl

    target = item.reference.get("target")
    if not isinstance(target, int) or target <= 0:
        raise ValueError(f"item {item.id!r}: reference 'target' must be a positive int, got {target!r}")
    result = grade_lengthctrl(item, reply)
    return RewardResult(float(result.score), f"length: {result.reason}")


# ------------------------------------------------------------------------------------------- tool calls
def tool_call_reward(item: Any, reply: Any) -> RewardResult:
    """1 when every call names an offered tool with schema-valid arguments (and a reply without calls is fine);
    the reasons say which call failed and why."""
    offered = {tool["function"]["name"]: tool["function"] for tool in item.tools or []}
    calls = [call for turn in turns_of(reply) for call in turn.tool_calls]
    if not calls:
        return RewardResult(1.0, "tool calls: none made")
    for index, call in enumerate(calls):
        problem = tool_call_problem(call, offered)
        if problem:
            return RewardResult(0.0, f"tool calls: call {index}: {problem}")
    return RewardResult(1.0, f"tool calls: {len(calls)} valid")


def tool_call_problem(call: Mapping[str, Any], offered: Mapping[str, Mapping[str, Any]]) -> str | None:
    function = call.get("function", call)
    name = function.get("name")
    if name not in offered:
        return f"tool {name!r} is not offered ({', '.join(sorted(offered)) or 'no tools'})"
    arguments = function.get("arguments")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return f"{name}: arguments are not JSON"
    from qwen3.world.schema import schema_error

    return schema_error(arguments, offered[name].get("parameters", {"type": "object"}), name)


# ------------------------------------------------------------------------------------------------ answer
def answer_reward(item: Any, reply: Any) -> RewardResult:
    from qwen3.eval import grade

    turns = turns_of(reply)
    result = grade(item, turns if item.family == "tooluse" else turns[-1])
    return RewardResult(float(result.score), f"answer: {result.reason}")


RULE_REWARDS: dict[str, Reward] = {
    "format": format_reward,
    "constraints": constraints_reward,
    "length": length_reward,
    "tool_calls": tool_call_reward,
    "answer": answer_reward,
}


# --------------------------------------------------------------------------------------------------- mixing
@dataclass
class MixedReward:
    score: float
    parts: dict[str, RewardResult]

    @property
    def reason(self) -> str:
        return "; ".join(f"{name}={part.score:.2f} ({part.reason})" for name, part in self.parts.items())


class RewardMix:
    """Per task family, a weighted mean of named rewards: ``RewardMix({"ifeval": {"format": 0.2,
    "constraints": 0.8}}, rewards={...})``. ``rewards`` adds or replaces pieces (a judge, a reward model) by name;
    the rule rewards are always available. An item of a family without a mix is an error naming the family."""

    def __init__(
        self,
        weights: Mapping[str, Mapping[str, float]],
        rewards: Mapping[str, Reward] | None = None,
    ):
        self.rewards: dict[str, Reward] = {**RULE_REWARDS, **(rewards or {})}
        self.weights = {family: dict(mix) for family, mix in weights.items()}
        for family, mix in self.weights.items():
            _check_mix(family, mix, self.rewards)

    def __call__(self, item: Any, reply: Any) -> MixedReward:
        mix = self.weights.get(item.family)
        if mix is None:
            raise ValueError(
                f"no reward mix for task family {item.family!r}; mixes: {', '.join(self.weights)}"
            )
        parts = {name: self.rewards[name](item, reply) for name in mix}
        total = sum(mix.values())
        return MixedReward(sum(mix[name] * part.score for name, part in parts.items()) / total, parts)

    def score_all(self, items: Sequence[Any], replies: Sequence[Any]) -> list[MixedReward]:
        if len(items) != len(replies):
            raise ValueError(f"{len(items)} items but {len(replies)} replies")
        return [self(item, reply) for item, reply in zip(items, replies)]


def _check_mix(family: str, mix: Mapping[str, float], rewards: Mapping[str, Reward]) -> None:
    if not mix:
        raise ValueError(f"reward mix of {family!r} is empty")
    for name, weight in mix.items():
        if name not in rewards:
            raise ValueError(
                f"reward mix of {family!r}: unknown reward {name!r}; rewards: {', '.join(rewards)}"
            )
        if not weight >= 0:
            raise ValueError(f"reward mix of {family!r}: weight of {name!r} must be >= 0, got {weight}")
    if sum(mix.values()) <= 0:
        raise ValueError(f"reward mix of {family!r}: the weights sum to 0")


# The report's stage-4 task kinds (section 4.4) over the world's families; format is part of every mix because
# the report wants <think>/</think> used consistently in every task. Weights are ours (the report gives none).
DEFAULT_WEIGHTS: dict[str, dict[str, float]] = {
    "ifeval": {"format": 0.2, "constraints": 0.8},
    "lengthctrl": {"format": 0.2, "length": 0.8},
    "thinkfollow": {"format": 1.0},
    "tooluse": {"format": 0.2, "tool_calls": 0.4, "answer": 0.4},
    "counterfact": {"format": 0.2, "answer": 0.8},
    "reasoning": {"format": 0.1, "answer": 0.9},
    "knowledge": {"format": 0.1, "answer": 0.9},
}
