"""ToolUse: tasks solved with the real tools of qwen3/world/tools.py, which the harness executes.

Shapes: ``single`` (one call), ``parallel`` (two independent calls in one round, then the answer), ``multistep``
(rounds where one result feeds the next call) and ``none`` (no tool is needed; the right reply calls nothing).
Every item offers all the tools. Reference:

- ``calls``: one list per calling round, each a list of ``{"name", "arguments"}``; ``[]`` (no rounds) when no
  tool should be called. The reply after the last round's results is the final answer.
- ``results``: the tools' answers per round (``execute``'s JSON strings), in the order of ``calls``.
- ``answer``: the final answer (a string, on the ``Answer:`` line of ``direct``), None for ``none`` items.

``meta["thoughts"]`` holds the thought before each round and before the final answer (the think blocks of an
ideal thinking-mode trajectory; ``solution`` is the first of them).
"""

from __future__ import annotations

import json
import random
from typing import Any

from qwen3.world.base import WORLD_SEED, Family, answer_line, choices_knob, user
from qwen3.world.fiction import NOUNS, World, build_world
from qwen3.world.reasoning import ANSWER_FORMAT
from qwen3.world.tools import execute, schemas

SHAPES = ("single", "parallel", "multistep", "none")


class _Plan:
    """Builds the rounds of calls, executing each call as it is added so later rounds can use its result."""

    def __init__(self, world_seed: int):
        self.world_seed = world_seed
        self.calls: list[list[dict[str, Any]]] = []
        self.results: list[list[str]] = []
        self.thoughts: list[str] = []
        self.conclusion: str | None = None  # the thought before the answer, when a shape has a better one

    def round(self, thought: str, *calls: tuple[str, dict[str, Any]]) -> list[Any]:
        self.thoughts.append(thought)
        self.calls.append([{"name": name, "arguments": arguments} for name, arguments in calls])
        self.results.append([execute(name, arguments, self.world_seed) for name, arguments in calls])
        return [json.loads(result)["result"] for result in self.results[-1]]


def _single(rng: random.Random, world: World, plan: _Plan) -> tuple[str, Any]:
    choice = rng.randrange(4)
    if choice == 0:
        a, b, c = rng.randint(12, 999), rng.randint(12, 999), rng.randint(2, 99)
        expression = f"({a} + {b}) * {c}" if rng.random() < 0.5 else f"{a} * {b} - {c}"
        (value,) = plan.round(
            "This needs exact arithmetic; I'll use the calculator.",
            ("calculator", {"expression": expression}),
        )
        return f"What is {expression}?", value
    if choice == 1:
        fact = rng.choice(world.facts())
        (value,) = plan.round(
            f"I should look up the {NOUNS[fact.relation]} of {fact.subject}.",
            _lookup(fact.subject, fact.relation),
        )
        return fact.question(), value
    if choice == 2:
        source, target = rng.choice(
            (("mi", "km"), ("kg", "lb"), ("ft", "m"), ("F", "C"), ("h", "min"), ("gal", "l"))
        )
        amount = round(rng.uniform(1, 500), 1)
        (value,) = plan.round(
            f"A conversion from {source} to {target}; the unit converter does it.",
            ("unit_convert", {"value": amount, "from_unit": source, "to_unit": target}),
        )
        return f"How much is {amount} {source} in {target}?", value
    start = _date(rng)
    if rng.random() < 0.5:
        days = rng.randint(1, 900)
        (value,) = plan.round(
            "Date arithmetic: I'll use add_days.", ("add_days", {"date": start, "days": days})
        )
        return f"Which date is {days} days after {start}?", value
    end = _date(rng)
    (value,) = plan.round(
        "Counting days between two dates: days_between does it.",
        ("days_between", {"start": start, "end": end}),
    )
    return f"How many days are there from {start} to {end}? (Negative if {end} comes first.)", value


def _date(rng: random.Random) -> str:
    return f"{rng.randint(1990, 2030)}-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}"


def _parallel(rng: random.Random, world: World, plan: _Plan) -> tuple[str, Any]:
    first, second = rng.sample(world.cities, 2)
    relation = rng.choice(("founded", "elevation_m", "population"))
    a, b = plan.round(
        f"I need the {NOUNS[relation]} of both {first} and {second}; the two lookups are independent.",
        _lookup(first, relation),
        _lookup(second, relation),
    )
    if a == b:
        return "", None
    earlier = relation == "founded"
    winner = first if (int(a) < int(b)) == earlier else second
    wanted = "the smaller" if earlier else "the larger"
    plan.conclusion = f"{first} has {a} and {second} has {b}; {wanted} value is {winner}'s."
    question = {
        "founded": f"Which city was founded earlier, {first} or {second}?",
        "elevation_m": f"Which city lies higher, {first} or {second}?",
        "population": f"Which city has more inhabitants, {first} or {second}?",
    }[relation]
    return question, winner


def _lookup(entity: str, attribute: str) -> tuple[str, dict[str, Any]]:
    return "world_lookup", {"entity": entity, "attribute": attribute}


# (first relation, second relation, question); the last round computes from the second lookup's value.
_CHAINS = (
    ("mentor", "birth_year", "How old will the person who trained {p} turn in the year {t}?"),
    ("born_in", "elevation_m", "How many feet above sea level lies the city where {p} was born?"),
    (
        "works_at",
        "established",
        "How many years old will the organisation where {p} works be in the year {t}?",
    ),
)


def _multistep(rng: random.Random, world: World, plan: _Plan) -> tuple[str, Any]:
    """Three rounds: a lookup, a lookup on its result, and a computation on that (each feeds the next)."""
    first, second, question = rng.choice(_CHAINS)
    person = rng.choice([p for p in world.people if first in world.attributes[p]])
    (entity,) = plan.round(f"First I need the {NOUNS[first]} of {person}.", _lookup(person, first))
    (value,) = plan.round(
        f"The {NOUNS[first]} of {person} is {entity}; next its {NOUNS[second]}.", _lookup(entity, second)
    )
    target = rng.randint(2030, 2060)
    if second == "elevation_m":
        arguments = {"value": int(value), "from_unit": "m", "to_unit": "ft"}
        (answer,) = plan.round(
            f"{entity} lies {value} m high; convert that to feet.", ("unit_convert", arguments)
        )
    else:
        expression = f"{target} - {value}"
        (answer,) = plan.round(
            f"The years from {value} to {target}: {expression}.", ("calculator", {"expression": expression})
        )
    return question.format(p=person, t=target), answer


_NO_TOOL = (
    ("Write a one-line greeting for my friend {name}.", "Hello {name}, it is wonderful to hear from you!"),
    ("Thank you, {name} says that was helpful!", "You are welcome; I am glad it helped {name}."),
    ("Suggest a name for a cat that belongs to {name}.", "How about Pebble? It suits a cat of {name}'s."),
    ("Say good night to {name} in one short sentence.", "Good night, {name}, sleep well."),
)


def make(rng: random.Random, knobs: dict[str, Any]) -> dict[str, Any] | None:
    world = build_world(knobs["world_seed"])
    shape = rng.choice(knobs["shapes"])
    plan = _Plan(knobs["world_seed"])
    if shape == "none":
        prompt, reply = rng.choice(_NO_TOOL)
        name = rng.choice(world.people)
        plan.thoughts.append("This needs no tool; I can answer directly.")
        question, answer, direct = prompt.format(name=name), None, reply.format(name=name)
    else:
        question, answer = {"single": _single, "parallel": _parallel, "multistep": _multistep}[shape](
            rng, world, plan
        )
        if answer is None:
            return None
        plan.thoughts.append(plan.conclusion or f"The tool results give the answer: {answer}.")
        question, direct = (
            f"{question}\n\n{ANSWER_FORMAT}",
            f"The tools give {answer}.\n{answer_line(answer)}",
        )
    return {
        "messages": user(question),
        "tools": schemas(),
        "reference": {
            "calls": plan.calls,
            "results": plan.results,
            "answer": None if answer is None else str(answer),
        },
        "solution": plan.thoughts[0],
        "direct": direct,
        "meta": {"shape": shape, "thoughts": plan.thoughts, "world_seed": knobs["world_seed"]},
    }


FAMILY = Family(
    "tooluse",
    make,
    "single, parallel, multi-step and no-tool tasks with real tools",
    {"shapes": choices_knob(SHAPES, "task shapes to draw from", SHAPES), "world_seed": WORLD_SEED},
)
