"""Named, composable data filters for post-training (report section 4.1, Long-CoT cold start).

A filter is any object with a ``name`` and ``keep(candidate) -> (bool, reason)``; ``apply_filters`` runs a chain
of them, each candidate stopping at the first filter that drops it, and returns the kept candidates with a
``FilterReport``: how many each filter dropped, a count per reason, and a few dropped examples per filter
(written to a JSONL file atomically by ``FilterReport.write_examples``).

Query filters see ``qwen3.world.Item``s:
- ``Verifiable``: the query has a reference a grader can check and is one question, not several (report: drop
  "queries containing multiple sub-questions or those asking for general text generation").
- ``NotSolvedWithoutThinking``: drop queries the current model already answers right without thinking, from pass
  rates measured with ``no_think_pass_rates`` (our engine, k samples per query, one batched call).
- ``HeldOut``: drop queries that are (by hash) in the validation set kept out of training.

Response filters see ``Candidate``s (an item plus one teacher reply):
- ``ThinkTags`` (a ``<think>`` or ``</think>`` left inside the thought or the answer: a broken format),
  ``CorrectAnswer`` (graded by ``qwen3.eval.grade``), ``Repetition`` (n-gram repetition rate), ``Guesswork`` (an
  answer no reasoning leads to), ``Consistency`` (the thought concludes one answer, the summary gives another),
  ``LanguageMixing`` (letters of a second script), ``ValidationOverlap`` (n-gram overlap with validation items).
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from qwen3.utils.atomic import atomic_write_text

Verdict = tuple[bool, str]
KEPT: Verdict = (True, "kept")


@runtime_checkable
class Filter(Protocol):
    name: str

    def keep(self, candidate: Any) -> Verdict: ...


@dataclass
class Candidate:
    """One response to filter: the query ``item``, the thought (``reasoning``, "" for none) and the ``content``
    after it; ``source`` says where it came from ("teacher", "solution", ...); ``meta`` e.g. the injected noise."""

    item: Any
    reasoning: str
    content: str
    source: str = "teacher"
    meta: dict[str, Any] = field(default_factory=dict)

    def reply(self) -> Any:
        from qwen3.eval import Reply

        return Reply(content=self.content, reasoning=self.reasoning or None)

    def message(self) -> dict[str, Any]:
        """The assistant message to train on (the chat template puts ``reasoning_content`` in the think block)."""
        return {"role": "assistant", "content": self.content, "reasoning_content": self.reasoning}

    def to_dict(self) -> dict[str, Any]:
        return {"item": self.item.id, "family": self.item.family, "source": self.source, "meta": self.meta,
                "reasoning": self.reasoning, "content": self.content}  # fmt: skip


@dataclass
class FilterReport:
    """What a filter chain did: ``seen`` / ``kept`` totals, ``dropped[name]``, ``reasons[name][reason]``, and up
    to ``max_examples`` dropped examples per filter."""

    stage: str
    seen: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    reasons: dict[str, dict[str, int]] = field(default_factory=dict)
    examples: list[dict[str, Any]] = field(default_factory=list)

    def metrics(self) -> dict[str, int]:
        """Flat numbers for metrics.jsonl: ``<stage>_seen``, ``<stage>_kept``, ``<stage>_dropped_<filter>``."""
        out = {f"{self.stage}_seen": self.seen, f"{self.stage}_kept": self.kept}
        out.update({f"{self.stage}_dropped_{name}": count for name, count in self.dropped.items()})
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.stage, "seen": self.seen, "kept": self.kept, "dropped": self.dropped,
                "reasons": self.reasons}  # fmt: skip

    def write_examples(self, path: str | Path) -> Path:
        import json

        text = "".join(json.dumps(example, ensure_ascii=False) + "\n" for example in self.examples)
        atomic_write_text(Path(path), text)
        return Path(path)


def _describe(candidate: Any) -> dict[str, Any]:
    if hasattr(candidate, "to_dict") and isinstance(candidate, Candidate):
        return candidate.to_dict()
    return {"item": getattr(candidate, "id", None), "family": getattr(candidate, "family", None),
            "messages": getattr(candidate, "messages", None)}  # fmt: skip


def apply_filters(
    filters: Sequence[Filter], candidates: Iterable[Any], stage: str, max_examples: int = 5
) -> tuple[list[Any], FilterReport]:
    """Run the chain; a candidate is kept when every filter keeps it (it stops at the first that drops it)."""
    names = [f.name for f in filters]
    if len(set(names)) != len(names):
        raise ValueError(f"filter names must be unique, got {names}")
    report = FilterReport(stage, dropped={name: 0 for name in names}, reasons={name: {} for name in names})
    kept = []
    for candidate in candidates:
        report.seen += 1
        for flt in filters:
            ok, reason = flt.keep(candidate)
            if not ok:
                report.dropped[flt.name] += 1
                counts = report.reasons[flt.name]
                counts[reason] = counts.get(reason, 0) + 1
                if report.dropped[flt.name] <= max_examples:
                    report.examples.append({"stage": stage, "filter": flt.name, "reason": reason,
                                            **_describe(candidate)})  # fmt: skip
                break
        else:
            kept.append(candidate)
    report.kept = len(kept)
    return kept, report


# ------------------------------------------------------------------------------------------------- text tools
_WORD = re.compile(r"\w+(?:[.,/]\w+)*", re.UNICODE)


def words(text: str) -> list[str]:
    """Lower-cased word tokens (numbers such as 3.5 or 1/2 stay one token)."""
    return [w.casefold() for w in _WORD.findall(text)]


def ngrams(tokens: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def repetition_rate(text: str, n: int = 4) -> float:
    """The share of word n-grams that repeat an earlier one: 1 - distinct / total (0 for short texts)."""
    grams = ngrams(words(text), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def query_text(item: Any) -> str:
    return "\n".join(
        str(m.get("content") or "") for m in item.messages if m.get("role") in ("user", "system")
    )


# ------------------------------------------------------------------------------------------------ query filters
VERIFIABLE_FAMILIES = ("reasoning", "knowledge")


@dataclass
class Verifiable:
    """Keep queries with a checkable reference (an ``answer`` or code ``tests``) in a family a grader scores by
    its final answer, asking one question (at most ``max_questions`` question marks)."""

    families: tuple[str, ...] = VERIFIABLE_FAMILIES
    max_questions: int = 1
    name: str = "verifiable"

    def keep(self, item: Any) -> Verdict:
        if item.family not in self.families:
            return False, f"family {item.family} has no final-answer verifier"
        reference = item.reference or {}
        if not str(reference.get("answer", "")).strip() and "tests" not in reference:
            return False, "no reference answer or tests"
        if query_text(item).count("?") > self.max_questions:
            return False, "several sub-questions"
        return KEPT


@dataclass
class HeldOut:
    """Drop queries whose hash is in the validation set (which is kept out of training)."""

    validation_hashes: frozenset[str]
    name: str = "held_out"

    def keep(self, item: Any) -> Verdict:
        if item.query_hash in self.validation_hashes:
            return False, "validation query"
        return KEPT


@dataclass
class NotSolvedWithoutThinking:
    """Drop queries the current model answers right without thinking in at least ``threshold`` of its samples
    (``pass_rates``: query hash -> fraction correct, from ``no_think_pass_rates``)."""

    pass_rates: dict[str, float]
    threshold: float = 0.5
    name: str = "solved_without_thinking"

    def keep(self, item: Any) -> Verdict:
        rate = self.pass_rates.get(item.query_hash)
        if rate is None:
            raise KeyError(f"no pass rate measured for item {item.id!r}")
        if rate >= self.threshold:
            return False, f"pass rate without thinking >= {self.threshold:g}"
        return KEPT


def no_think_pass_rates(llm: Any, items: Sequence[Any], k: int, max_tokens: int, seed: int = 0,
                        temperature: float = 0.7) -> dict[str, float]:  # fmt: skip
    """For each item, the fraction of ``k`` non-thinking samples (hard switch, one batched ``LLM.chat`` call) that
    ``qwen3.eval.grade`` marks correct. Keyed by query hash."""
    from qwen3.engine.sampling_params import SamplingParams
    from qwen3.eval import Reply, safe_grade

    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if not items:
        return {}
    params = [SamplingParams(n=k, temperature=temperature, top_p=0.8, max_tokens=max_tokens, seed=seed + i)
              for i in range(len(items))]  # fmt: skip
    outputs = llm.chat([item.messages for item in items], params, enable_thinking=False, progress=False)
    rates = {}
    for item, output in zip(items, outputs):
        replies = [Reply.from_text(c.text, enable_thinking=False) for c in output.outputs]
        rates[item.query_hash] = sum(safe_grade(item, r).correct for r in replies) / len(replies)
    return rates


# --------------------------------------------------------------------------------------------- response filters
@dataclass
class ThinkTags:
    """Drop responses with a think tag inside the thought or the answer (a second ``</think>`` in the content, a
    ``<think>`` reopened): the chat format allows one think block, which the template writes around the thought.
    Such a reply can still end in a right answer, so ``CorrectAnswer`` alone keeps it."""

    name: str = "think_tags"

    def keep(self, candidate: Candidate) -> Verdict:
        from qwen3.tokenizer.special import THINK_END, THINK_START

        for part, text in (("thought", candidate.reasoning), ("answer", candidate.content)):
            for tag in (THINK_START, THINK_END):
                if tag in text:
                    return False, f"{tag} inside the {part}"
        return KEPT


@dataclass
class CorrectAnswer:
    """Drop responses whose final answer ``qwen3.eval.grade`` marks wrong (or that never close the thought)."""

    name: str = "wrong_answer"

    def keep(self, candidate: Candidate) -> Verdict:
        from qwen3.eval import safe_grade

        graded = safe_grade(candidate.item, candidate.reply())
        return KEPT if graded.correct else (False, "wrong final answer")


def most_repeated_line(text: str) -> int:
    """How often the most frequent non-empty line occurs (a degenerate loop repeats one line verbatim)."""
    counts = Counter(line.strip() for line in text.splitlines() if line.strip())
    return max(counts.values(), default=0)


@dataclass
class Repetition:
    """Drop responses whose word ``n``-gram repetition rate (thought and answer) exceeds ``max_rate``, or where
    one line occurs more than ``max_line_repeats`` times."""

    n: int = 8
    max_rate: float = 0.3
    max_line_repeats: int = 3
    name: str = "repetition"

    def keep(self, candidate: Candidate) -> Verdict:
        text = f"{candidate.reasoning}\n{candidate.content}"
        if repetition_rate(text, self.n) > self.max_rate:
            return False, f"{self.n}-gram repetition rate > {self.max_rate:g}"
        if most_repeated_line(text) > self.max_line_repeats:
            return False, f"a line repeated more than {self.max_line_repeats} times"
        return KEPT


def final_answer(content: str) -> str:
    from qwen3.eval import extract_answer

    return extract_answer(content)


def _mentions(text: str, answer: str) -> bool:
    target = words(answer)
    tokens = words(text)
    return bool(target) and any(tokens[i : i + len(target)] == target for i in range(len(tokens)))


@dataclass
class Guesswork:
    """Drop an answer no reasoning leads to: a thought shorter than ``min_words`` words, or one that never
    mentions the final answer."""

    min_words: int = 12
    name: str = "guesswork"

    def keep(self, candidate: Candidate) -> Verdict:
        if len(words(candidate.reasoning)) < self.min_words:
            return False, f"thought shorter than {self.min_words} words"
        answer = final_answer(candidate.content)
        if answer and not _mentions(candidate.reasoning, answer):
            return False, "the answer does not appear in the thought"
        return KEPT


_VALUE = r"(-?\d+(?:[./]\d+)?|(?-i:[A-Z][\w-]*))"
# after "the answer is": a number, or the words up to the end of the clause
_STATED = r"(-?\d+(?:[./]\d+)?(?!\w)|[^\n.,;:!?*]+)"
# Explicit conclusions only ("the answer is X", "the result is X", "so X is right"): intermediate equations of
# a worked solution are not its conclusion.
_CONCLUSION = re.compile(
    rf"(?:\b(?:answer|result)\s*(?:is|=|:)\s*\**\s*{_STATED})|(?:\bso\s+{_VALUE}\s+is\s+(?:right|correct))",
    re.IGNORECASE,
)


def thought_conclusion(reasoning: str) -> str | None:
    """The answer a thought arrives at: its last ``Answer:`` line, else the value of its last explicit
    conclusion ("the answer is X", "the result is X", "so X is right"), else None."""
    stated = final_answer(reasoning)
    if stated != reasoning.strip():  # extract_answer gives the whole text back when there is no Answer: line
        return stated
    found = _CONCLUSION.findall(reasoning)
    return next((value.strip() for value in reversed(found[-1]) if value.strip()), None) if found else None


@dataclass
class Consistency:
    """Drop a summary that contradicts the thinking: the thought's conclusion (``thought_conclusion``) is not the
    final answer after it (``qwen3.eval.answers_equal``). A thought with no conclusion is left to ``Guesswork``."""

    name: str = "inconsistent"

    def keep(self, candidate: Candidate) -> Verdict:
        from qwen3.eval import answers_equal

        concluded = thought_conclusion(candidate.reasoning)
        answer = final_answer(candidate.content)
        if concluded is None or not answer:
            return KEPT
        if answers_equal(concluded, answer) or _mentions(answer, concluded):
            return KEPT
        return False, "the thought concludes another answer than the summary"


def _script(char: str) -> str:
    return unicodedata.name(char, "UNKNOWN").split(" ")[0]


@dataclass
class LanguageMixing:
    """Drop responses where more than ``max_share`` of the letters are outside the text's main script (report
    4.1: "inappropriate language mixing")."""

    max_share: float = 0.05
    name: str = "language_mixing"

    def keep(self, candidate: Candidate) -> Verdict:
        scripts = Counter(_script(c) for c in f"{candidate.reasoning}{candidate.content}" if c.isalpha())
        total = sum(scripts.values())
        if total and 1 - scripts.most_common(1)[0][1] / total > self.max_share:
            return False, f"more than {self.max_share:.0%} of letters in a second script"
        return KEPT


@dataclass
class ValidationOverlap:
    """Drop responses (with their query) too similar to a validation item: an identical query hash, or more than
    ``max_overlap`` of their word ``n``-grams found in the validation items' queries, solutions and answers."""

    validation: Sequence[Any]
    n: int = 8
    max_overlap: float = 0.5
    name: str = "validation_overlap"
    _hashes: set[str] = field(default_factory=set, init=False, repr=False)
    _grams: set[int] = field(default_factory=set, init=False, repr=False)

    def __post_init__(self) -> None:
        for item in self.validation:
            self._hashes.add(item.query_hash)
            text = "\n".join([query_text(item), item.solution or "", item.direct or ""])
            self._grams.update(hash(g) for g in ngrams(words(text), self.n))

    def keep(self, candidate: Candidate) -> Verdict:
        if candidate.item.query_hash in self._hashes:
            return False, "query of a validation item"
        text = "\n".join([query_text(candidate.item), candidate.reasoning, candidate.content])
        grams = ngrams(words(text), self.n)
        if grams:
            share = sum(hash(g) in self._grams for g in grams) / len(grams)
            if share > self.max_overlap:
                return False, f"more than {self.max_overlap:.0%} of {self.n}-grams from validation items"
        return KEPT
