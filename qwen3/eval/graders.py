"""Graders: ``grade(item, reply) -> Grade`` for every task family of qwen3/world (formats in INTERFACES.md).

Every grader reads only the reply's answer (``Reply.answer_text``: the content after ``</think>``); a reply whose
thought never closed, or whose request failed, is wrong with that reason. The mode of the reply (thought or
empty think block) is recorded in ``details["mode"]`` and is itself the answer for ThinkFollow.

Final answers (reasoning, knowledge, counterfact controls, longctx): the last line of the content that starts with
``Answer:``, else the whole content.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qwen3.eval.reply import Reply
from qwen3.eval.verify import answers_equal


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
_ANSWER_LINE = re.compile(r"^\s*\**answer\**\s*[:：]\s*(.*?)\s*$", re.IGNORECASE | re.MULTILINE)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def extract_answer(content: str) -> str:
    """The text after the last ``Answer:`` line, else the whole content stripped."""
    found = _ANSWER_LINE.findall(content)
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


def no_answer(reply: Reply) -> Grade | None:
    """The wrong grade of a reply that has no answer to grade, or None."""
    if reply.error is not None:
        return wrong(f"no reply: {reply.error}", mode=reply.mode)
    if not reply.think_closed:
        return wrong("the thought never closed (no answer)", mode="unclosed")
    if not reply.content.strip():
        return wrong("empty answer", mode=reply.mode)
    return None


# -- families -------------------------------------------------------------------------------------------------
def grade_reasoning(item, reply: Reply) -> Grade:
    """Exact answer by ``answers_equal`` (numbers, fractions, expressions); a reference with ``tests`` (Python
    asserts) runs the reply's code block with them in the sandbox instead."""
    if (missing := no_answer(reply)) is not None:
        return missing
    reference = item.reference
    if "tests" in reference:
        return grade_program(reply.content, reference["tests"], mode=reply.mode)
    answer = extract_answer(reply.content)
    expected = str(reference["answer"])
    if answers_equal(answer, expected):
        return right(mode=reply.mode, answer=answer)
    return wrong(f"answered {answer[:80]!r}, expected {expected!r}", mode=reply.mode, answer=answer)


_CODE_BLOCK = re.compile(r"```(?:python|py)?\s*\n(.*?)```", re.DOTALL)


def grade_program(content: str, tests: str, mode: str, timeout_s: float = 5.0) -> Grade:
    """The last fenced code block of the answer, followed by the reference's asserts, run in the sandbox."""
    from qwen3.eval.sandbox import run_python

    blocks = _CODE_BLOCK.findall(content)
    if not blocks:
        return wrong("no ```python code block in the answer", mode=mode)
    result = run_python(blocks[-1] + "\n\n" + tests, timeout_s=timeout_s)
    if result.ok:
        return right("the tests pass", mode=mode)
    why = "timed out" if result.timed_out else (result.stderr.strip().splitlines() or ["failed"])[-1]
    return wrong(f"the tests fail: {why[:120]}", mode=mode)


def grade_knowledge(item, reply: Reply) -> Grade:
    """Normalised match of the final answer with the reference or an alias. Without an ``Answer:`` line the
    reference may also stand as a phrase in a short content (a one-sentence answer)."""
    if (missing := no_answer(reply)) is not None:
        return missing
    reference = item.reference
    answer = extract_answer(reply.content)
    aliases = reference.get("aliases") or []
    if text_matches(answer, str(reference["answer"]), aliases):
        return right(mode=reply.mode, answer=answer)
    has_line = bool(_ANSWER_LINE.search(reply.content))
    names = [str(reference["answer"]), *aliases]
    if not has_line and len(answer.split()) <= 25 and any(contains_phrase(answer, name) for name in names):
        return right("the reference stands in the answer", mode=reply.mode, answer=answer)
    return wrong(
        f"answered {answer[:80]!r}, expected {reference['answer']!r}", mode=reply.mode, answer=answer
    )


# Phrases that reject a question's premise. CounterFactQA scores "identifying that the question is not factual"
# (report §4.7), so a reply that corrects the premise or names the true fact scores; an answer does not.
REFUSAL_MARKERS = (
    "false premise",
    "premise is",
    "premise of",
    "not true",
    "isn't true",
    "is not correct",
    "isn't correct",
    "incorrect",
    "not accurate",
    "inaccurate",
    "mistaken",
    "no such",
    "does not exist",
    "doesn't exist",
    "did not",
    "didn't",
    "never",
    "actually",
    "in fact",
    "not the case",
    "there is no",
    "there was no",
    "cannot answer",
    "can't answer",
    "wrong",
)


def refuses_premise(text: str, truth: str | None = None, premise: str | None = None) -> bool:
    """The text says the premise is wrong (a refusal marker), or states the true fact: the truth as a phrase, or
    every word of the truth that the premise lacks (the corrected name, place or date)."""
    lowered = " ".join(text.casefold().replace("’", "'").split())
    if any(marker in lowered for marker in REFUSAL_MARKERS):
        return True
    if not truth:
        return False
    if contains_phrase(text, truth):
        return True
    correction = (
        set(normalize_text(truth).split()) - set(normalize_text(premise or "").split()) - _FUNCTION_WORDS
    )
    return bool(correction) and correction <= set(normalize_text(text).split())


# Words that carry no fact: a correction made of them alone proves nothing.
_FUNCTION_WORDS = {
    "is",
    "was",
    "were",
    "are",
    "be",
    "been",
    "of",
    "in",
    "on",
    "at",
    "by",
    "to",
    "and",
    "or",
    "it",
}


def grade_counterfact(item, reply: Reply) -> Grade:
    """False premise: right when the reply rejects or corrects it, wrong when it answers as if it held. True
    premise (a control): graded like knowledge, and rejecting the premise there is wrong."""
    if (missing := no_answer(reply)) is not None:
        return missing
    reference = item.reference
    if reference.get("false_premise"):
        if refuses_premise(reply.content, reference.get("truth"), reference.get("premise")):
            return right("rejected the false premise", mode=reply.mode, false_premise=True)
        return wrong("answered a false premise as if it held", mode=reply.mode, false_premise=True)
    grade = grade_knowledge(item, reply)
    if grade.correct or not refuses_premise(reply.content):
        grade.details["false_premise"] = False
        return grade
    return wrong("rejected a true premise", mode=reply.mode, false_premise=False)


def ifeval_variants(text: str) -> list[str]:
    """IFEval's loose variants: the text, without its first line, without its last, without both, and each of
    those with markdown asterisks removed."""
    lines = text.split("\n")
    cuts = [lines, lines[1:], lines[:-1], lines[1:-1]]
    bases = ["\n".join(cut).strip() for cut in cuts]
    return [*bases, *(base.replace("*", "") for base in bases)]


def _default_checker() -> Callable[[dict, str], bool]:
    from qwen3.world.constraints import check_constraint

    return check_constraint


def grade_ifeval(item, reply: Reply, checker: Callable[[dict, str], bool] | None = None) -> Grade:
    """Strict (the answer as it is) and loose (any of ``ifeval_variants``), per instruction and per prompt.
    ``score`` is prompt-level strict (Table 22's "IFEval strict prompt"); details hold all four."""
    if (missing := no_answer(reply)) is not None:
        return missing
    check = checker or _default_checker()
    specs = item.reference["constraints"]
    text = reply.content
    strict = [bool(check(spec, text)) for spec in specs]
    loose = [s or any(check(spec, v) for v in ifeval_variants(text)) for spec, s in zip(specs, strict)]
    details = {
        "mode": reply.mode,
        "strict": strict,
        "loose": loose,
        "prompt_strict": all(strict),
        "prompt_loose": all(loose),
    }
    if all(strict):
        return Grade(1.0, True, "all instructions followed", details)
    failed = [spec.get("kind", "?") for spec, ok in zip(specs, strict) if not ok]
    return Grade(0.0, False, f"not followed (strict): {', '.join(failed)}", details)


_ITEM_LINE = re.compile(r"^\s*(?:[-*•+]|\d+[.)])\s+\S", re.MULTILINE)


def measure_length(text: str, unit: str) -> int:
    """Words (whitespace-separated tokens that hold a letter or digit) or items (bullet or numbered lines)."""
    if unit == "words":
        return sum(1 for token in text.split() if any(ch.isalnum() for ch in token))
    if unit == "items":
        return len(_ITEM_LINE.findall(text))
    raise ValueError(f"lengthctrl unit must be 'words' or 'items', got {unit!r}")


# LengthCtrl counts as right within this relative error (the score itself is continuous).
LENGTH_TOLERANCE = 0.1


def grade_lengthctrl(item, reply: Reply) -> Grade:
    """Score ``max(0, 1 - |length - target| / target)`` (the report scores "the difference between the generated
    content length and the target length"); right within ``LENGTH_TOLERANCE``."""
    if (missing := no_answer(reply)) is not None:
        return missing
    target, unit = int(item.reference["target"]), item.reference.get("unit", "words")
    length = measure_length(reply.content, unit)
    error = abs(length - target) / max(target, 1)
    details = {"mode": reply.mode, "length": length, "target": target, "relative_error": error}
    correct = error <= LENGTH_TOLERANCE
    return Grade(max(0.0, 1.0 - error), correct, f"{length} {unit} for a target of {target}", details)


def grade_thinkfollow(item, reply: Reply) -> Grade:
    """Right when the reply's mode (a non-empty thought or an empty think block) is the reference mode."""
    expected = item.reference["mode"]
    if reply.error is not None:
        return wrong(f"no reply: {reply.error}", mode=reply.mode, expected=expected)
    if reply.think_closed and not reply.content.strip() and not reply.tool_calls:
        return wrong(
            "empty reply (a turn needs an answer in either mode)", mode=reply.mode, expected=expected
        )
    if reply.mode == expected:
        return right(f"mode {expected}", mode=reply.mode, expected=expected)
    return wrong(f"mode {reply.mode}, expected {expected}", mode=reply.mode, expected=expected)


def grade_longctx(item, reply: Reply) -> Grade:
    """The planted fact, matched like a knowledge answer; the context multiple goes into the details."""
    grade = grade_knowledge(item, reply)
    grade.details["multiple"] = item.reference.get("multiple")
    return grade


GRADERS: dict[str, Callable[..., Grade]] = {
    "reasoning": grade_reasoning,
    "knowledge": grade_knowledge,
    "counterfact": grade_counterfact,
    "ifeval": grade_ifeval,
    "lengthctrl": grade_lengthctrl,
    "thinkfollow": grade_thinkfollow,
    "longctx": grade_longctx,
}


def grade(item, reply: Reply | Sequence[Reply]) -> Grade:
    """Grade one reply to ``item`` (for tooluse: the list of replies of every round, or the last alone)."""
    from qwen3.eval.tooluse import grade_tooluse

    if item.family == "tooluse":
        return grade_tooluse(item, [reply] if isinstance(reply, Reply) else list(reply))
    grader = GRADERS.get(item.family)
    if grader is None:
        families = ", ".join(sorted([*GRADERS, "tooluse"]))
        raise ValueError(f"no grader for family {item.family!r} (graded: {families})")
    if not isinstance(reply, Reply):
        raise TypeError(f"grade({item.family!r} item) takes one Reply, got {type(reply).__name__}")
    return grader(item, reply)


def safe_grade(item, reply) -> Grade:
    """``grade`` that never raises: a broken item or reply is recorded as wrong with the error as the reason."""
    try:
        return grade(item, reply)
    except Exception as err:  # a grading failure must not end the run (issue 11: recorded as wrong)
        return wrong(f"grading failed: {type(err).__name__}: {err}")


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
