"""Long context: a planted fact in world prose of 1x, 2x or 4x ``train_length`` tokens, and a question about it.

The filler is the fictional world's own prose (entity descriptions in random order); the planted fact is a
made-up code attached to a world entity (not a world fact, so only the context holds it), put at a random depth.
Tokens are estimated as characters / ``chars_per_token`` (about 4 for English with Qwen's tokenizer), so no
tokenizer is loaded; ``reference["context_tokens"]`` is that estimate. Reference ``{"answer", "aliases",
"context_tokens", "multiple"}``; ``meta["depth"]`` is where the fact sits (0 = start, 1 = end).
"""

from __future__ import annotations

import math
import random
from functools import lru_cache
from typing import Any

from qwen3.world.base import WORLD_SEED, Family, answer_line, choices_knob, float_knob, int_knob, user
from qwen3.world.fiction import build_world, describe_entity

MULTIPLES = ("1", "2", "4")
_PLANTS = (
    (
        "The archive of {e} keeps its records under the code {v}.",
        "Under which code does the archive of {e} keep its records?",
    ),
    (
        "The old bell of {e} is engraved with the number {v}.",
        "Which number is engraved on the old bell of {e}?",
    ),
    ("The secret password of {e} is {v}.", "What is the secret password of {e}?"),
)


@lru_cache(maxsize=4)
def _descriptions(world_seed: int) -> tuple[str, ...]:
    """Every entity's paragraph, once per world (the filler draws hundreds of them per item)."""
    world = build_world(world_seed)
    return tuple(describe_entity(world, entity) for entity in world.people + world.cities + world.orgs)


def _filler(rng: random.Random, world_seed: int, characters: int) -> list[str]:
    descriptions = _descriptions(world_seed)
    paragraphs: list[str] = []
    total = 0
    while total < characters:
        paragraphs.append(rng.choice(descriptions))
        total += len(paragraphs[-1]) + 2  # the blank line that joins paragraphs
    return paragraphs


def make(rng: random.Random, knobs: dict[str, Any]) -> dict[str, Any]:
    world = build_world(knobs["world_seed"])
    multiple = int(rng.choice(knobs["multiples"]))
    target_tokens = multiple * knobs["train_length"]
    entity = rng.choice(world.cities + world.orgs)
    code = f"{rng.choice('ABCDEFGHJKLMNPQRSTUVWXYZ')}{rng.randint(1000, 9999)}"
    statement, question = (t.format(e=entity, v=code) for t in rng.choice(_PLANTS))
    template = "Read the text below, then answer the question after it.\n\n{text}\n\nQuestion: {question}"
    overhead = len(template.format(text="", question=question)) + len(statement) + 2
    paragraphs = _filler(
        rng, knobs["world_seed"], max(0, int(target_tokens * knobs["chars_per_token"]) - overhead)
    )
    position = rng.randint(0, len(paragraphs))
    paragraphs.insert(position, statement)
    prompt = template.format(text="\n\n".join(paragraphs), question=question)
    return {
        "messages": user(prompt),
        "reference": {
            "answer": code,
            "aliases": [],
            "context_tokens": math.ceil(len(prompt) / knobs["chars_per_token"]),
            "multiple": multiple,
        },
        "solution": f"The text says: {statement} So the answer is {code}.",
        "direct": f"{statement}\n{answer_line(code)}",
        "meta": {
            "depth": position / max(1, len(paragraphs) - 1),
            "entity": entity,
            "world_seed": knobs["world_seed"],
        },
    }


FAMILY = Family(
    "longctx",
    make,
    "a planted fact in 1x, 2x or 4x train_length tokens of world prose",
    {
        "train_length": int_knob(
            512, "the training context length in tokens the multiples refer to", 16, 1 << 20
        ),
        "multiples": choices_knob(MULTIPLES, "context lengths as multiples of train_length", MULTIPLES),
        "chars_per_token": float_knob(4.0, "characters per token of the length estimate", 1.0, 16.0),
        "world_seed": WORLD_SEED,
    },
)
