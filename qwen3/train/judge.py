"""The model-based reward with a reference answer (report section 4.4): "we provide a reference answer for each
query and prompt Qwen2.5-72B-Instruct to score the model's response based on this reference", which avoids the
false negatives of strict rules (a right answer in another form).

``Judge(backend)`` is a reward of ``qwen3.train.reward_system``: it renders the query, the reference and the
response into the judge prompt, asks the backend for verdicts in one batch, and parses each verdict's score
(``Score: 7``, ``7/10``, ``[[7]]``; the last one wins). A verdict without a score in range is not a crash: it scores
0 and is counted in ``judge.unparsable`` and logged with its text (a request that failed likewise). Backends are
the evaluation's (``qwen3.eval.backends``), so judging and evaluating use one client each way:

- ``in_process_judge(model)``: any Qwen3 checkpoint (a directory, a preset, or a ready ``qwen3.LLM``) run by our
  engine in this process; all prompts of a batch go to the engine together;
- ``openai_judge(base_url, model)``: an OpenAI-compatible server (``qwen3 serve``, vLLM).

The judge decodes greedily in non-thinking mode (the report's judge is an instruct model), ``max_tokens`` a
verdict.

``agreement(judge_results, grades)`` reports how often the judge's pass/fail matches the rule verifier's
(``qwen3.eval.grade``) where both apply: a judge that disagrees with the verifier where the verifier is sure is not
one to trust where it is not.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from qwen3.train.reward_system import RewardResult

log = logging.getLogger(__name__)

JUDGE_SYSTEM = (
    "You are a strict grader. Compare the response with the reference answer and judge whether it answers the "
    "question correctly and completely. A response that reaches the reference's answer in another form is correct."
)
JUDGE_TEMPLATE = (
    "[Question]\n{question}\n\n[Reference answer]\n{reference}\n\n[Response]\n{response}\n\n"
    "Rate the response from 0 (wrong) to {scale} (fully correct). End your verdict with a line `Score: N`."
)
_SCORE_PATTERNS = (
    re.compile(r"score\s*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE),
    re.compile(r"\[\[\s*(-?\d+(?:\.\d+)?)\s*\]\]"),
    re.compile(r"(-?\d+(?:\.\d+)?)\s*/\s*(\d+)"),
)


class JudgeBackend(Protocol):
    def complete(self, requests: Sequence[Any]) -> list[Any]:
        """One ``qwen3.eval.Reply`` per ``qwen3.eval.backends.ChatRequest``, in order."""
        ...


def parse_score(verdict: str, scale: int = 10) -> float | None:
    """The verdict's score divided by ``scale`` (in [0, 1]), or None when it holds no score in [0, scale].

    Of all matches of all forms, the one that ends last in the text is the verdict's conclusion."""
    best: tuple[int, float] | None = None
    for pattern in _SCORE_PATTERNS:
        for match in pattern.finditer(verdict or ""):
            value = float(match.group(1))
            if pattern.groups == 2:  # "N/M": a fraction of its own scale
                denominator = float(match.group(2))
                if denominator <= 0:
                    continue
                value = value / denominator * scale
            if best is None or match.end() > best[0]:
                best = (match.end(), value)
    if best is None or not 0 <= best[1] <= scale:
        return None
    return best[1] / scale


def reference_text(item: Any) -> str:
    """What the judge compares against: the answer (with aliases), the truth behind a false premise, or the
    item's ideal reply."""
    reference = item.reference or {}
    if reference.get("false_premise"):
        return (
            f"The question rests on a false premise ({reference['premise']}); in fact {reference['truth']}."
        )
    if "answer" in reference and reference["answer"] is not None:
        aliases = reference.get("aliases") or []
        return str(reference["answer"]) + (
            f" (also accepted: {', '.join(map(str, aliases))})" if aliases else ""
        )
    if getattr(item, "direct", None):
        return item.direct
    raise ValueError(f"item {item.id!r} ({item.family}) has no reference answer for the judge")


def judge_prompt(item: Any, reply: Any, scale: int = 10) -> list[dict[str, Any]]:
    question = next(m["content"] for m in reversed(item.messages) if m["role"] == "user")
    text = JUDGE_TEMPLATE.format(question=question, reference=reference_text(item), response=reply.content,
                                 scale=scale)  # fmt: skip
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": text}]


class Judge:
    """A reward: ``judge(item, reply)`` or ``judge.score_all(items, replies)`` (one backend call)."""

    def __init__(self, backend: JudgeBackend, scale: int = 10, max_tokens: int = 256):
        if scale < 1:
            raise ValueError(f"judge scale must be >= 1, got {scale}")
        self.backend, self.scale, self.max_tokens = backend, scale, max_tokens
        self.calls = 0
        self.unparsable = 0

    def __call__(self, item: Any, reply: Any) -> RewardResult:
        return self.score_all([item], [reply])[0]

    def score_all(self, items: Sequence[Any], replies: Sequence[Any]) -> list[RewardResult]:
        if len(items) != len(replies):
            raise ValueError(f"{len(items)} items but {len(replies)} replies")
        from qwen3.eval.backends import ChatRequest, GenParams

        params = GenParams(temperature=0.0, max_tokens=self.max_tokens)
        requests = [ChatRequest(judge_prompt(i, r, self.scale), params, enable_thinking=False)
                    for i, r in zip(items, replies)]  # fmt: skip
        verdicts = self.backend.complete(requests)
        if len(verdicts) != len(items):
            raise RuntimeError(f"judge backend returned {len(verdicts)} verdicts for {len(items)} prompts")
        return [self._result(item, verdict) for item, verdict in zip(items, verdicts)]

    def _result(self, item: Any, verdict: Any) -> RewardResult:
        self.calls += 1
        if verdict.error is not None:
            self.unparsable += 1
            log.warning("judge: the request for item %s failed (%s); scored 0", item.id, verdict.error)
            return RewardResult(0.0, f"judge: no verdict ({verdict.error[:80]}; scored 0)")
        verdict = verdict.content
        score = parse_score(verdict, self.scale)
        if score is None:
            self.unparsable += 1
            log.warning("judge: no score in the verdict for item %s; scored 0: %.200r", item.id, verdict)
            return RewardResult(0.0, "judge: unparsable verdict (scored 0)")
        return RewardResult(score, f"judge: {score * self.scale:g}/{self.scale}")


@dataclass
class Agreement:
    items: int
    agreed: int
    judge_pass_rule_fail: int
    judge_fail_rule_pass: int

    @property
    def rate(self) -> float:
        return self.agreed / self.items if self.items else float("nan")

    def to_dict(self) -> dict[str, float]:
        return {"items": self.items, "agreed": self.agreed, "rate": self.rate,
                "judge_pass_rule_fail": self.judge_pass_rule_fail,
                "judge_fail_rule_pass": self.judge_fail_rule_pass}  # fmt: skip


def agreement(
    judged: Sequence[RewardResult], grades: Sequence[Any | None], threshold: float = 0.5
) -> Agreement:
    """Pass/fail agreement of the judge (score >= ``threshold``) with the rule verifier's ``Grade.correct`` over
    the items the verifier applies to (a None grade is skipped)."""
    if len(judged) != len(grades):
        raise ValueError(f"{len(judged)} judge results but {len(grades)} grades")
    pairs = [(j.score >= threshold, bool(g.correct)) for j, g in zip(judged, grades) if g is not None]
    return Agreement(
        len(pairs), sum(a == b for a, b in pairs), sum(a and not b for a, b in pairs),
        sum(b and not a for a, b in pairs),
    )  # fmt: skip


def rule_grades(items: Sequence[Any], replies: Sequence[Any]) -> list[Any | None]:
    """``qwen3.eval.grade`` of each pair, None where the family has no rule verifier."""
    from qwen3.eval import grade

    out: list[Any | None] = []
    for item, reply in zip(items, replies):
        try:
            out.append(grade(item, reply))
        except (KeyError, ValueError):
            out.append(None)
    return out


# -------------------------------------------------------------------------------------------------- backends
def in_process_judge(model: Any, **engine: Any) -> Any:
    """A judge backend running ``model`` (a checkpoint directory, a preset or a ``qwen3.LLM``) in this process."""
    from qwen3.eval.backends import InProcessBackend

    return InProcessBackend(model, **engine)


def openai_judge(base_url: str, model: str, api_key: str | None = None, concurrency: int = 8) -> Any:
    """A judge backend at an OpenAI-compatible ``base_url`` (e.g. ``http://localhost:8000/v1``)."""
    from qwen3.eval.backends import OpenAIBackend

    return OpenAIBackend(base_url, model, api_key=api_key, concurrency=concurrency)
