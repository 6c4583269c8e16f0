"""The unit every task family yields: an ``Item`` (a query with a verifiable reference), and the split rule.

An item's split is a function of its query alone: ``split_of`` hashes the canonical text of the query messages
(and the tools offered), so the same query can never land in two splits, the test split of a family stays the same
whatever number of training items is asked for, and any training set can be checked against the test split by
hash (``query_hash``, ``check_disjoint``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

SPLITS = ("train", "validation", "test")
# Out of 100 hash buckets: 10 test, 10 validation, 80 train.
_TEST_BUCKETS, _VALIDATION_BUCKETS = 10, 10


class SplitOverlapError(ValueError):
    """Two splits share a query (or a training set holds a test query); the message names one of them."""


@dataclass
class Item:
    """One task instance.

    - ``family``: the task family ("reasoning", "knowledge", "counterfact", "ifeval", "lengthctrl", "tooluse",
      "thinkfollow", "longctx", ...); ``id``: unique within the family and split, stable for a seed.
    - ``messages``: the conversation up to (not including) the reply to grade, in the OpenAI message format; the
      mode flags (``/think``, ``/no_think``) are part of the text where a family places them.
    - ``reference``: what a grader needs, family-specific (e.g. ``{"answer": "42"}``, a list of constraints, a
      target length, the expected tool calls, the expected mode of each turn).
    - ``solution``: a worked, step-by-step chain of thought in the style of a long-CoT teacher, when the family
      has one (the thinking part of an ideal thinking-mode reply); ``direct``: an ideal final answer (the content
      of a reply, in either mode).
    - ``tools``: the OpenAI tool schemas offered with the query, if any; ``meta``: difficulty and other knobs.
    """

    family: str
    id: str
    split: str
    messages: list[dict[str, Any]]
    reference: dict[str, Any]
    solution: str | None = None
    direct: str | None = None
    tools: list[dict[str, Any]] | None = None
    enable_thinking: bool | None = None  # the hard switch, when the family sets it
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.split not in SPLITS:
            raise ValueError(
                f"Item {self.id!r}: split must be one of {', '.join(SPLITS)}, got {self.split!r}"
            )
        if not self.messages:
            raise ValueError(f"Item {self.id!r}: messages must not be empty")

    @property
    def query_hash(self) -> str:
        return query_hash(self.messages, self.tools)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Item:
        return cls(**data)


def canonical_query(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    """The text that identifies a query: its messages' roles and contents (and the tools), as sorted JSON."""
    turns = [{"role": m.get("role"), "content": m.get("content")} for m in messages]
    return json.dumps({"messages": turns, "tools": tools or []}, sort_keys=True, ensure_ascii=False)


def query_hash(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    return hashlib.sha256(canonical_query(messages, tools).encode("utf-8")).hexdigest()


def split_of(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None) -> str:
    """The split a query belongs to, from its hash (10% test, 10% validation, 80% train)."""
    bucket = int(query_hash(messages, tools)[:8], 16) % 100
    if bucket < _TEST_BUCKETS:
        return "test"
    if bucket < _TEST_BUCKETS + _VALIDATION_BUCKETS:
        return "validation"
    return "train"


def check_disjoint(splits: dict[str, Iterable[Item]]) -> None:
    """Raise ``SplitOverlapError`` if any query hash occurs in more than one of the named item collections."""
    seen: dict[str, str] = {}
    for name, items in splits.items():
        for item in items:
            other = seen.setdefault(item.query_hash, name)
            if other != name:
                raise SplitOverlapError(
                    f"item {item.id!r} of {name!r} has the same query as an item of {other!r} "
                    f"(hash {item.query_hash[:12]})"
                )
