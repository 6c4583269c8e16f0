"""Stage 3 of Qwen3's post-training: Thinking Mode Fusion (report section 4.3).

Continual SFT of the stage-2 model on a mix of thinking and non-thinking data, in the chat format whose
``/think`` and ``/no_think`` flags switch between them. Here:

- Thinking data: rejection sampling on stage-1 queries with the model being fine-tuned (the stage-2 model
  itself), a reply kept only when ``qwen3.eval.grade`` verifies it and no think tag is left inside its thought or
  answer (``qwen3.train.filters.ThinkTags``; ``rejection_sample``); a query with no
  verified sample may fall back to its worked solution (``solution_fallback``, also verified; counted apart).
- Non-thinking data: direct answers (an empty think block) for the world's reasoning, knowledge, instruction
  following, tool use and length tasks (``qwen3.world.sft.chat_example(item, "no_think")`` when the world has it,
  else the item's ``direct`` answer).
- Dialogues (``compose_dialogues``): single- and multi-turn, each turn's flag placed at random in the user query
  or a system message (sometimes with an opposite flag earlier in the same message), the response obeying the
  last flag; some thinking turns carry no flag (thinking is the default). History is whatever
  ``qwen3.chat.render`` makes of it: earlier turns' thinking dropped, non-thinking replies with an empty think
  block. Every turn's mode is checked with ``qwen3.chat.resolve_thinking``.
- ``MixReport``: samples per kind, final-turn modes, flag placements, turns per dialogue, rejection sampling.
- ``run_fusion``: packed chat SFT with an assistant-only loss on the mix (``qwen3 train fusion-debug``).
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3.chat.modes import SOFT_SWITCH, resolve_thinking
from qwen3.train.cold_start import (
    _at_least,
    _fraction,
    _jsonl,
    check_stage,
    check_tasks,
    make_stage_trainer,
    policy_llm,
    sampled_candidates,
    task_items,
)
from qwen3.train.filters import Candidate, CorrectAnswer, ThinkTags, apply_filters
from qwen3.train.settings import SettingsError
from qwen3.train.stages import register_stage
from qwen3.utils.atomic import atomic_write_json, atomic_write_text

PLACEMENTS = ("user", "system", "none")
THINK, NO_THINK = "/think", "/no_think"


@dataclass
class FusionConfig:
    """Thinking Mode Fusion data settings (report section 4.3; the report gives no dataset sizes, these are ours).

    Thinking data (report: "rejection sampling on Stage 1 queries using the Stage 2 model itself"):
    - ``thinking_tasks`` / ``thinking_queries``: the stage-1 query source (as ``ColdStartConfig.tasks``) and how
      many training queries of each; ``samples_per_query`` thinking-mode samples each at ``temperature`` with
      ``max_new_tokens``, one batched engine call; the first one ``qwen3.eval.grade`` verifies is kept.
    - ``solution_fallback``: a query with no verified sample uses its worked solution instead (verified too,
      reported as "thinking_solution"); off = such queries are left out, as in the report.

    Non-thinking data (report: coding, mathematics, instruction following, ... with direct answers):
    - ``non_thinking``: task -> number of items (tasks as above: "arith" or "world:<family>").

    Dialogues (report: flags "in the user query or system message", "some thinking mode training samples where
    the user queries do not include /think flags", "randomly insert multiple /think and /no_think flags",
    "the model response adhering to the last flag encountered"):
    - ``multi_turn``: share of dialogues with 2..``max_turns`` turns (the rest have one);
    - ``no_flag``: share of thinking turns left without a flag (when thinking is in force);
    - ``system_flag``: share of flags placed in a system message instead of the user query;
    - ``extra_flags``: share of flagged turns whose message also carries the opposite flag earlier (overridden);
    - ``train_every_turn``: every assistant turn of a multi-turn dialogue is a target in its own example
      (``qwen3.chat.expand_turns``), else only the last turn is. ``seed`` drives every random choice.
    """

    thinking_tasks: list[str] = field(default_factory=lambda: ["world:reasoning"])
    thinking_queries: int = 64
    samples_per_query: int = 4
    temperature: float = 0.6
    max_new_tokens: int = 512
    solution_fallback: bool = True
    non_thinking: dict[str, int] = field(
        default_factory=lambda: {
            "world:reasoning": 32,
            "world:knowledge": 32,
            "world:ifeval": 16,
            "world:tooluse": 16,
            "world:lengthctrl": 16,
        }  # fmt: skip
    )
    multi_turn: float = 0.3
    max_turns: int = 3
    no_flag: float = 0.3
    system_flag: float = 0.2
    extra_flags: float = 0.2
    train_every_turn: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        check_tasks("fusion.thinking_tasks", self.thinking_tasks)
        check_tasks("fusion.non_thinking", list(self.non_thinking))
        _at_least("thinking_queries", self.thinking_queries, 0, "fusion")
        _at_least("samples_per_query", self.samples_per_query, 1, "fusion")
        _at_least("max_new_tokens", self.max_new_tokens, 1, "fusion")
        _at_least("max_turns", self.max_turns, 1, "fusion")
        for task, count in self.non_thinking.items():
            _at_least(f"non_thinking.{task}", count, 0, "fusion")
        for name in ("multi_turn", "no_flag", "system_flag", "extra_flags"):
            _fraction(name, getattr(self, name), "fusion")
        if not self.temperature > 0:
            raise SettingsError(
                f"fusion.temperature: must be > 0 (rejection sampling), got {self.temperature}"
            )
        if self.multi_turn > 0 and self.max_turns < 2:
            raise SettingsError("fusion.max_turns: multi_turn > 0 needs max_turns >= 2")


# ------------------------------------------------------------------------------------------------------ samples
@dataclass
class Sample:
    """One turn's material: the query messages (a user query, no flags) and the reply messages (assistant turns,
    and tool results between them for tool use); ``mode`` "think" | "no_think"; ``kind`` for the mix report."""

    prompt: list[dict[str, Any]]
    reply: list[dict[str, Any]]
    mode: str
    kind: str
    tools: list[dict[str, Any]] | None = None


def strip_flags(text: str) -> str:
    return " ".join(SOFT_SWITCH.sub(" ", text).split()) if SOFT_SWITCH.search(text) else text


def _query_messages(messages: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The item's query with its own flags removed from user and system texts (the dialogue places its own)."""
    out = [dict(m) for m in messages]
    for message in out:
        if message.get("role") in ("user", "system") and isinstance(message.get("content"), str):
            message["content"] = strip_flags(message["content"])
    return out


def thinking_sample(candidate: Candidate, kind: str) -> Sample:
    return Sample(_query_messages(candidate.item.messages), [candidate.message()], "think", kind,
                  candidate.item.tools)  # fmt: skip


def direct_sample(item: Any, task: str) -> Sample:
    """A non-thinking sample: the world's ideal no_think example when it has one, else the item's direct answer."""
    try:
        from qwen3.world.sft import chat_example
    except ImportError:
        chat_example = None
    if chat_example is not None:
        example = chat_example(item, mode="no_think")
        messages = example["messages"]
        last_user = max(i for i, m in enumerate(messages) if m.get("role") == "user")
        reply = [dict(m) for m in messages[last_user + 1 :]]
        for message in reply:
            if message.get("role") == "assistant":
                message["reasoning_content"] = ""
        return Sample(_query_messages(messages[: last_user + 1]), reply, "no_think", f"non_thinking:{task}",
                      example.get("tools", item.tools))  # fmt: skip
    if item.direct is None:
        raise ValueError(
            f"item {item.id!r} of family {item.family!r} has no direct answer for non-thinking data"
        )
    reply = [{"role": "assistant", "content": item.direct, "reasoning_content": ""}]
    return Sample(_query_messages(item.messages), reply, "no_think", f"non_thinking:{task}", item.tools)


@dataclass
class RejectionStats:
    queries: int = 0
    samples: int = 0
    verified: int = 0  # verified samples (all of them, not only the kept one)
    queries_verified: int = 0
    solution_fallbacks: int = 0
    unsolved: int = 0  # queries left out: nothing verified and no fallback


def rejection_sample(
    llm: Any, items: Sequence[Any], config: FusionConfig
) -> tuple[list[Sample], RejectionStats]:
    """Thinking samples: for each query the first of ``samples_per_query`` model replies that is a real thought
    (non-empty, closed, no stray think tag) with a verified answer; else the worked solution when ``solution_fallback`` (verified)."""
    stats = RejectionStats(queries=len(items))
    checks = (ThinkTags(), CorrectAnswer())
    groups = sampled_candidates(llm, items, config.samples_per_query, config.max_new_tokens, config.temperature,
                                config.seed) if llm is not None else [[] for _ in items]  # fmt: skip
    samples = []
    for item, group in zip(items, groups):
        stats.samples += len(group)
        thoughts = [c for c in group if c.reasoning.strip() and c.meta.get("closed", True)]
        good = apply_filters(checks, thoughts, "fusion")[0]
        stats.verified += len(good)
        if good:
            stats.queries_verified += 1
            samples.append(thinking_sample(good[0], "thinking_sampled"))
            continue
        fallback = Candidate(item, item.solution or "", item.direct or "", "solution")
        if (
            config.solution_fallback
            and fallback.reasoning.strip()
            and apply_filters(checks, [fallback], "fusion")[0]
        ):
            stats.solution_fallbacks += 1
            samples.append(thinking_sample(fallback, "thinking_solution"))
        else:
            stats.unsolved += 1
    return samples, stats


# ---------------------------------------------------------------------------------------------------- dialogues
@dataclass
class Dialogue:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    modes: list[str]  # each turn's mode, in order
    kinds: list[str]
    placements: list[str]  # each turn's flag placement: user | system | none
    overridden: int = 0  # turns whose message also carries an overridden opposite flag

    def example(self) -> dict[str, Any]:
        return {"messages": self.messages, "tools": self.tools}


def _flag(mode: str) -> str:
    return THINK if mode == "think" else NO_THINK


def _flagged_text(text: str, mode: str, extra: bool, rng: random.Random) -> str:
    """``text`` with the turn's flag at the end (users usually append it), or at the start; with ``extra`` the
    opposite flag comes earlier in the same text, so only the last one counts."""
    flag, other = _flag(mode), _flag("no_think" if mode == "think" else "think")
    if extra:
        return f"{other} {text} {flag}"
    return f"{text} {flag}" if rng.random() < 0.8 else f"{flag} {text}"


def compose_dialogue(turns: Sequence[Sample], config: FusionConfig, rng: random.Random) -> Dialogue:
    """A dialogue of ``turns`` in order; each turn's response obeys the last flag before it (checked)."""
    messages: list[dict[str, Any]] = []
    placements, overridden, thinking = [], 0, True
    tools = next((t.tools for t in turns if t.tools), None)
    for sample in turns:
        prompt = copy.deepcopy(sample.prompt)
        query = max(i for i, m in enumerate(prompt) if m.get("role") == "user")
        wants = sample.mode == "think"
        if wants and thinking and rng.random() < config.no_flag:
            placement = "none"
        else:
            placement = "system" if rng.random() < config.system_flag else "user"
            extra = rng.random() < config.extra_flags
            overridden += extra
            if placement == "user":
                prompt[query]["content"] = _flagged_text(prompt[query]["content"], sample.mode, extra, rng)
            else:
                system = {"role": "system", "content": _flagged_text("You are a helpful assistant.", sample.mode,
                                                                     extra, rng)}  # fmt: skip
                prompt.insert(query, system)
        placements.append(placement)
        messages += prompt
        thinking = resolve_thinking(messages)
        if thinking != wants:
            raise AssertionError(
                f"turn {len(placements)}: flags ask for thinking={thinking}, reply is {sample.mode}"
            )
        messages += copy.deepcopy(sample.reply)
    return Dialogue(messages, tools, [t.mode for t in turns], [t.kind for t in turns], placements, overridden)


def compose_dialogues(samples: Sequence[Sample], config: FusionConfig) -> list[Dialogue]:
    """Every sample used once, shuffled; a share ``multi_turn`` of dialogues take 2..max_turns samples. Tool-use
    samples stay single-turn (their tools header belongs to the whole dialogue)."""
    rng = random.Random(config.seed)
    pool = list(samples)
    rng.shuffle(pool)
    dialogues, index = [], 0
    while index < len(pool):
        size = rng.randint(2, config.max_turns) if rng.random() < config.multi_turn else 1
        turns = [pool[index]]
        while len(turns) < size and index + len(turns) < len(pool) and not turns[0].tools \
                and not pool[index + len(turns)].tools:  # fmt: skip
            turns.append(pool[index + len(turns)])
        index += len(turns)
        dialogues.append(compose_dialogue(turns, config, rng))
    return dialogues


# ------------------------------------------------------------------------------------------------- mix report
@dataclass
class MixReport:
    dialogues: int
    examples: int
    kinds: dict[str, int]  # samples (turns) per kind
    final_modes: dict[str, int]  # the trained final turn's mode per dialogue
    turn_modes: dict[str, int]
    placements: dict[str, int]  # flag placement per turn
    overridden_flags: int
    turns: dict[str, int]  # dialogues per number of turns
    rejection: dict[str, int]

    def metrics(self) -> dict[str, int]:
        out = {
            "dialogues": self.dialogues,
            "examples": self.examples,
            "overridden_flags": self.overridden_flags,
        }
        for prefix, counts in (("kind", self.kinds), ("final_mode", self.final_modes),
                               ("placement", self.placements), ("turns", self.turns),
                               ("rejection", self.rejection)):  # fmt: skip
            out.update({f"{prefix}_{key}": value for key, value in counts.items()})
        return out


def mix_report(dialogues: Sequence[Dialogue], examples: int, stats: RejectionStats) -> MixReport:
    return MixReport(
        dialogues=len(dialogues),
        examples=examples,
        kinds=dict(Counter(k for d in dialogues for k in d.kinds)),
        final_modes=dict(Counter(d.modes[-1] for d in dialogues)),
        turn_modes=dict(Counter(m for d in dialogues for m in d.modes)),
        placements=dict(Counter(p for d in dialogues for p in d.placements)),
        overridden_flags=sum(d.overridden for d in dialogues),
        turns={str(n): c for n, c in sorted(Counter(len(d.modes) for d in dialogues).items())},
        rejection=dict(stats.__dict__),
    )


# ---------------------------------------------------------------------------------------------------- pipeline
@dataclass
class FusionData:
    dialogues: list[Dialogue]
    examples: list[dict[str, Any]]
    report: MixReport

    def write(self, directory: str | Path) -> None:
        directory = Path(directory)
        atomic_write_text(directory / "train.jsonl", _jsonl(self.examples))
        atomic_write_json(directory / "mix.json", self.report.__dict__)

    def metrics(self) -> dict[str, int]:
        return self.report.metrics()


def dialogue_examples(dialogues: Sequence[Dialogue], every_turn: bool) -> list[dict[str, Any]]:
    from qwen3.chat import expand_turns

    if not every_turn:
        return [d.example() for d in dialogues]
    return [{"messages": prefix, "tools": d.tools} for d in dialogues for prefix in expand_turns(d.messages)]


def build_fusion_data(
    config: FusionConfig,
    llm: Any,
    thinking_items: Sequence[Any] | None = None,
    direct_items: dict[str, Sequence[Any]] | None = None,
) -> FusionData:
    """Rejection-sampled thinking data + non-thinking data -> dialogues -> SFT examples and the mix report.
    ``llm``: a ``qwen3.LLM`` on the stage-2 model (None: no sampling, solutions only when ``solution_fallback``)."""
    if thinking_items is None:
        thinking_items = task_items(config.thinking_tasks, "train", config.thinking_queries, config.seed)
    if direct_items is None:
        direct_items = {task: task_items([task], "train", count, config.seed + 1)
                        for task, count in config.non_thinking.items() if count}  # fmt: skip
    thinking, stats = rejection_sample(llm, thinking_items, config)
    direct = [direct_sample(item, task) for task, items in direct_items.items() for item in items]
    dialogues = compose_dialogues(thinking + direct, config)
    examples = dialogue_examples(dialogues, config.train_every_turn)
    return FusionData(dialogues, examples, mix_report(dialogues, len(examples), stats))


def _build_for_run(settings: FusionConfig, config: Any, env: Any) -> FusionData:
    return build_fusion_data(settings, policy_llm(config, env) if settings.thinking_queries else None)


def make_trainer(table: dict[str, Any], **options: Any) -> Any:
    """A ``Trainer`` for Thinking Mode Fusion from a preset table (``init_from`` = the stage-2 model): builds and
    writes the mix, then packed SFT on it; ``options``: resume, overwrite, env, progress."""
    return make_stage_trainer(table, "fusion", FusionConfig, _build_for_run, **options)


def check_fusion(table: dict[str, Any]) -> list[Any]:
    return check_stage(table, "fusion", FusionConfig, "fusion")


@register_stage("fusion", check=check_fusion, description="Thinking Mode Fusion (report section 4.3)")
def run_fusion(table: dict[str, Any], **options: Any) -> Any:
    """Build the fusion mix and fine-tune on it (``qwen3 train fusion-debug``); ``options``: resume, overwrite,
    env, progress. Returns the ``TrainResult``."""
    return make_trainer(table, **options).fit()
