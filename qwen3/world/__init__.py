"""The task world: seeded generators of the data that post-training trains on and the evaluation suite scores.

Every family yields ``Item``s (qwen3/world/items.py) in train / validation / test splits decided by a hash of the
query, so the splits never overlap and training sets can be checked against the test split.
``generate(family, split, count, seed, **knobs)`` and ``FAMILIES`` are in qwen3/world/registry.py; the families,
their knobs and references are documented in docs/world.md.
"""

from qwen3.world.items import SPLITS, Item, SplitOverlapError, check_disjoint, query_hash, split_of
from qwen3.world.registry import FAMILIES, generate

__all__ = [
    "FAMILIES",
    "SPLITS",
    "Item",
    "SplitOverlapError",
    "check_disjoint",
    "generate",
    "query_hash",
    "split_of",
]
