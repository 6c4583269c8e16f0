"""The grade of one reply and the text helpers every grader shares (answer lines, SQuAD-style normalisation,
tool-call arguments): below both qwen3/eval/graders.py and tooluse.py, so neither imports the other's helpers."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Grade:
    """``score`` in [0, 1] (partial credit where the family has it: LengthCtrl, ToolUse); ``correct``: the item
    is fully right (what pass@k counts); ``reason``: one line saying why; ``details``: family-specific numbers."""

    score: float
    correct: bool
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 0.0 <= self.score <= 1.0:
            raise ValueError(f"Grade.score must be in [0, 1], got {self.score}")

    def to_dict(self) -> dict[str, Any]:
        return {"score": self.score, "correct": self.correct, "reason": self.reason, "details": self.details}


def wrong(reason: str, **details: Any) -> Grade:
    return Grade(0.0, False, reason, details)


def right(reason: str = "correct", **details: Any) -> Grade:
    return Grade(1.0, True, reason, details)


# -- answers --------------------------------------------------------------------------------------------------
ANSWER_LINE = re.compile(r"^\s*\**answer\**\s*[:：]\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def extract_answer(content: str) -> str:
    """The text after the last ``Answer:`` line, else the whole content stripped."""
    found = ANSWER_LINE.findall(content)
    return found[-1].strip() if found else content.strip()


def normalize_text(text: str) -> str:
    """Lower case, no punctuation, no articles, single spaces (SQuAD's answer normalisation)."""
    text = text.casefold()
    text = "".join(" " if ch in string.punctuation else ch for ch in text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def text_matches(answer: str, reference: str, aliases: Sequence[str] = ()) -> bool:
    """``answer`` equals the reference or one of its aliases after ``normalize_text``."""
    candidates = {normalize_text(name) for name in [reference, *aliases] if name}
    return normalize_text(answer) in candidates


def contains_phrase(text: str, phrase: str) -> bool:
    """``phrase`` occurs in ``text`` as whole words (after ``normalize_text``)."""
    words, target = normalize_text(text).split(), normalize_text(phrase).split()
    if not target:
        return False
    return any(words[i : i + len(target)] == target for i in range(len(words) - len(target) + 1))


def parse_arguments(arguments: Any) -> tuple[dict | None, str | None]:
    """A tool call's arguments (JSON text or a dict) as a dict, or (None, why not)."""
    if isinstance(arguments, dict):
        return arguments, None
    try:
        value = json.loads(arguments)
    except (TypeError, ValueError) as err:
        return None, f"arguments are not JSON ({err})"
    if not isinstance(value, dict):
        return None, f"arguments are a JSON {type(value).__name__}, not an object"
    return value, None
