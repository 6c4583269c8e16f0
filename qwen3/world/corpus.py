"""The pretraining corpus of the world: prose about it, worked reasoning text and code-like text.

``write_corpus(path, documents, seed)`` writes a ``.jsonl`` file that qwen3/train/corpus.py reads (one object
per line; the trainer takes its ``text`` field, the default ``text_field``), atomically. Each line is
``{"text", "kind", "query_hash"}``: ``kind`` is ``prose``, ``reasoning`` or ``code``; ``query_hash`` is the hash of
the item a reasoning or code document was made from (None for prose), so a corpus can be checked against any
test split. Reasoning and code documents come only from ``generate(..., "train", ...)`` items, so no test (or
validation) query is ever in the corpus; ``write_corpus`` checks that again before it writes.

Prose covers every entity of the world first (when there are that many prose documents) (its facts and those of the entities it names), then repeats
entities in random order, so the facts the knowledge questions ask are all in the corpus.
"""

from __future__ import annotations

import itertools
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from qwen3.utils.atomic import atomic_write_text
from qwen3.world.fiction import build_world, describe_entity
from qwen3.world.items import Item, SplitOverlapError, split_of
from qwen3.world.registry import default_knobs, generate

KINDS = ("prose", "reasoning", "code")
DEFAULT_MIX = {"prose": 0.5, "reasoning": 0.3, "code": 0.2}


def _prose(world_seed: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    world = build_world(world_seed)
    entities = world.people + world.cities + world.orgs
    for entity in itertools.chain(entities, (rng.choice(entities) for _ in itertools.count())):
        named = [v for v in world.attributes[entity].values() if v in world.attributes]
        parts = [describe_entity(world, entity)] + [
            describe_entity(world, n) for n in rng.sample(named, min(2, len(named)))
        ]
        yield {"text": "\n\n".join(parts), "kind": "prose", "query_hash": None}


def worked_kinds() -> tuple[str, ...]:
    """The reasoning kinds written as worked problems: those in force (``knob_defaults`` may narrow them) except
    ``program``, which the code documents carry as scripts; ``program`` alone when it is the only one."""
    kinds = default_knobs("reasoning")["kinds"]
    return tuple(kind for kind in kinds if kind != "program") or kinds


def _reasoning_text(item: Item) -> str:
    return f"Problem: {item.messages[-1]['content']}\n\nSolution:\n{item.solution}\n\n{item.direct}"


def _code_text(item: Item) -> str:
    """A program item as a script with its trace in comments, or a tool trajectory as calls with results."""
    if item.family == "reasoning":
        code = item.messages[-1]["content"].split("```python\n", 1)[1].split("```", 1)[0]
        trace = "\n".join(f"# {line}" for line in item.solution.splitlines())
        return f"{code}\n# Output: {item.reference['answer']}\n#\n# Trace:\n{trace}"
    lines = [f"# Task: {item.messages[-1]['content'].splitlines()[0]}"]
    for calls, results in zip(item.reference["calls"], item.reference["results"]):
        for call, result in zip(calls, results):
            arguments = ", ".join(f"{k}={v!r}" for k, v in call["arguments"].items())
            lines.append(f"{call['name']}({arguments})  # -> {json.loads(result).get('result')!r}")
    lines.append(f"answer = {item.reference['answer']!r}")
    return "\n".join(lines)


def _from_items(kind: str, count: int, seed: int, world_seed: int) -> list[dict[str, Any]]:
    if count == 0:
        return []
    if kind == "reasoning":
        items = generate("reasoning", "train", count, seed=seed, kinds=worked_kinds())
        render = _reasoning_text
    else:
        programs = generate("reasoning", "train", (count + 1) // 2, seed=seed, kinds=("program",))
        calls = generate(
            "tooluse",
            "train",
            count // 2,
            seed=seed,
            shapes=("single", "parallel", "multistep"),
            world_seed=world_seed,
        )
        items, render = (
            [x for pair in zip(programs, calls) for x in pair] + programs[len(calls) :],
            _code_text,
        )
    return [
        {"text": render(item), "kind": kind, "query_hash": item.query_hash, "_item": item} for item in items
    ]


def mix_counts(documents: int, mix: dict[str, float]) -> dict[str, int]:
    """Documents of each kind for ``mix`` (shares of ``KINDS``; the largest share takes the rounding); the
    ValueError of a bad mix, which is all a check of a mix needs (no document is built)."""
    unknown = sorted(set(mix) - set(KINDS))
    if unknown:
        raise ValueError(f"corpus mix: unknown kind {unknown[0]!r} (known: {', '.join(KINDS)})")
    if any(share < 0 for share in mix.values()) or sum(mix.values()) <= 0:
        raise ValueError(f"corpus mix: shares must be non-negative and not all zero, got {mix}")
    total = sum(mix.values())
    counts = {kind: int(documents * mix.get(kind, 0.0) / total) for kind in KINDS}
    counts[max(mix, key=mix.get)] += documents - sum(counts.values())
    return counts


def build_documents(
    documents: int, seed: int = 0, world_seed: int = 0, mix: dict[str, float] | None = None
) -> list[dict]:
    """The corpus's documents (``{"text", "kind", "query_hash"}``), prose and item documents interleaved."""
    if isinstance(documents, bool) or not isinstance(documents, int) or documents < 1:
        raise ValueError(f"documents must be a positive integer, got {documents!r}")
    counts = mix_counts(documents, DEFAULT_MIX if mix is None else mix)
    rng = random.Random(f"corpus/{seed}/{world_seed}")
    prose = _prose(world_seed, rng)
    docs = [next(prose) for _ in range(counts["prose"])]
    docs += _from_items("reasoning", counts["reasoning"], seed, world_seed)
    docs += _from_items("code", counts["code"], seed, world_seed)
    for doc in docs:
        item = doc.pop("_item", None)
        if item is not None and split_of(item.messages, item.tools) != "train":
            raise SplitOverlapError(f"corpus: item {item.id!r} is not a train-split item")
    rng.shuffle(docs)
    return docs


def write_corpus(
    path: str | Path, documents: int, seed: int = 0, world_seed: int = 0, mix: dict[str, float] | None = None
) -> dict[str, Any]:
    """Write the corpus to ``path`` (``.jsonl``) atomically; returns ``{"path", "documents", "by_kind"}``."""
    path = Path(path)
    if path.suffix != ".jsonl":
        raise ValueError(
            f"corpus path must end in .jsonl (what qwen3/train/corpus.py reads as objects), got {path}"
        )
    docs = build_documents(documents, seed, world_seed, mix)
    atomic_write_text(path, "".join(json.dumps(doc, ensure_ascii=False) + "\n" for doc in docs))
    by_kind = {kind: sum(doc["kind"] == kind for doc in docs) for kind in KINDS}
    return {"path": str(path), "documents": len(docs), "by_kind": by_kind}
