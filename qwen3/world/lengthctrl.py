"""LengthCtrl: write exactly N words, or a list of exactly N items, about the fictional world.

Reference ``{"target": N, "unit": "words" | "items"}``; the report scores "the difference between the generated
content length and the target length". Words and items are counted by ``count_words`` / ``count_bullets`` of
qwen3/world/constraints.py. ``direct`` has exactly the target length.
"""

from __future__ import annotations

import random
from typing import Any

from qwen3.world.base import WORLD_SEED, Family, choices_knob, int_knob, user
from qwen3.world.constraints import count_bullets, count_words
from qwen3.world.fiction import World, build_world

UNITS = ("words", "items")


def _sentences(rng: random.Random, world: World, first: str, words: int) -> list[str]:
    """Fact sentences about ``first``, then about the entities its facts name (its surroundings), then about
    random entities, until they hold ``words`` words."""
    queue, done, sentences = [first], set(), []
    entities = world.people + world.cities + world.orgs
    while sum(len(s.split()) for s in sentences) < words and len(done) < len(entities):
        entity = queue.pop(0) if queue else rng.choice(entities)
        if entity in done:
            continue
        done.add(entity)
        sentences += [fact.sentence() for fact in world.facts_of(entity)]
        queue += [v for v in world.attributes[entity].values() if v in world.attributes and v not in done]
    return sentences


def exact_words(sentences: list[str], target: int) -> str:
    """The first ``target`` words of the sentences, ending with a period."""
    words = " ".join(sentences).split()[:target]
    text = " ".join(words)
    return text if text.endswith(".") else text.rstrip(",;") + "."


def make(rng: random.Random, knobs: dict[str, Any]) -> dict[str, Any] | None:
    world = build_world(knobs["world_seed"])
    entity = rng.choice(world.people + world.cities + world.orgs)
    unit = rng.choice(knobs["units"])
    low, high = knobs["min_target"], knobs["max_target"]
    if unit == "words":
        target = rng.randint(low, high)
        direct = exact_words(_sentences(rng, world, entity, target), target)
        prompt = f"Write a passage about {entity} and its surroundings that is exactly {target} words long."
        measured = count_words(direct)
    else:
        target = rng.randint(max(1, low // 10), max(2, high // 10))
        sentences = _sentences(rng, world, entity, 8 * target)[:target]
        direct = "\n".join(f"- {sentence}" for sentence in sentences)
        prompt = f"Give a list of exactly {target} facts about {entity} and related places or people, one per line."
        measured = count_bullets(direct)
    if measured != target:
        return None
    return {
        "messages": user(prompt),
        "reference": {"target": target, "unit": unit},
        "solution": f"I need exactly {target} {unit}. I'll write facts I know and count as I go, stopping at {target}.",
        "direct": direct,
        "meta": {"entity": entity},
    }


def _check_targets(knobs: dict[str, Any]) -> None:
    if knobs["min_target"] > knobs["max_target"]:
        raise ValueError(
            f"knob 'min_target' ({knobs['min_target']}) exceeds 'max_target' ({knobs['max_target']})"
        )


FAMILY = Family(
    "lengthctrl",
    make,
    "write exactly N words or N list items",
    {
        "units": choices_knob(UNITS, "length units to draw from", UNITS),
        "min_target": int_knob(20, "smallest word target (items: a tenth of it, at least 1)", 1, 2000),
        "max_target": int_knob(120, "largest word target (items: a tenth of it)", 1, 2000),
        "world_seed": WORLD_SEED,
    },
    check=_check_targets,
)
