"""Stage 1 of Qwen3's post-training: the Long-CoT cold start (report section 4.1).

The report curates verifiable problems, filters the queries (not verifiable; already answered right without
chain of thought; a validation set kept out), samples N candidate responses per query from a teacher (QwQ-32B),
filters the responses (wrong answer, repetition, guesswork, thought and summary disagreeing, language mixing,
similar to validation items) and fine-tunes on a small selected subset with few steps, to "instill foundational
reasoning patterns without overly emphasizing immediate reasoning performance". Here:

- ``ColdStartConfig`` holds the data knobs (the ``[cold_start]`` table of a preset); the rest of the preset is a
  ``TrainConfig`` for chat SFT with an assistant-only loss.
- ``build_cold_start_data`` runs the query filters, the teacher, the response filters and the selection, with a
  ``FilterReport`` per filter chain (qwen3/train/filters.py).
- Teachers: ``"solutions"`` (the world's worked solutions with realistic noise injected by ``noisy_candidates``:
  wrong answers, repetition, guesswork, contradicting summaries) or a checkpoint directory served by our engine.
- ``run_cold_start`` trains on the result with the shared ``Trainer`` (``qwen3 train cold-start-debug``) and
  writes the data, the filter reports and the dropped examples into the run directory.
"""

from __future__ import annotations

import copy
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3.train.filters import (
    Candidate,
    Consistency,
    CorrectAnswer,
    FilterReport,
    Guesswork,
    HeldOut,
    LanguageMixing,
    NotSolvedWithoutThinking,
    Repetition,
    ThinkTags,
    ValidationOverlap,
    Verifiable,
    apply_filters,
    no_think_pass_rates,
)
from qwen3.train.settings import SettingsError
from qwen3.train.stages import register_stage
from qwen3.utils.atomic import atomic_write_json, atomic_write_text

NOISE_KINDS = ("wrong_answer", "repetition", "guesswork", "contradiction")
BUILTIN_TASKS = ("arith",)  # "world:<family>" takes items from qwen3.world.generate


@dataclass
class ColdStartConfig:
    """Cold-start data settings (report section 4.1; the filters are the report's list, the numbers are ours:
    the report gives no sample counts or hyperparameters).

    Queries:
    - ``tasks``: where queries come from: "arith" (a built-in multi-step arithmetic task with worked solutions)
      or "world:<family>" (``qwen3.world.generate``, e.g. "world:reasoning"); ``train_queries`` /
      ``validation_queries`` items of each (the validation split is the world's hash split, kept out of
      training: report "reserve a validation query set").
    - ``no_think_samples`` (k) non-thinking samples per query from the current model (our engine, one batched
      call) with ``no_think_max_tokens``; a query whose pass rate is >= ``no_think_threshold`` is dropped (report:
      "remove queries that Qwen2.5-72B-Instruct answers correctly without CoT"). k = 0 turns the filter off.
    - ``max_questions``: more question marks than this = several sub-questions, not easily verifiable.

    Responses:
    - ``teacher``: "solutions" (worked solutions with noise) or a model directory (our engine samples
      ``candidates_per_query`` thinking-mode replies at ``teacher_temperature`` with ``teacher_max_tokens``; the
      report's teacher is QwQ-32B). ``candidates_per_query`` is the report's N.
    - ``noise``: the share of solution candidates given each kind of noise (``NOISE_KINDS``), so the filters
      have realistic failures to remove.
    - ``repetition_n`` / ``max_repetition``: word n-gram repetition rate above which a response is dropped, and
      ``max_line_repeats``: most times one line may occur (a degenerate loop);
      ``min_thought_words``: a shorter thought is guesswork; ``max_foreign_letters``: language mixing;
      ``overlap_n`` / ``max_overlap``: n-gram overlap with validation items above which a response is dropped.

    Selection (report: "minimize both the number of training samples and the training steps"):
    ``responses_per_query`` kept per query, at most ``max_samples`` in all. ``seed`` drives noise and sampling.
    """

    tasks: list[str] = field(default_factory=lambda: ["world:reasoning"])
    train_queries: int = 64
    validation_queries: int = 16
    no_think_samples: int = 4
    no_think_threshold: float = 0.5
    no_think_max_tokens: int = 64
    max_questions: int = 1
    teacher: str = "solutions"
    candidates_per_query: int = 4
    teacher_temperature: float = 0.6
    teacher_max_tokens: int = 1024
    noise: dict[str, float] = field(
        default_factory=lambda: {
            "wrong_answer": 0.2,
            "repetition": 0.1,
            "guesswork": 0.1,
            "contradiction": 0.1,
        }
    )
    repetition_n: int = 8
    max_repetition: float = 0.3
    max_line_repeats: int = 3
    min_thought_words: int = 12
    max_foreign_letters: float = 0.05
    overlap_n: int = 8
    max_overlap: float = 0.5
    responses_per_query: int = 1
    max_samples: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.tasks:
            raise SettingsError("cold_start.tasks: name at least one task")
        check_tasks("cold_start.tasks", self.tasks)
        for name in ("train_queries", "candidates_per_query", "responses_per_query", "max_samples",
                     "no_think_max_tokens", "teacher_max_tokens", "repetition_n", "overlap_n", "max_line_repeats"):  # fmt: skip
            _at_least(name, getattr(self, name), 1)
        for name in ("validation_queries", "no_think_samples", "max_questions", "min_thought_words"):
            _at_least(name, getattr(self, name), 0)
        for name in ("no_think_threshold", "max_repetition", "max_foreign_letters", "max_overlap"):
            _fraction(name, getattr(self, name))
        if not self.teacher_temperature >= 0:
            raise SettingsError(
                f"cold_start.teacher_temperature: must be >= 0, got {self.teacher_temperature}"
            )
        unknown = sorted(set(self.noise) - set(NOISE_KINDS))
        if unknown:
            raise SettingsError(
                f"cold_start.noise: unknown kind {unknown[0]!r} (kinds: {', '.join(NOISE_KINDS)})"
            )
        for kind, share in self.noise.items():
            _fraction(f"noise.{kind}", share)
        if sum(self.noise.values()) > 1:
            raise SettingsError(f"cold_start.noise: the shares add up to {sum(self.noise.values()):g} > 1")
        if self.teacher != "solutions" and not (Path(self.teacher) / "config.json").is_file():
            from qwen3.model.run_dir import resolve_model_dir

            if not (resolve_model_dir(self.teacher) / "config.json").is_file():
                raise SettingsError(
                    f"cold_start.teacher: {self.teacher!r} is neither 'solutions' nor a model directory"
                )


def check_tasks(where: str, tasks: Sequence[str]) -> None:
    """Each task is built in or a family of the world (``qwen3.world.FAMILIES``)."""
    from qwen3.world import FAMILIES

    for task in tasks:
        family = task.split(":", 1)[1] if task.startswith("world:") else None
        if task not in BUILTIN_TASKS and family not in FAMILIES:
            raise SettingsError(
                f"{where}: {task!r} is not one of {', '.join(BUILTIN_TASKS)} or 'world:<family>' with a family in "
                f"{', '.join(FAMILIES)}"
            )


def _at_least(name: str, value: Any, low: int, table: str = "cold_start") -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise SettingsError(f"{table}.{name}: must be an integer >= {low}, got {value!r}")


def _fraction(name: str, value: Any, table: str = "cold_start") -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise SettingsError(f"{table}.{name}: must be a number in [0, 1], got {value!r}")


# ------------------------------------------------------------------------------------------------------ queries
ANSWER_FORMAT = "End your reply with a line of the form 'Answer: <your answer>'."


def arith_item(rng: random.Random) -> tuple[list[dict[str, Any]], str, str, str]:
    """One built-in query: (messages, answer, worked solution, direct answer). ``a op b op c`` left to right."""
    numbers = [rng.randint(2, 40) for _ in range(3)]
    ops = [rng.choice("+-*") for _ in range(2)]
    value, steps = numbers[0], ["I'll work left to right and keep a running total.", f"Start: {numbers[0]}."]
    for step, (op, number) in enumerate(zip(ops, numbers[1:]), start=1):
        new = value + number if op == "+" else value - number if op == "-" else value * number
        steps.append(f"Step {step}: {value} {op} {number} = {new}.")
        value = new
    steps.append(f"So the result is {value}.")
    steps.append(f"Checking the steps once more gives the same total, so {value} is right.")
    expression = f"(({numbers[0]} {ops[0]} {numbers[1]}) {ops[1]} {numbers[2]})"
    prompt = f"Compute {expression}, working from the innermost brackets out.\n\n{ANSWER_FORMAT}"
    return (
        [{"role": "user", "content": prompt}],
        str(value),
        "\n".join(steps),
        f"{expression} = {value}.\nAnswer: {value}",
    )


def builtin_items(task: str, split: str, count: int, seed: int) -> list[Any]:
    """``count`` items of a built-in task whose query hashes into ``split`` (the world's split rule)."""
    from qwen3.world.items import Item, split_of

    rng, items, tries = random.Random(f"{task}:{seed}"), [], 0
    while len(items) < count:
        tries += 1
        if tries > 100 * count + 1000:
            raise ValueError(f"task {task!r}: could not draw {count} distinct {split} items")
        messages, answer, solution, direct = arith_item(rng)
        if split_of(messages) != split or any(i.messages == messages for i in items):
            continue
        items.append(Item(family="reasoning", id=f"{task}-{split}-{len(items)}", split=split, messages=messages,
                          reference={"answer": answer}, solution=solution, direct=direct,
                          meta={"kind": task}))  # fmt: skip
    return items


def task_items(tasks: Sequence[str], split: str, count: int, seed: int) -> list[Any]:
    """``count`` items of each task, in task order."""
    items: list[Any] = []
    for task in tasks:
        if task in BUILTIN_TASKS:
            items += builtin_items(task, split, count, seed)
        else:
            from qwen3.world import generate

            items += generate(task.split(":", 1)[1], split, count, seed=seed)
    return items


# ------------------------------------------------------------------------------------------------------ teacher
def _solution_reply(item: Any) -> tuple[str, str]:
    """The clean worked reply of an item: (thought, content ending in the Answer: line)."""
    answer = str(item.reference.get("answer", ""))
    direct = item.direct or f"Answer: {answer}"
    return item.solution or "", direct


def _wrong_value(answer: str, rng: random.Random) -> str:
    try:
        return str(int(answer) + rng.choice([-3, -2, -1, 1, 2, 3, 10]))
    except ValueError:
        return answer + "s" if answer else "unknown"


def add_noise(item: Any, kind: str, rng: random.Random) -> tuple[str, str]:
    """A worked reply with one realistic failure (``NOISE_KINDS``):

    - wrong_answer: the thought and the summary agree on a wrong value (a slip copied through);
    - repetition: a step repeated over and over (a degenerate loop);
    - guesswork: no real thought, a guess stated as the answer;
    - contradiction: the thought concludes one value, the summary gives the right one.
    """
    thought, content = _solution_reply(item)
    answer = str(item.reference.get("answer", ""))
    wrong = _wrong_value(answer, rng)
    if kind == "wrong_answer":
        slip = re.compile(rf"(?<![\w.]){re.escape(answer)}(?![\w])") if answer else None
        if slip is None or not slip.search(content):
            return thought, f"{content}\nAnswer: {wrong}"
        return slip.sub(wrong, thought), slip.sub(wrong, content)
    if kind == "repetition":
        lines = thought.splitlines() or [thought]
        loop = lines[min(1, len(lines) - 1)]
        return "\n".join(lines[:2] + [loop] * max(12, len(lines)) + lines[2:]), content
    if kind == "guesswork":
        return "Probably this one.", f"I think it is {answer}.\nAnswer: {answer}"
    if kind == "contradiction":
        return f"{thought}\nOn second thought the answer is {wrong}.", content
    raise ValueError(f"unknown noise kind {kind!r} (kinds: {', '.join(NOISE_KINDS)})")


def noisy_candidates(item: Any, count: int, noise: dict[str, float], rng: random.Random) -> list[Candidate]:
    """``count`` candidates from the item's worked solution, each clean or given one kind of noise with the
    probabilities in ``noise``; ``meta["noise"]`` records which."""
    candidates = []
    for _ in range(count):
        draw, kind = rng.random(), None
        for name in NOISE_KINDS:
            share = noise.get(name, 0.0)
            if draw < share:
                kind = name
                break
            draw -= share
        thought, content = add_noise(item, kind, rng) if kind else _solution_reply(item)
        candidates.append(Candidate(item, thought, content, "solution", {"noise": kind or "clean"}))
    return candidates


def sampled_candidates(llm: Any, items: Sequence[Any], count: int, max_tokens: int, temperature: float,
                       seed: int, thinking_budget: int | None = None) -> list[list[Candidate]]:  # fmt: skip
    """``count`` thinking-mode replies per item from a model served by our engine (one batched call)."""
    from qwen3.engine.sampling_params import SamplingParams

    if not items:
        return []
    params = [SamplingParams(n=count, temperature=temperature, top_p=0.95, max_tokens=max_tokens,
                             seed=seed + index, thinking_budget=thinking_budget)
              for index in range(len(items))]  # fmt: skip
    outputs = llm.chat([item.messages for item in items], params, enable_thinking=True, progress=False)
    groups = []
    for item, output in zip(items, outputs):
        groups.append([
            Candidate(item, c.reasoning_content or "", c.content or "", "model",
                      {"finish_reason": c.finish_reason, "closed": "</think>" in c.text})
            for c in output.outputs
        ])  # fmt: skip
    return groups


# ---------------------------------------------------------------------------------------------------- pipeline
@dataclass
class ColdStartData:
    examples: list[dict[str, Any]]  # SFT examples: {"messages": [...]} with the thought as reasoning_content
    validation: list[Any]  # the held-out validation items
    reports: list[FilterReport]
    selected: list[Candidate]

    def metrics(self) -> dict[str, int]:
        out = {"samples": len(self.examples), "validation_queries": len(self.validation)}
        for report in self.reports:
            out.update(report.metrics())
        return out

    def write(self, directory: str | Path) -> None:
        """train.jsonl, validation.jsonl, filters.json (the reports) and dropped.jsonl (examples), atomically."""
        directory = Path(directory)
        atomic_write_text(directory / "train.jsonl", _jsonl(self.examples))
        atomic_write_text(
            directory / "validation.jsonl", _jsonl([item.to_dict() for item in self.validation])
        )
        atomic_write_json(directory / "filters.json", {"metrics": self.metrics(),
                                                       "reports": [r.to_dict() for r in self.reports]})  # fmt: skip
        atomic_write_text(directory / "dropped.jsonl", _jsonl([e for r in self.reports for e in r.examples]))


def _jsonl(records: Sequence[Any]) -> str:
    return "".join(json.dumps(record, ensure_ascii=False) + "\n" for record in records)


def query_filters(config: ColdStartConfig, validation: Sequence[Any], llm: Any, items: Sequence[Any]) -> list:
    filters: list[Any] = [Verifiable(max_questions=config.max_questions),
                          HeldOut(frozenset(item.query_hash for item in validation))]  # fmt: skip
    if config.no_think_samples and llm is not None:
        rates = no_think_pass_rates(
            llm, items, config.no_think_samples, config.no_think_max_tokens, config.seed
        )
        filters.append(NotSolvedWithoutThinking(rates, config.no_think_threshold))
    return filters


def response_filters(config: ColdStartConfig, validation: Sequence[Any]) -> list:
    return [
        ThinkTags(),
        CorrectAnswer(),
        Repetition(config.repetition_n, config.max_repetition, config.max_line_repeats),
        Guesswork(config.min_thought_words),
        Consistency(),
        LanguageMixing(config.max_foreign_letters),
        ValidationOverlap(validation, config.overlap_n, config.max_overlap),
    ]


def select(candidates: Sequence[Candidate], per_query: int, limit: int) -> list[Candidate]:
    """At most ``per_query`` responses per query (the first kept), at most ``limit`` in all, in query order."""
    taken: dict[str, int] = {}
    chosen = []
    for candidate in candidates:
        key = candidate.item.query_hash
        if taken.get(key, 0) < per_query and len(chosen) < limit:
            taken[key] = taken.get(key, 0) + 1
            chosen.append(candidate)
    return chosen


def training_example(candidate: Candidate) -> dict[str, Any]:
    return {"messages": [*copy.deepcopy(candidate.item.messages), candidate.message()],
            "tools": candidate.item.tools}  # fmt: skip


def build_cold_start_data(
    config: ColdStartConfig,
    train_items: Sequence[Any] | None = None,
    validation_items: Sequence[Any] | None = None,
    model_llm: Any = None,
    teacher_llm: Any = None,
) -> ColdStartData:
    """Query filters -> N candidates per query -> response filters -> selection. ``model_llm`` (a ``qwen3.LLM``
    on the current model) measures the no-thinking pass rates (None: that filter is off); ``teacher_llm`` samples
    the candidates when ``config.teacher`` is a model (else the worked solutions with noise are used)."""
    if train_items is None:
        train_items = task_items(config.tasks, "train", config.train_queries, config.seed)
    if validation_items is None:
        validation_items = task_items(config.tasks, "validation", config.validation_queries, config.seed)
    validation = list(validation_items)
    queries, query_report = apply_filters(
        query_filters(config, validation, model_llm, train_items), train_items, "queries"
    )
    if config.teacher == "solutions":
        rng = random.Random(config.seed)
        groups = [noisy_candidates(item, config.candidates_per_query, config.noise, rng) for item in queries]
    else:
        if teacher_llm is None:
            raise ValueError(f"cold_start.teacher {config.teacher!r} is a model: pass teacher_llm")
        groups = sampled_candidates(teacher_llm, queries, config.candidates_per_query, config.teacher_max_tokens,
                                    config.teacher_temperature, config.seed)  # fmt: skip
    candidates = [candidate for group in groups for candidate in group]
    kept, response_report = apply_filters(response_filters(config, validation), candidates, "responses")
    chosen = select(kept, config.responses_per_query, config.max_samples)
    return ColdStartData(
        [training_example(c) for c in chosen], validation, [query_report, response_report], chosen
    )


# ------------------------------------------------------------------------------------------------------ runner
class ReportMetrics:
    """A trainer hook that adds the data-building numbers to the first step's record in metrics.jsonl."""

    def __init__(self, metrics: dict[str, Any]):
        self.values = dict(metrics)

    def on_step_end(self, trainer: Any, step: int, metrics: dict[str, Any]) -> None:
        if step == 1:
            metrics.update({f"data/{key}": value for key, value in self.values.items()})


def split_stage_table(table: dict[str, Any], name: str, cls: type, stage: str) -> tuple[Any, dict[str, Any]]:
    """A preset's ``[name]`` table as ``cls`` and the rest as a chat-SFT ``TrainConfig`` table."""
    from qwen3.train.settings import from_table

    rest = copy.deepcopy(table)
    settings = from_table(cls, rest.pop(name, {}), name)
    data = rest.setdefault("data", {})
    if data.get("kind", "sft") != "sft" or data.get("paths") or data.get("synthetic"):
        raise SettingsError(
            f"{stage}: the data comes from [{name}]; leave data.kind, paths and synthetic unset"
        )
    data["kind"] = "sft"
    rest.setdefault("stage", stage)
    return settings, rest


def policy_llm(config: Any, env: Any) -> Any:
    """A ``qwen3.LLM`` on the weights the run starts from (``init_from``, else ``model.name``), for data."""
    from qwen3 import LLM
    from qwen3.train import build, checkpoint

    weights = checkpoint.model_dir(checkpoint.resolve_init(config.init_from)) if config.init_from else None
    model = build.build_model(config.model, env.device, config.data.seq_len, weights).eval()
    directory = weights or (
        Path(config.model.name) if (Path(config.model.name) / "config.json").is_file() else None
    )
    tokenizer = build.build_tokenizer(config.data, model.config.vocab_size, directory)
    limit = min(model.config.max_position_embeddings, 4096)
    return LLM(model, tokenizer=tokenizer, seed=config.seed, max_model_len=limit)


def train_on_examples(config: Any, examples: list[dict[str, Any]], metrics: dict[str, Any], *, resume: bool,
                      overwrite: bool, env: Any, progress: bool | None) -> Any:  # fmt: skip
    """Chat SFT (assistant-only loss, as ``data`` says) on ``examples``; the data numbers go to step 1's metrics."""
    from qwen3.train.trainer import Trainer

    if not examples:
        raise SettingsError(f"{config.stage}: the data builder kept no training example (see its report)")
    return Trainer(config, source=examples, resume=resume, overwrite=overwrite, env=env, progress=progress,
                   hooks=[ReportMetrics(metrics)])  # fmt: skip


def make_stage_trainer(table: dict[str, Any], name: str, cls: type, build: Any, *, resume: bool = False,
                       overwrite: bool = False, env: Any = None, progress: bool | None = None) -> Any:  # fmt: skip
    """The ``Trainer`` of a data-building SFT stage: ``[name]`` parsed as ``cls``, ``build(settings, config,
    env)`` makes the data (``.examples``, ``.metrics()``, ``.write(dir)``), written to RUN_DIR/data by rank 0."""
    from qwen3.train import distributed
    from qwen3.train.config import TrainConfig

    settings, rest = split_stage_table(table, name, cls, name)
    config = TrainConfig.from_dict(rest)
    env = env or distributed.init_distributed(config.device)
    data = build(settings, config, env)
    if env.is_main:
        data.write(Path(config.run_dir) / "data")
    return train_on_examples(config, data.examples, data.metrics(), resume=resume, overwrite=overwrite, env=env,
                             progress=progress)  # fmt: skip


def _build_for_run(settings: ColdStartConfig, config: Any, env: Any) -> ColdStartData:
    from qwen3 import LLM

    model_llm = policy_llm(config, env) if settings.no_think_samples else None
    teacher = None if settings.teacher == "solutions" else LLM(settings.teacher, seed=settings.seed)
    return build_cold_start_data(settings, model_llm=model_llm, teacher_llm=teacher)


def make_trainer(table: dict[str, Any], **options: Any) -> Any:
    """A ``Trainer`` for the cold start from a preset table: builds and writes the data, then SFT on it;
    ``options``: resume, overwrite, env, progress."""
    return make_stage_trainer(table, "cold_start", ColdStartConfig, _build_for_run, **options)


def check_stage(table: dict[str, Any], name: str, cls: type, stage: str) -> list[Any]:
    """Parse a stage preset without doing any work: [its TrainConfig] (bad ``[name]`` values raise here)."""
    from qwen3.train.config import TrainConfig

    return [TrainConfig.from_dict(split_stage_table(table, name, cls, stage)[1])]


def check_cold_start(table: dict[str, Any]) -> list[Any]:
    return check_stage(table, "cold_start", ColdStartConfig, "cold_start")


@register_stage("cold_start", check=check_cold_start, description="Long-CoT cold start (report section 4.1)")
def run_cold_start(table: dict[str, Any], **options: Any) -> Any:
    """Build the cold-start data and fine-tune on it (``qwen3 train cold-start-debug``); ``options``: resume,
    overwrite, env, progress. Returns the ``TrainResult``."""
    return make_trainer(table, **options).fit()
