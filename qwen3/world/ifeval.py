"""Instruction following (IFEval analogue): a writing task about the fictional world with several verifiable
constraints (qwen3/world/constraints.py); reference ``{"constraints": [spec, ...]}``.

Three shapes: ``prose`` (word and sentence bounds, keywords, case, start / end phrase, no commas), ``bullets``
(an exact bullet count, keywords, case) and ``json`` (JSON matching a schema). ``direct`` is composed from the
world's facts and then the constraints' parameters are drawn so that it follows them; an item is kept only if
its ``direct`` passes every constraint. ``meta["plain"]`` is the same content with the constraints ignored (the
rejected side of a preference pair).
"""

from __future__ import annotations

import json
import random
from typing import Any

from qwen3.world.base import WORLD_SEED, Family, choices_knob, int_knob, user
from qwen3.world.constraints import (
    check_constraint,
    count_bullets,
    count_keyword,
    count_sentences,
    count_words,
    describe_constraint,
)
from qwen3.world.fiction import World, build_world

SHAPES = ("prose", "bullets", "json")
KEYWORDS = (
    "lantern",
    "harbour",
    "winter",
    "market",
    "bridge",
    "festival",
    "garden",
    "library",
    "tower",
    "meadow",
)
# Never produced by the composer, so excluding them is always satisfiable.
FORBIDDEN = ("banana", "quantum", "robot", "pizza", "galaxy", "volcano", "jazz", "laptop")
_KEYWORD_SENTENCES = (
    "People there like to talk about the {k}.",
    "Many stories mention the {k} as well.",
    "A visitor would also notice the {k}.",
)
OPENINGS = ("Here is a short account.", "Let me describe it.", "This is what is known.")
CLOSINGS = ("That is all for now.", "Is there anything else I can help with?", "Thank you for reading.")


def _subject(rng: random.Random, world: World) -> tuple[str, list[str]]:
    entity = rng.choice(world.people + world.cities + world.orgs)
    facts = [fact.sentence() for fact in world.facts_of(entity)]
    rng.shuffle(facts)
    return entity, facts


def _keyword_sentences(rng: random.Random, words: list[str]) -> list[str]:
    return [rng.choice(_KEYWORD_SENTENCES).format(k=word) for word in words]


def _case(rng: random.Random, specs: list[dict[str, Any]], budget: int) -> str | None:
    if budget <= len(specs) or rng.random() < 0.5:
        return None
    case = rng.choice(("lowercase", "uppercase"))
    specs.append({"kind": case})
    return case


def _apply_case(text: str, case: str | None) -> str:
    return text.lower() if case == "lowercase" else text.upper() if case == "uppercase" else text


def _prose(rng: random.Random, entity: str, facts: list[str], budget: int) -> tuple[str, str, list[dict]]:
    specs: list[dict[str, Any]] = []
    words = rng.sample(KEYWORDS, 2)
    sentences = facts[: rng.randint(2, len(facts))] + _keyword_sentences(rng, words)
    rng.shuffle(sentences)
    options = ["words", "sentences", "keywords", "exclude", "frequency", "start", "end", "commas"]
    rng.shuffle(options)
    chosen = options[: max(1, budget - 1)]
    if "start" in chosen:
        sentences.insert(0, rng.choice(OPENINGS))
        specs.append({"kind": "start_with", "phrase": sentences[0]})
    if "end" in chosen:
        sentences.append(rng.choice(CLOSINGS))
        specs.append({"kind": "end_with", "phrase": sentences[-1]})
    if "frequency" in chosen:
        sentences.insert(1, f"The {words[0]} matters here and the {words[0]} is well known.")
        specs.append({"kind": "keyword_frequency", "word": words[0], "n": 3})
    text = " ".join(sentences)
    if "keywords" in chosen:
        specs.append({"kind": "include_keywords", "words": words})
    if "exclude" in chosen:
        specs.append({"kind": "exclude_keywords", "words": rng.sample(FORBIDDEN, 2)})
    if "commas" in chosen:
        specs.append({"kind": "no_commas"})
        text = text.replace(",", "")
    if "words" in chosen:
        count = len(text.split())
        if rng.random() < 0.5:
            specs.append({"kind": "min_words", "n": max(5, count - rng.randint(0, 10))})
        else:
            specs.append({"kind": "max_words", "n": count + rng.randint(0, 15)})
    if "sentences" in chosen:
        count = len(sentences)
        kind, n = (
            ("min_sentences", count - rng.randint(0, 2))
            if rng.random() < 0.5
            else ("max_sentences", count + 1)
        )
        specs.append({"kind": kind, "n": max(1, n)})
    case = _case(rng, specs, budget)
    for spec in specs:
        if "phrase" in spec:
            spec["phrase"] = _apply_case(spec["phrase"], case)
    return f"Write a short text about {entity}.", _apply_case(text, case), specs


def _bullets(rng: random.Random, entity: str, facts: list[str], budget: int) -> tuple[str, str, list[dict]]:
    lines = facts[: rng.randint(2, len(facts))]
    specs: list[dict[str, Any]] = [{"kind": "bullet_count", "n": len(lines)}]
    if budget > 1 and rng.random() < 0.7:
        word = rng.choice(KEYWORDS)
        lines[-1] = f"{lines[-1]} {rng.choice(_KEYWORD_SENTENCES).format(k=word)}"
        specs.append({"kind": "include_keywords", "words": [word]})
    if budget > len(specs):
        specs.append({"kind": "exclude_keywords", "words": rng.sample(FORBIDDEN, 2)})
    case = _case(rng, specs, budget)
    text = "\n".join(f"- {line}" for line in lines)
    return f"List facts about {entity}.", _apply_case(text, case), specs


def _json(
    rng: random.Random, world: World, entity: str, facts: list[str], budget: int
) -> tuple[str, str, list]:
    kind = world.kind_of(entity)
    count = rng.randint(1, len(facts))
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "kind": {"type": "string", "enum": ["person", "city", "organisation"]},
            "facts": {"type": "array", "items": {"type": "string"}, "minItems": count},
        },
        "required": ["name", "kind", "facts"],
        "additionalProperties": False,
    }
    value = {"name": entity, "kind": {"people": "person", "cities": "city", "orgs": "organisation"}[kind]}
    value["facts"] = facts[:count]
    specs: list[dict[str, Any]] = [{"kind": "json_schema", "schema": schema}]
    if budget > 1:
        specs.append({"kind": "exclude_keywords", "words": rng.sample(FORBIDDEN, 2)})
    return f"Describe {entity} as a JSON object.", json.dumps(value, ensure_ascii=False), specs


def plain_text(facts: list[str]) -> str:
    """The content with no constraint applied: the facts as one paragraph."""
    return " ".join(facts)


def _measure(spec: dict[str, Any], text: str) -> str:
    """What the draft shows for one constraint, in words (the check a careful writer does before answering)."""
    kind = spec["kind"]
    if kind.endswith("_words"):
        return f"the draft has {count_words(text)} words"
    if kind.endswith("_sentences"):
        return f"the draft has {count_sentences(text)} sentences"
    if kind == "bullet_count":
        return f"the draft has {count_bullets(text)} bullet points"
    if kind == "keyword_frequency":
        return f"{spec['word']!r} appears {count_keyword(text, spec['word'])} times"
    return "the draft satisfies it"


def _thought(entity: str, specs: list[dict[str, Any]], direct: str) -> str:
    lines = [f"I'll write about {entity} from the facts I know, keeping {len(specs)} constraints in mind."]
    lines += [f"- {describe_constraint(spec)} Check: {_measure(spec, direct)}." for spec in specs]
    lines.append("Every constraint holds, so the draft is my answer.")
    return "\n".join(lines)


def compose(rng: random.Random, world: World, shapes: tuple[str, ...], budget: int) -> dict[str, Any] | None:
    """One ifeval item's fields (with ``meta["plain"]``), or None when the composed reply fails a constraint."""
    entity, facts = _subject(rng, world)
    shape = rng.choice(shapes)
    if shape == "json":
        task, direct, specs = _json(rng, world, entity, facts, budget)
    else:
        task, direct, specs = (_prose if shape == "prose" else _bullets)(rng, entity, list(facts), budget)
    if not all(check_constraint(spec, direct) for spec in specs):
        return None
    prompt = " ".join([task, *(describe_constraint(spec) for spec in specs)])
    return {
        "messages": user(prompt),
        "reference": {"constraints": specs},
        "solution": _thought(entity, specs, direct),
        "direct": direct,
        "meta": {"shape": shape, "entity": entity, "plain": plain_text(facts)},
    }


def make(rng: random.Random, knobs: dict[str, Any]) -> dict[str, Any] | None:
    return compose(rng, build_world(knobs["world_seed"]), knobs["shapes"], knobs["max_constraints"])


FAMILY = Family(
    "ifeval",
    make,
    "writing tasks with several verifiable constraints each",
    {
        "shapes": choices_knob(SHAPES, "reply shapes to draw from", SHAPES),
        "max_constraints": int_knob(4, "most constraints per prompt (at least one is always given)", 1, 6),
        "world_seed": WORLD_SEED,
    },
)
