"""Preference pairs for a reward model: a better and a worse reply to the same query, and why.

Reasons: ``correct_vs_wrong`` (a reasoning problem; the rejected reply's answer is off), ``follows_vs_ignores``
(an ifeval prompt; the rejected reply breaks at least one of its constraints), ``polite_vs_rude`` (a knowledge
question; same fact, rude wording) and ``concise_vs_rambling`` (a knowledge question; the rejected reply buries
the fact in filler). Reference ``{"chosen", "rejected", "reason"}``; ``direct`` is the chosen reply.
"""

from __future__ import annotations

import random
from typing import Any

from qwen3.world.base import WORLD_SEED, Family, answer_line, choices_knob
from qwen3.world.constraints import check_constraint
from qwen3.world.fiction import build_world
from qwen3.world.ifeval import SHAPES, compose
from qwen3.world.knowledge import knowledge_make
from qwen3.world.reasoning import MAKERS

REASONS = ("correct_vs_wrong", "follows_vs_ignores", "polite_vs_rude", "concise_vs_rambling")
_RUDE = (
    "Obviously, as anyone would know: {fact} Stop asking me such basic things.",
    "Ugh, fine. {fact} Try to keep up.",
)
_FILLER = (
    "Well, that is a really interesting question, and there is a lot one could say about it before getting to "
    "the point, so let me take a moment to think about all the different angles involved here.",
    "It is worth remembering that questions like this one come up a lot, and people often wonder about them, "
    "which is perfectly natural and understandable in every way.",
    "Anyway, to cut a long story short, after all of that, here is the thing you actually asked about.",
)


def _off_by(rng: random.Random, answer: str) -> str | None:
    """A plausible wrong answer: a nearby number, or None when the answer is not an integer."""
    try:
        value = int(answer)
    except ValueError:
        return None
    return str(value + rng.choice((-10, -2, -1, 1, 2, 10)))


def _correct_vs_wrong(rng: random.Random, world_seed: int) -> dict[str, Any] | None:
    fields = MAKERS[rng.choice(("arithmetic", "multiplication", "equation"))](rng, rng.randint(1, 3))
    answer = fields["reference"]["answer"]
    wrong = _off_by(rng, answer)
    if wrong is None:
        return None
    summary = fields["direct"].rsplit("\n", 1)[0]
    rejected = (
        wrong.join(summary.rsplit(answer, 1)) + "\n" + answer_line(wrong)
    )  # the last mention is the result
    return {"messages": fields["messages"], "chosen": fields["direct"], "rejected": rejected}


def _follows_vs_ignores(rng: random.Random, world_seed: int) -> dict[str, Any] | None:
    fields = compose(rng, build_world(world_seed), SHAPES, 4)
    if fields is None:
        return None
    rejected = fields["meta"]["plain"]
    if all(check_constraint(spec, rejected) for spec in fields["reference"]["constraints"]):
        return None  # the plain text happens to follow every constraint: not a pair
    return {"messages": fields["messages"], "chosen": fields["direct"], "rejected": rejected}


def _knowledge(rng: random.Random, world_seed: int) -> dict[str, Any]:
    return knowledge_make(rng, {"hops": 1, "world_seed": world_seed})


def _polite_vs_rude(rng: random.Random, world_seed: int) -> dict[str, Any]:
    fields = _knowledge(rng, world_seed)
    fact, line = fields["direct"].rsplit("\n", 1)
    rejected = rng.choice(_RUDE).format(fact=fact) + "\n" + line
    chosen = f"Good question! {fact} I hope that helps.\n{line}"
    return {"messages": fields["messages"], "chosen": chosen, "rejected": rejected}


def _concise_vs_rambling(rng: random.Random, world_seed: int) -> dict[str, Any]:
    fields = _knowledge(rng, world_seed)
    fact, line = fields["direct"].rsplit("\n", 1)
    rejected = " ".join([*_FILLER[:2], fact, _FILLER[2], fact]) + "\n" + line
    return {"messages": fields["messages"], "chosen": fields["direct"], "rejected": rejected}


_MAKERS = {
    "correct_vs_wrong": _correct_vs_wrong,
    "follows_vs_ignores": _follows_vs_ignores,
    "polite_vs_rude": _polite_vs_rude,
    "concise_vs_rambling": _concise_vs_rambling,
}


def make(rng: random.Random, knobs: dict[str, Any]) -> dict[str, Any] | None:
    reason = rng.choice(knobs["reasons"])
    pair = _MAKERS[reason](rng, knobs["world_seed"])
    if pair is None or pair["chosen"] == pair["rejected"]:
        return None
    return {
        "messages": pair["messages"],
        "reference": {"chosen": pair["chosen"], "rejected": pair["rejected"], "reason": reason},
        "direct": pair["chosen"],
        "meta": {"reason": reason, "world_seed": knobs["world_seed"]},
    }


FAMILY = Family(
    "preference",
    make,
    "chosen vs rejected replies with the reason",
    {"reasons": choices_knob(REASONS, "reasons to draw pairs for", REASONS), "world_seed": WORLD_SEED},
)
