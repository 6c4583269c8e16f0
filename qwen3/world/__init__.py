"""The task world: seeded generators of the data that post-training trains on and the evaluation suite scores.

Every family yields ``Item``s (qwen3/world/items.py) in train / validation / test splits decided by a hash of the
query, so the splits never overlap and training sets can be checked against the test split.
"""

from qwen3.world.items import SPLITS, Item, SplitOverlapError, check_disjoint, query_hash, split_of

__all__ = ["SPLITS", "Item", "SplitOverlapError", "check_disjoint", "query_hash", "split_of"]
