"""``generate(family, split, count, seed)``: deterministic items of one family and split, and ``FAMILIES``.

``knob_defaults({family: {knob: value}})`` changes the knobs every ``generate`` of a block uses by default (the
recipe's ``[world]`` table: the same item space for its data, stages and evaluation).

Each (family, split, seed) has its own random stream (``random.Random("family/split/seed")``); candidates are
drawn from it and kept when ``split_of`` their query is the requested split and their query is new. So the
splits never overlap whatever counts are asked, and the first ``n`` items of a split are the same for any
``count >= n``.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from qwen3.world import ifeval, knowledge, lengthctrl, longctx, preference, reasoning, thinkfollow, tooluse
from qwen3.world.base import Family
from qwen3.world.items import SPLITS, Item, split_of

FAMILIES: dict[str, Family] = {
    family.name: family
    for family in (
        reasoning.FAMILY,
        knowledge.KNOWLEDGE,
        knowledge.COUNTERFACT,
        ifeval.FAMILY,
        lengthctrl.FAMILY,
        tooluse.FAMILY,
        thinkfollow.FAMILY,
        preference.FAMILY,
        longctx.FAMILY,
    )
}

# Knob values that stand in for a family's defaults inside ``knob_defaults`` (a recipe's [world] table): every
# generate() call of the block (data, every stage, the evaluation) then draws from the same item space.
_DEFAULTS: dict[str, dict[str, Any]] = {}


def check_knobs(knobs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``{family: {knob: value}}`` with every family and knob known and every value valid (ValueError naming
    it); returns the values as given (resolved again, with the defaults, by each ``generate``)."""
    for family, values in knobs.items():
        spec = FAMILIES.get(family)
        if spec is None:
            raise ValueError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
        if not isinstance(values, dict):
            raise ValueError(f"{family}: knobs must be a table of knob = value, got {values!r}")
        spec.resolve(values)
    return knobs


@contextmanager
def knob_defaults(knobs: dict[str, dict[str, Any]]) -> Iterator[None]:
    """Inside the block, ``generate(family, ...)`` uses ``knobs[family]`` in place of the family's defaults
    (knobs passed to ``generate`` still win). Blocks nest; the previous values come back on exit."""
    check_knobs(knobs)
    saved = {family: dict(values) for family, values in _DEFAULTS.items()}
    for family, values in knobs.items():
        _DEFAULTS[family] = {**_DEFAULTS.get(family, {}), **values}
    try:
        yield
    finally:
        _DEFAULTS.clear()
        _DEFAULTS.update(saved)


def default_knobs(family: str) -> dict[str, Any]:
    """The knob values ``generate(family, ...)`` uses when it is given none: the defaults in force."""
    spec = FAMILIES.get(family)
    if spec is None:
        raise ValueError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
    return spec.resolve(dict(_DEFAULTS.get(family, {})))


# A split holds about 10% of the candidates, so a draw gives a new item with probability ~0.1 until the knobs'
# space runs out: 2000 draws in a row without one (a chance of ~1e-90 while it has not) means it has.
_STALL_DRAWS = 2000


def generate(family: str, split: str, count: int, seed: int = 0, **knobs: Any) -> list[Item]:
    """``count`` distinct items of ``family`` in ``split`` (train / validation / test) for ``seed``."""
    spec = FAMILIES.get(family)
    if spec is None:
        raise ValueError(f"unknown family {family!r} (known: {', '.join(FAMILIES)})")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} (known: {', '.join(SPLITS)})")
    if isinstance(count, bool) or not isinstance(count, int) or count < 0:
        raise ValueError(f"count must be a non-negative integer, got {count!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    values = spec.resolve({**_DEFAULTS.get(family, {}), **knobs})
    rng = random.Random(f"{family}/{split}/{seed}")
    items: list[Item] = []
    seen: set[str] = set()
    stalled = 0
    while len(items) < count and stalled < _STALL_DRAWS:
        stalled += 1
        fields = spec.make(rng, values)
        if fields is None or split_of(fields["messages"], fields.get("tools")) != split:
            continue
        item = Item(family=family, id="", split=split, **fields)
        if item.query_hash in seen:
            continue
        seen.add(item.query_hash)
        item.id = f"{family}-{split}-{item.query_hash[:12]}"
        items.append(item)
        stalled = 0
    if len(items) < count:
        raise ValueError(
            f"{family}: only {len(items)} distinct {split} items (asked {count}; {_STALL_DRAWS} draws in a row "
            "gave no new one); "
            "widen the knobs (e.g. difficulty) or ask fewer"
        )
    return items
