"""What every task family is made of: a ``Family`` (a candidate maker plus its documented, validated knobs).

A family's ``make(rng, knobs)`` draws one candidate item (a dict of ``Item`` fields other than family, id and
split) or returns None to reject the draw (e.g. a composed reply that failed its own check). ``generate`` in
``qwen3/world/registry.py`` keeps the candidates whose query hashes into the requested split.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

Maker = Callable[[random.Random, dict[str, Any]], "dict[str, Any] | None"]


@dataclass(frozen=True)
class Knob:
    """A family setting: its default, what it means, and a check that raises ValueError on a bad value."""

    default: Any
    doc: str
    check: Callable[[str, Any], Any]  # (name, value) -> the normalised value


@dataclass(frozen=True)
class Family:
    name: str
    make: Maker
    doc: str
    knobs: dict[str, Knob] = field(default_factory=dict)
    check: Callable[[dict[str, Any]], None] | None = None  # checks between knobs; raises ValueError

    def resolve(self, given: dict[str, Any]) -> dict[str, Any]:
        """The knobs' values: defaults overridden by ``given``; unknown or bad knobs raise ValueError."""
        unknown = sorted(set(given) - set(self.knobs))
        if unknown:
            known = ", ".join(sorted(self.knobs)) or "none"
            raise ValueError(f"{self.name}: unknown knob {unknown[0]!r} (known knobs: {known})")
        values = {name: knob.check(name, given.get(name, knob.default)) for name, knob in self.knobs.items()}
        if self.check is not None:
            self.check(values)
        return values


def int_knob(default: int, doc: str, low: int, high: int) -> Knob:
    def check(name: str, value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise ValueError(f"knob {name!r} must be an integer in [{low}, {high}], got {value!r}")
        return value

    return Knob(default, doc, check)


def float_knob(default: float, doc: str, low: float, high: float) -> Knob:
    def check(name: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
            raise ValueError(f"knob {name!r} must be a number in [{low}, {high}], got {value!r}")
        return float(value)

    return Knob(default, doc, check)


def choices_knob(default: Sequence[str], doc: str, allowed: Sequence[str]) -> Knob:
    """A non-empty subset of ``allowed`` (a list, tuple or comma-separated string); kept in ``allowed`` order."""

    def check(name: str, value: Any) -> tuple[str, ...]:
        names = value.split(",") if isinstance(value, str) else value
        if not isinstance(names, (list, tuple)) or not names:
            raise ValueError(f"knob {name!r} must be a non-empty list of {', '.join(allowed)}, got {value!r}")
        bad = [n for n in names if n not in allowed]
        if bad:
            raise ValueError(f"knob {name!r}: unknown value {bad[0]!r} (allowed: {', '.join(allowed)})")
        return tuple(a for a in allowed if a in names)

    return Knob(tuple(default), doc, check)


WORLD_SEED = int_knob(
    0, "seed of the fictional world (qwen3.world.fiction.build_world) the items talk about", 0, 2**31
)


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def answer_line(answer: Any) -> str:
    """The final-answer convention every grader extracts: the reply's last line is ``Answer: <answer>``."""
    return f"Answer: {answer}"
