"""ThinkFollow: multi-turn dialogues with ``/think`` and ``/no_think`` placed at random in user and system messages.

Some turns carry no flag (thinking is the default), and with probability ``hard_switch`` the item sets
``enable_thinking=False`` (the hard switch, which nothing overrides). ``messages`` is the whole dialogue up to the
last user turn; earlier assistant turns carry their replies (content only, as the template keeps history).
Reference ``{"mode": "think" | "no_think"}``: the mode the reply to the last turn must have, by the report's rule
"the model response adher[es] to the last flag encountered" (qwen3.chat.resolve_thinking).
``meta["flags"]`` records the flag placed in each message (None for none) and ``meta["turn_modes"]`` the mode
each assistant turn of the dialogue followed.
"""

from __future__ import annotations

import random
from typing import Any

from qwen3.chat.modes import resolve_thinking
from qwen3.world.base import WORLD_SEED, Family, float_knob, int_knob
from qwen3.world.knowledge import knowledge_make
from qwen3.world.reasoning import arithmetic

FLAGS = ("/think", "/no_think")
_SYSTEMS = (
    "You are a helpful assistant.",
    "You answer questions about a small world.",
    "Be brief and accurate.",
)


def _flagged(rng: random.Random, text: str, flag_rate: float) -> tuple[str, str | None]:
    """The text with a random flag at its start or end (or none), and the flag."""
    if rng.random() >= flag_rate:
        return text, None
    flag = rng.choice(FLAGS)
    return (f"{flag} {text}" if rng.random() < 0.3 else f"{text} {flag}"), flag.lstrip("/")


def _question(rng: random.Random, world_seed: int) -> dict[str, Any]:
    if rng.random() < 0.5:
        return arithmetic(rng, 1)
    return knowledge_make(rng, {"hops": 1, "world_seed": world_seed})


def _mode(messages: list[dict[str, Any]], enable_thinking: bool | None) -> str:
    return "think" if resolve_thinking(messages, enable_thinking) else "no_think"


def make(rng: random.Random, knobs: dict[str, Any]) -> dict[str, Any]:
    messages: list[dict[str, Any]] = []
    flags: list[str | None] = []
    if rng.random() < 0.4:
        text, flag = _flagged(rng, rng.choice(_SYSTEMS), knobs["flag_rate"])
        messages.append({"role": "system", "content": text})
        flags.append(flag)
    hard = False if rng.random() < knobs["hard_switch"] else None
    turns = rng.randint(1, knobs["max_turns"])
    turn_modes: list[str] = []
    for turn in range(turns):
        question = _question(rng, knobs["world_seed"])
        text, flag = _flagged(rng, question["messages"][0]["content"], knobs["flag_rate"])
        messages.append({"role": "user", "content": text})
        flags.append(flag)
        if turn < turns - 1:
            turn_modes.append(_mode(messages, hard))
            messages.append({"role": "assistant", "content": question["direct"]})
            flags.append(None)
    mode = _mode(messages, hard)
    return {
        "messages": messages,
        "reference": {"mode": mode},
        "solution": question["solution"],
        "direct": question["direct"],
        "enable_thinking": hard,
        "meta": {"flags": flags, "turn_modes": turn_modes, "turns": turns, "world_seed": knobs["world_seed"]},
    }


FAMILY = Family(
    "thinkfollow",
    make,
    "multi-turn dialogues with random /think and /no_think flags; the reply must follow the last one",
    {
        "max_turns": int_knob(4, "most user turns in a dialogue (at least 1)", 1, 12),
        "flag_rate": float_knob(0.7, "probability that a user or system message carries a flag", 0.0, 1.0),
        "hard_switch": float_knob(0.15, "probability of enable_thinking=False (the hard switch)", 0.0, 1.0),
        "world_seed": WORLD_SEED,
    },
)
