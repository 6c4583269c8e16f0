"""The runner behind ``qwen3 eval``: suites x modes through a backend, pass@1 / pass@k, results.json, the
Table 22-style Markdown table and the thinking-budget curve (report Figure 2).

Determinism: every request's seed is a hash of (seed, suite, item id, sample, budget), so a reply depends only on
the model, the item and the seed, not on which other items are in the run (``--limit``) or in what batch.
"""

from __future__ import annotations

import hashlib
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from math import comb
from typing import Any

from qwen3.eval.backends import ChatRequest, EvalError, GenParams
from qwen3.eval.graders import Grade, safe_grade
from qwen3.eval.reply import MODES, Reply

# suite -> (task family, the report's benchmark it stands for; * = in-house, Table 22)
SUITES: dict[str, tuple[str, str]] = {
    "reasoning": ("reasoning", "Reasoning (AIME'24 / LiveCodeBench v5)"),
    "knowledge": ("knowledge", "Knowledge (MMLU-Redux / GPQA-Diamond)"),
    "counterfact": ("counterfact", "CounterFactQA*"),
    "ifeval": ("ifeval", "IFEval strict prompt"),
    "lengthctrl": ("lengthctrl", "LengthCtrl*"),
    "tooluse": ("tooluse", "ToolUse*"),
    "thinkfollow": ("thinkfollow", "ThinkFollow*"),
    "longctx": ("longctx", "Long context (RULER)"),
    "budget": ("reasoning", "Thinking budget (Figure 2)"),
}
# ThinkFollow items carry their own flags: one score for both modes, as Table 22 gives it.
MODELESS_SUITES = {"thinkfollow"}
BOTH = "both"
SAMPLING = ("preset", "greedy")
DEFAULT_BUDGETS = (1024, 2048, 4096, 8192, 16384)

# Report §4.6: thinking T 0.6, top-p 0.95, top-k 20; non-thinking T 0.7, top-p 0.8, top-k 20, presence penalty 1.5.
PRESETS = {
    "think": {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "presence_penalty": 0.0},
    "no_think": {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "presence_penalty": 1.5},
}
GREEDY = {"temperature": 0.0, "top_p": 1.0, "top_k": 0, "presence_penalty": 0.0}


@dataclass(frozen=True)
class EvalOptions:
    """How a run is made.

    - ``samples``: k replies per item; pass@1 is their mean and pass@k the unbiased estimator (Chen et al. 2021,
      "Evaluating Large Language Models Trained on Code"); the report averages 64 samples on AIME, 10 on GPQA
      (§4.6). ``seed``: every request's seed derives from it. ``limit``: items per suite. ``split``: the world
      split the items come from ("validation" while tuning, "test" for reported numbers).
    - ``sampling``: "preset" (report §4.6: thinking T 0.6 / top-p 0.95 / top-k 20, non-thinking T 0.7 / top-p 0.8
      / top-k 20 / presence penalty 1.5) or "greedy". ``max_tokens``: per reply (None: up to the context; the
      report allows 32,768).
    - ``tool_rounds``: most model turns of a ToolUse item (single-, multi-call and multi-step tasks, §4.7).
    - ``budgets``: the thinking budgets of the budget curve (Figure 2: 1K to 32K). ``open_thought``: thinking
      prompts end in ``<think>\n`` (in process only), so a model that never opens a thought itself (an untrained
      debug model) still meets the budget.
    - ``records``: keep per-item records; ``progress``: progress bars; ``execute``: runs a tool call
      (``qwen3.world.tools.execute`` when None).
    """

    samples: int = 1
    seed: int = 0
    limit: int = 50
    sampling: str = "preset"
    max_tokens: int | None = None
    tool_rounds: int = 4
    budgets: tuple[int, ...] = DEFAULT_BUDGETS
    records: bool = True
    open_thought: bool = False
    split: str = "test"
    progress: bool = False
    execute: Callable[[str, Any], str] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise EvalError(f"--samples must be >= 1, got {self.samples}")
        if self.limit < 1:
            raise EvalError(f"--limit must be >= 1, got {self.limit}")
        if self.sampling not in SAMPLING:
            raise EvalError(f"--sampling must be one of {', '.join(SAMPLING)}, got {self.sampling!r}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise EvalError(f"--max-tokens must be >= 1, got {self.max_tokens}")
        if self.tool_rounds < 1:
            raise EvalError(f"--tool-rounds must be >= 1, got {self.tool_rounds}")
        if self.split not in ("train", "validation", "test"):
            raise EvalError(f"--split must be train, validation or test, got {self.split!r}")
        if len(self.budgets) < 1 or any(b < 0 for b in self.budgets):
            raise EvalError(f"--budgets must be thinking budgets >= 0, got {list(self.budgets)}")


def parse_list(text: str | Sequence[str], known: Sequence[str], what: str) -> list[str]:
    """A comma-separated list of known names, order kept, duplicates dropped; an unknown one is an EvalError."""
    names = [name.strip() for name in (text.split(",") if isinstance(text, str) else text) if name.strip()]
    for name in names:
        if name not in known:
            raise EvalError(f"unknown {what} {name!r} (known: {', '.join(known)})")
    if not names:
        raise EvalError(f"no {what} given (known: {', '.join(known)})")
    return list(dict.fromkeys(names))


def pass_at_k(n: int, c: int, k: int) -> float:
    """The unbiased pass@k estimator (Chen et al. 2021): 1 - C(n-c, k) / C(n, k) for c right of n samples."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n}, c={c}, k={k}")
    if n - c < k:
        return 1.0
    return 1.0 - comb(n - c, k) / comb(n, k)


def request_seed(seed: int, *parts: Any) -> int:
    digest = hashlib.sha256(repr((seed, *parts)).encode()).hexdigest()
    return int(digest[:15], 16)


def gen_params(mode: str, options: EvalOptions, seed: int, budget: int | None = None) -> GenParams:
    """The request's sampling settings. Under a thinking budget the reply may run to ``budget + max_tokens``: the
    budget caps the thought and ``max_tokens`` stays the room for what follows it (the forced stop-thinking text
    and the answer), so that a budget at or above ``max_tokens`` still measures the budget, not the length cap."""
    values = GREEDY if options.sampling == "greedy" else PRESETS[mode]
    max_tokens = options.max_tokens
    if budget is not None and max_tokens is not None:
        max_tokens += budget
    return GenParams(**values, max_tokens=max_tokens, seed=seed, thinking_budget=budget)


def mode_switch(mode: str, item) -> tuple[bool | None, str]:
    """(enable_thinking for the prompt, the mode whose settings apply). Modes use the hard switch; a modeless
    suite keeps the item's own switch and flags."""
    if mode != BOTH:
        return mode == "think", mode
    from qwen3.chat import resolve_thinking

    thinking = resolve_thinking(item.messages, item.enable_thinking)
    return item.enable_thinking, "think" if thinking else "no_think"


# -- one suite in one mode ------------------------------------------------------------------------------------
def run_items(
    backend, suite: str, items: Sequence, mode: str, options: EvalOptions, budget: int | None = None
) -> list[list[tuple[Grade, list[Reply]]]]:
    """Grade ``options.samples`` replies to every item: per item, a list of (grade, the replies of each round)."""
    jobs = [(item, sample) for item in items for sample in range(options.samples)]
    requests = []
    for item, sample in jobs:
        enable_thinking, settings = mode_switch(mode, item)
        seed = request_seed(options.seed, suite, item.id, sample, budget)
        params = gen_params(settings, options, seed, budget)
        request = ChatRequest(list(item.messages), params, item.tools, enable_thinking, options.open_thought)
        requests.append(request)
    transcripts = run_rounds(backend, requests, [item.family == "tooluse" for item, _ in jobs], options)
    results: list[list[tuple[Grade, list[Reply]]]] = [[] for _ in items]
    for index, (replies, (item, _)) in enumerate(zip(transcripts, jobs)):
        graded = safe_grade(item, replies if item.family == "tooluse" else replies[-1])
        results[index // options.samples].append((graded, replies))
    return results


def run_rounds(
    backend, requests: list[ChatRequest], multi: list[bool], options: EvalOptions
) -> list[list[Reply]]:
    """Every request's replies, round by round: a ToolUse reply with tool calls gets the real tools' results
    appended (assistant message, then one ``tool`` message per call, as the chat format renders them) and goes
    back to the model, up to ``options.tool_rounds`` turns. Each round is one batch through the backend."""
    transcripts: list[list[Reply]] = [[] for _ in requests]
    pending = list(range(len(requests)))
    for turn in range(options.tool_rounds):
        replies = backend.complete([requests[i] for i in pending], progress=options.progress)
        following = []
        for index, reply in zip(pending, replies):
            transcripts[index].append(reply)
            if multi[index] and reply.tool_calls and reply.error is None and turn + 1 < options.tool_rounds:
                requests[index] = with_tool_results(requests[index], reply, turn + 1, options.execute)
                following.append(index)
        pending = following
        if not pending:
            break
    return transcripts


def with_tool_results(request: ChatRequest, reply: Reply, turn: int, execute=None) -> ChatRequest:
    from dataclasses import replace

    if execute is None:
        from qwen3.world.tools import execute

    messages = [*request.messages, reply.message()]
    for call in reply.tool_calls:
        try:
            result = execute(call["function"]["name"], call["function"]["arguments"])
        except Exception as err:  # execute() promises an error result, but a tool bug must not end the run
            result = f'{{"error": "{type(err).__name__}"}}'
        messages.append({"role": "tool", "tool_call_id": call["id"], "content": result})
    seed = None if request.params.seed is None else request_seed(request.params.seed, "round", turn)
    return replace(request, messages=messages, params=replace(request.params, seed=seed))


def summarize(family: str, graded: list[list[tuple[Grade, list[Reply]]]], samples: int) -> dict[str, Any]:
    """score (mean continuous score), pass@1, pass@k, n, stderr of the per-item mean, failed requests, and the
    family's own metrics."""
    per_item = [sum(g.score for g, _ in item) / len(item) for item in graded]
    n = len(per_item)
    score = sum(per_item) / n if n else 0.0
    stderr = math.sqrt(sum((s - score) ** 2 for s in per_item) / (n - 1) / n) if n > 1 else 0.0
    correct = [sum(g.correct for g, _ in item) for item in graded]
    summary: dict[str, Any] = {
        "score": score,
        "n": n,
        "samples": samples,
        "stderr": stderr,
        "pass@1": sum(c / samples for c in correct) / n if n else 0.0,
        "failed": sum(1 for item in graded for _, replies in item if any(r.error for r in replies)),
    }
    if samples > 1:
        summary[f"pass@{samples}"] = sum(pass_at_k(samples, c, samples) for c in correct) / n if n else 0.0
    summary["metrics"] = family_metrics(family, [g for item in graded for g, _ in item], graded)
    return summary


def family_metrics(family: str, grades: list[Grade], graded) -> dict[str, float]:
    def mean(values: list[float]) -> float:
        return sum(values) / len(values) if values else 0.0

    metrics: dict[str, float] = {}
    if family == "ifeval":
        details = [g.details for g in grades]
        metrics["prompt_strict"] = mean([float(d.get("prompt_strict", False)) for d in details])
        metrics["prompt_loose"] = mean([float(d.get("prompt_loose", False)) for d in details])
        strict = [ok for d in details for ok in d.get("strict", [False])]
        loose = [ok for d in details for ok in d.get("loose", [False])]
        metrics["instruction_strict"] = mean([float(x) for x in strict])
        metrics["instruction_loose"] = mean([float(x) for x in loose])
    elif family == "tooluse":
        for part in ("intent", "format", "parameters", "answer"):
            values = [g.details[part] for g in grades if part in g.details]
            if values:
                metrics[part] = mean(values)
    elif family == "lengthctrl":
        metrics["relative_error"] = mean([g.details.get("relative_error", 1.0) for g in grades])
    modes = [g.details.get("mode") for g in grades]
    metrics["think_share"] = mean([float(m == "think") for m in modes])
    metrics["unclosed_share"] = mean([float(m == "unclosed") for m in modes])
    tokens = [
        r.reasoning_tokens for item in graded for _, rs in item for r in rs if r.reasoning_tokens is not None
    ]
    if tokens:
        metrics["reasoning_tokens"] = mean([float(t) for t in tokens])
    return metrics


def records(items: Sequence, graded) -> list[dict[str, Any]]:
    return [
        {
            "id": item.id,
            "sample": sample,
            **grade.to_dict(),
            "rounds": len(replies),
            "reply": replies[-1].to_dict(),
        }
        for item, results in zip(items, graded)
        for sample, (grade, replies) in enumerate(results)
    ]


def evaluate(backend, suite: str, items: Sequence, mode: str, options: EvalOptions, budget=None) -> dict:
    start = time.perf_counter()
    graded = run_items(backend, suite, items, mode, options, budget)
    summary = summarize(items[0].family if items else SUITES[suite][0], graded, options.samples)
    summary["wall_s"] = time.perf_counter() - start
    if options.records:
        summary["items"] = records(items, graded)
    return summary


# -- items --------------------------------------------------------------------------------------------------------
def load_items(suite: str, options: EvalOptions, items_by_family: dict[str, list] | None = None) -> list:
    """``options.split`` of the suite's family (``qwen3.world.generate``), or the given items of that family."""
    family = SUITES[suite][0]
    if items_by_family is not None:
        items = items_by_family.get(family)
        if not items:
            raise EvalError(f"suite {suite!r}: the items file has no {family!r} items")
        return list(items)[: options.limit]
    try:
        from qwen3.world import generate
    except ImportError:
        raise EvalError("qwen3.world has no task generators (qwen3.world.generate) in this version") from None
    try:
        return generate(family, options.split, options.limit, seed=options.seed)
    except ValueError as err:
        raise EvalError(f"suite {suite!r}: {err}") from None


# -- all suites ---------------------------------------------------------------------------------------------------
def run_suites(
    backend,
    suites: Sequence[str],
    modes: Sequence[str] = MODES,
    options: EvalOptions | None = None,
    items_by_family: dict[str, list] | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Evaluate every suite in every mode; the results dict that results.json holds (docs/eval.md)."""
    options = options or EvalOptions()
    suites = parse_list(suites, list(SUITES), "suite")
    modes = parse_list(modes, MODES, "mode")
    say = log or (lambda text: print(text, file=sys.stderr))
    items = {
        suite: load_items(suite, options, items_by_family) for suite in suites
    }  # bad input before any work
    start = time.perf_counter()
    results: dict[str, Any] = {
        "model": getattr(backend, "label", type(backend).__name__),
        "backend": getattr(backend, "name", type(backend).__name__),
        "options": options_dict(options),
        "suites": {},
    }
    for suite in suites:
        if suite == "budget":
            results["budget"] = budget_curve(backend, items[suite], options, say)
            continue
        for mode in [BOTH] if suite in MODELESS_SUITES else modes:
            summary = evaluate(backend, suite, items[suite], mode, options)
            results["suites"].setdefault(suite, {})[mode] = summary
            say(
                f"{suite} [{mode}]: {100 * summary['score']:.1f} (n={summary['n']}, {summary['wall_s']:.1f}s)"
            )
    results["wall_s"] = time.perf_counter() - start
    return results


def options_dict(options: EvalOptions) -> dict[str, Any]:
    values = {key: value for key, value in options.__dict__.items() if key not in ("execute", "progress")}
    return {**values, "budgets": list(options.budgets)}


def budget_curve(
    backend, items: Sequence, options: EvalOptions, say: Callable[[str], None]
) -> dict[str, Any]:
    """Reasoning accuracy in thinking mode at each budget (report Figure 2) and the non-thinking score as the
    reference line."""
    points = []
    for budget in sorted(options.budgets):
        summary = evaluate(backend, "budget", items, "think", options, budget=budget)
        points.append({"budget": budget, **summary})
        say(f"budget {budget}: {100 * summary['score']:.1f} (n={summary['n']})")
    no_think = evaluate(backend, "budget", items, "no_think", options)
    say(f"budget non-thinking: {100 * no_think['score']:.1f}")
    return {"budgets": sorted(options.budgets), "think": points, "no_think": no_think}
