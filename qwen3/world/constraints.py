"""Verifiable instructions (IFEval analogue): a constraint is a dict ``{"kind": ..., <parameters>}``.

``check_constraint(spec, text)`` says whether ``text`` follows it and ``describe_constraint(spec)`` is the
instruction as the prompt states it. Kinds and parameters (IFEval's conventions: keywords and phrases match
case-insensitively on word boundaries; a bullet is a line starting with ``-`` or ``*`` and a space):

- ``min_words`` / ``max_words`` ``n``; ``min_sentences`` / ``max_sentences`` ``n``
- ``include_keywords`` / ``exclude_keywords`` ``words``; ``keyword_frequency`` ``word``, ``n`` (at least n times)
- ``lowercase`` / ``uppercase`` (no parameter); ``no_commas``
- ``start_with`` / ``end_with`` ``phrase``
- ``bullet_count`` ``n`` (exactly n bullet lines)
- ``json_schema`` ``schema``: the whole reply (optionally in a fenced ```json block) is JSON that conforms to the
  schema (the subset of JSON Schema that qwen3.eval.schema validates)

A spec with an unknown kind or a missing parameter raises ValueError naming it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_BULLET = re.compile(r"^\s*[-*]\s+\S", re.MULTILINE)
_FENCE = re.compile(r"^```(?:json)?\s*\n(.*?)\n?```$", re.DOTALL)


def count_words(text: str) -> int:
    """Whitespace-separated tokens that hold a letter or digit (a lone dash is not a word)."""
    return sum(1 for token in text.split() if any(ch.isalnum() for ch in token))


def count_sentences(text: str) -> int:
    """Pieces ending in ``.``, ``!`` or ``?`` followed by space (the last piece counts without one)."""
    return sum(1 for piece in _SENTENCE_END.split(text.strip()) if any(ch.isalnum() for ch in piece))


def count_bullets(text: str) -> int:
    return len(_BULLET.findall(text))


def count_keyword(text: str, word: str) -> int:
    return len(re.findall(rf"(?<!\w){re.escape(word)}(?!\w)", text, flags=re.IGNORECASE))


def parse_json_reply(text: str) -> Any:
    """The JSON value of a reply (a fenced block is unwrapped); raises ValueError when it is not JSON."""
    body = text.strip()
    fenced = _FENCE.match(body)
    return json.loads(fenced.group(1) if fenced else body)


def _json_ok(text: str, schema: dict[str, Any]) -> bool:
    from qwen3.eval.schema import schema_error

    try:
        value = parse_json_reply(text)
    except ValueError:
        return False
    return schema_error(value, schema) is None


def _phrase(text: str) -> str:
    return text.strip().strip('"').lower()


# kind -> (parameter names, checker(text, spec) -> bool, description(spec) -> str)
_KINDS: dict[str, tuple[tuple[str, ...], Callable[[str, dict], bool], Callable[[dict], str]]] = {
    "min_words": (("n",), lambda t, s: count_words(t) >= s["n"], lambda s: f"Use at least {s['n']} words."),
    "max_words": (("n",), lambda t, s: count_words(t) <= s["n"], lambda s: f"Use at most {s['n']} words."),
    "min_sentences": (
        ("n",),
        lambda t, s: count_sentences(t) >= s["n"],
        lambda s: f"Write at least {s['n']} sentences.",
    ),
    "max_sentences": (
        ("n",),
        lambda t, s: count_sentences(t) <= s["n"],
        lambda s: f"Write at most {s['n']} sentences.",
    ),
    "include_keywords": (
        ("words",),
        lambda t, s: all(count_keyword(t, w) for w in s["words"]),
        lambda s: f"Include the keywords {', '.join(repr(w) for w in s['words'])}.",
    ),
    "exclude_keywords": (
        ("words",),
        lambda t, s: not any(count_keyword(t, w) for w in s["words"]),
        lambda s: f"Do not use the words {', '.join(repr(w) for w in s['words'])}.",
    ),
    "keyword_frequency": (
        ("word", "n"),
        lambda t, s: count_keyword(t, s["word"]) >= s["n"],
        lambda s: f"Use the word {s['word']!r} at least {s['n']} times.",
    ),
    "lowercase": (
        (),
        lambda t, s: any(c.isalpha() for c in t) and t == t.lower(),
        lambda s: "Write your whole reply in lowercase letters; no capital letters at all.",
    ),
    "uppercase": (
        (),
        lambda t, s: any(c.isalpha() for c in t) and t == t.upper(),
        lambda s: "Write your whole reply in capital letters.",
    ),
    "no_commas": ((), lambda t, s: "," not in t, lambda s: "Do not use any commas."),
    "start_with": (
        ("phrase",),
        lambda t, s: _phrase(t).startswith(_phrase(s["phrase"])),
        lambda s: f"Start your reply with the exact phrase {s['phrase']!r}.",
    ),
    "end_with": (
        ("phrase",),
        lambda t, s: _phrase(t).endswith(_phrase(s["phrase"])),
        lambda s: f"End your reply with the exact phrase {s['phrase']!r}; nothing may follow it.",
    ),
    "bullet_count": (
        ("n",),
        lambda t, s: count_bullets(t) == s["n"],
        lambda s: f"Answer with exactly {s['n']} bullet points, each a line starting with '- '.",
    ),
    "json_schema": (
        ("schema",),
        lambda t, s: _json_ok(t, s["schema"]),
        lambda s: f"Answer with JSON only, matching this JSON schema: {json.dumps(s['schema'])}",
    ),
}
KINDS = tuple(_KINDS)


def _entry(spec: dict[str, Any]):
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"a constraint must be a dict with a 'kind', got {spec!r:.80}")
    entry = _KINDS.get(spec["kind"])
    if entry is None:
        raise ValueError(f"unknown constraint kind {spec['kind']!r} (known: {', '.join(KINDS)})")
    missing = [name for name in entry[0] if name not in spec]
    if missing:
        raise ValueError(f"constraint {spec['kind']!r} needs the parameter {missing[0]!r}")
    return entry


def check_constraint(spec: dict[str, Any], text: str) -> bool:
    """Whether ``text`` follows the constraint ``spec`` (strictly: the text as it is)."""
    return bool(_entry(spec)[1](text, spec))


def describe_constraint(spec: dict[str, Any]) -> str:
    """The instruction for ``spec`` as a prompt states it."""
    return _entry(spec)[2](spec)


def _checker(kind: str) -> Callable[[dict[str, Any], str], bool]:
    return lambda spec, text: check_constraint({**spec, "kind": kind}, text)


CONSTRAINTS: dict[str, Callable[[dict[str, Any], str], bool]] = {kind: _checker(kind) for kind in KINDS}
