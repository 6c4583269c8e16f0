"""Stage 4 of Qwen3's post-training: general RL over many tasks (report section 4.4), on stage 2's GRPO machinery.

The report's task kinds and what serves them here:

- instruction following (content, format, length): the world's ``ifeval`` and ``lengthctrl`` families, rule
  rewards ``constraints`` and ``length``;
- format following (``/think`` / ``/no_think`` in multi-turn dialogues, ``<think>`` used consistently):
  ``thinkfollow``, the ``format`` reward (part of every mix);
- preference alignment: ``preference`` items scored by a reward model (``reward_model`` path; the
  ``reward_model`` piece) or a judge;
- agent ability: ``tooluse`` items run as multi-turn rollouts with real tool execution (``AgentRollouts``: the
  tool-response tokens become untrained "forced" tokens of the GRPO row), rewards ``tool_calls`` and ``answer``;
- a specialised scenario: ``counterfact`` (reject false premises instead of answering them), ``answer``.

``GeneralRLRows`` is ``GRPORows`` with the per-task reward mix of ``qwen3.train.reward_system`` in place of the
single reward, the agent rollouts in place of single-turn sampling for items that offer tools, and per-task
metrics (``<family>/reward``, ``<family>/accuracy``, ``<family>/rollouts``) with each step.

A preset is a ``TrainConfig`` table plus ``[grpo]`` (``GRPOConfig``: sampling, the objective) and
``[general_rl]`` (``GeneralRLConfig``: tasks, mixes). ``qwen3 train general-rl-debug`` runs two tasks a random
debug model can move on (mode following and length control) built here, without the task world.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from qwen3.train.grpo import GRPORows
from qwen3.train.reward_system import DEFAULT_WEIGHTS, RewardMix, RewardResult
from qwen3.train.rollout import Rollout
from qwen3.train.settings import SettingsError
from qwen3.train.stages import register_stage

DEBUG_FAMILIES = ("thinkfollow", "lengthctrl")


# ------------------------------------------------------------------------------------------------ agent rollouts
class AgentRollouts:
    """The ``RolloutEngine`` interface GRPORows samples through, sending conversations that offer tools through
    multi-turn tool rollouts (``qwen3.train.tool_rollout``) and the others to the wrapped engine unchanged."""

    def __init__(self, inner: Any, max_rounds: int, execute: Any = None):
        from qwen3.train.tool_rollout import default_executor

        self.inner, self.max_rounds, self.execute = inner, max_rounds, execute or default_executor

    @property
    def stats(self) -> Any:
        return self.inner.stats

    @property
    def model(self) -> Any:
        return self.inner.model

    @property
    def forward_tokens(self) -> int:
        return self.inner.forward_tokens

    def sync(self) -> None:
        self.inner.sync()

    def generate(self, conversations: list[Any], params: Any, seeds: list[int],
                 enable_thinking: list[bool | None] | bool | None = None,
                 tools: list[list[dict] | None] | None = None) -> list[list[Rollout]]:  # fmt: skip
        modes = enable_thinking if isinstance(enable_thinking, list) else [enable_thinking] * len(seeds)
        tools = tools or [None] * len(seeds)
        groups: list[list[Rollout] | None] = [None] * len(seeds)
        plain = [i for i, offered in enumerate(tools) if not offered]
        if plain:
            pick = lambda values: [values[i] for i in plain]  # noqa: E731
            for i, group in zip(plain, self.inner.generate(pick(conversations), params, pick(seeds), pick(modes),
                                                           pick(tools))):  # fmt: skip
                groups[i] = group
        for i in (i for i, offered in enumerate(tools) if offered):
            groups[i] = self._agent_group(i, conversations[i], params, seeds[i], modes[i], tools[i])
        return [group or [] for group in groups]

    def _agent_group(self, query: int, messages: list[dict[str, Any]], params: Any, seed: int,
                     mode: bool | None, offered: list[dict]) -> list[Rollout]:  # fmt: skip
        from qwen3.train.tool_rollout import engine_generator, tool_rollouts

        generate = engine_generator(self.inner.engine, params, [seed + k for k in range(params.n)])
        episodes = tool_rollouts([messages] * params.n, self.inner.tokenizer, generate, [offered] * params.n,
                                 self.max_rounds, self.execute, mode)  # fmt: skip
        rollouts = [_as_rollout(query, k, episode, messages, offered, mode, self.inner.tokenizer)
                    for k, episode in enumerate(episodes)]  # fmt: skip
        self.inner.stats.tokens += sum(sum(e.generated) for e in episodes)
        return rollouts


def _as_rollout(query: int, sample: int, episode: Any, messages: list, offered: list, mode: bool | None,
                tokenizer: Any) -> Rollout:  # fmt: skip
    """A multi-turn episode as one GRPO rollout: everything after the first prompt is the completion, and the
    tokens the model did not sample (tool-response turns, generation prompts) are ``forced``: never trained on."""
    from qwen3.chat import render

    start = len(tokenizer.encode(render(messages, offered, add_generation_prompt=True, enable_thinking=mode,
                                        prefix_preserving=True)))  # fmt: skip
    last = episode.replies[-1]
    rollout = Rollout(
        query=query, sample=sample, prompt_ids=episode.token_ids[:start], token_ids=episode.token_ids[start:],
        logprobs=episode.logprobs[start:], forced=[not g for g in episode.generated[start:]],
        text=last.raw or "", content=last.content, reasoning=last.reasoning,
        finish_reason="length" if episode.finish_reason == "length" else "stop",
    )  # fmt: skip
    rollout.turns = episode.replies  # every round's Reply, for the tool-call and answer rewards
    return rollout


# ------------------------------------------------------------------------------------------------ row source
def reply_of(item: Any, rollout: Any, enable_thinking: bool | None) -> Any:
    """The rollout's final reply as a ``qwen3.eval.Reply``; an agent rollout's every turn in ``.turns``."""
    from qwen3.eval import Reply

    reply = Reply.from_text(rollout.text, enable_thinking=enable_thinking is not False)
    turns = getattr(rollout, "turns", None)
    if turns:
        reply.turns = turns
    return reply


class GeneralRLRows(GRPORows):
    """GRPO's row source with per-task reward mixing, agent rollouts and per-task metrics (module docstring)."""

    def __init__(self, config: Any, seed: int, train_items: list[Any], eval_items: list[Any], mix: RewardMix,
                 agent_rounds: int = 4, execute: Any = None):  # fmt: skip
        super().__init__(config, seed, train_items, eval_items)
        self.mix, self.agent_rounds, self.execute = mix, agent_rounds, execute
        self.reward_fn = self._reward
        self._scored: list[tuple[str, float, bool]] = []

    def bind(self, trainer: Any) -> None:
        super().bind(trainer)
        self.engine = AgentRollouts(self.engine, self.agent_rounds, self.execute)

    def _reward(self, item: Any, rollout: Any) -> float:
        mixed = self.mix(item, reply_of(item, rollout, self._thinking(item)))
        rollout.rewards = [part.score for part in mixed.parts.values()]
        judged = mixed.parts.get("judge")
        rollout.judge_score = None if judged is None else judged.score
        return mixed.score

    def _score(self, item: Any, rollout: Rollout) -> None:
        super()._score(item, rollout)
        rollout.family = item.family

    def _sample_groups(self, count: int) -> list[list[Rollout]]:
        groups = super()._sample_groups(count)  # every rank's, gathered: the metrics cover the whole batch
        self._scored += [rollout for group in groups for rollout in group]
        return groups

    def _new_batch(self) -> None:
        self._scored = []
        super()._new_batch()
        scored = [(r.family, r.reward, r.correct) for r in self._scored]
        self.batch_metrics.update(task_metrics(scored))
        self.batch_metrics.update(judge_metrics(self._scored, self.mix.rewards.get("judge")))


def task_metrics(scored: Sequence[tuple[str, float, bool]]) -> dict[str, float]:
    """Mean reward, accuracy and count of rollouts per task family."""
    out: dict[str, float] = {}
    for family in sorted({f for f, _, _ in scored}):
        mine = [(r, c) for f, r, c in scored if f == family]
        out[f"{family}/reward"] = sum(r for r, _ in mine) / len(mine)
        out[f"{family}/accuracy"] = sum(c for _, c in mine) / len(mine)
        out[f"{family}/rollouts"] = float(len(mine))
    return out


def judge_metrics(rollouts: Sequence[Any], judge: Any) -> dict[str, float]:
    """With a judge in the mix: its pass/fail agreement with the rule verifier (``correct``) over the batch's
    judged rollouts (report: a model-based reward "where both apply" is checked against the rules), and the
    run's count of unparsable or failed verdicts (scored 0)."""
    from qwen3.train.judge import agreement

    judged = [r for r in rollouts if getattr(r, "judge_score", None) is not None]
    if judge is None or not judged:
        return {}
    # A rollout stands for its own grade: its ``correct`` is the rule verifier's pass/fail, all agreement reads.
    result = agreement([RewardResult(r.judge_score, "judge") for r in judged], judged)
    return {"judge/agreement": result.rate, "judge/judged": float(result.items),
            "judge/pass_rule_fail": float(result.judge_pass_rule_fail),
            "judge/fail_rule_pass": float(result.judge_fail_rule_pass),
            "judge/unparsable": float(getattr(judge, "unparsable", 0))}  # fmt: skip


# ---------------------------------------------------------------------------------------------------- tasks
def debug_items(family: str, count: int, split: str, seed: int = 0) -> list[Any]:
    """Items of two stage-4 task kinds that need no task world, for the debug preset and tests:
    "thinkfollow" (a two-turn dialogue whose last flag decides the mode) and "lengthctrl" (write N words)."""
    from qwen3.world.items import Item

    if family not in DEBUG_FAMILIES:
        raise ValueError(f"debug task family must be one of {', '.join(DEBUG_FAMILIES)}, got {family!r}")
    rng = random.Random(f"{family}:{split}:{seed}")
    topics = ("rivers", "owls", "bridges", "tea", "comets", "maps", "bees", "salt")
    items = []
    for index in range(count):
        topic = rng.choice(topics)
        if family == "thinkfollow":
            first, last = rng.choice(("think", "no_think")), rng.choice(("think", "no_think"))
            messages = [{"role": "user", "content": f"Tell me about {topic}. /{first}"},
                        {"role": "assistant", "content": f"{topic.capitalize()} are interesting."},
                        {"role": "user", "content": f"One more fact about {topic} {index}. /{last}"}]  # fmt: skip
            reference: dict[str, Any] = {"mode": last}
        else:
            target = rng.choice((3, 5, 8))
            messages = [{"role": "user", "content": f"Describe {topic} {index} in exactly {target} words."}]
            reference = {"target": target, "unit": "words"}
        # Length control runs under the hard switch (the prompt closes the thought), mode following under flags.
        hard_off = False if family == "lengthctrl" else None
        items.append(Item(family, f"{split}-{index}", split, messages, reference, enable_thinking=hard_off))
    return items


def task_items(
    tasks: Sequence[str], weights: Sequence[float], count: int, split: str, seed: int
) -> list[Any]:
    """``count`` items split over ``tasks`` ("debug:<family>" or "world:<family>") in proportion to ``weights``
    (the trainer's stream draws them in a seeded permutation, so the mix holds in every stretch of steps)."""
    total = sum(weights)
    items: list[Any] = []
    for index, (task, weight) in enumerate(zip(tasks, weights)):
        share = max(1, round(count * weight / total))
        kind, family = task.split(":", 1)
        if kind == "debug":
            items += debug_items(family, share, split, seed + index)
        else:
            from qwen3.world import generate

            items += generate(family, split, share, seed=seed + index)
    return items


@dataclass
class GeneralRLConfig:
    """``[general_rl]``: the stage-4 tasks and their rewards (report section 4.4; weights are ours, the report
    gives none).

    - ``tasks``: "world:<family>" (qwen3.world.generate) or "debug:thinkfollow" / "debug:lengthctrl";
      ``task_weights``: their shares of the prompts (default equal).
    - ``rewards``: per family, ``{reward name: weight}`` overriding ``reward_system.DEFAULT_WEIGHTS``.
    - ``reward_model``: a reward-model directory (qwen3.train.reward_model) added as the ``reward_model`` piece;
      ``preference`` items use it by default.
    - ``judge``: the model-based reward with a reference (qwen3.train.judge), added as the ``judge`` piece for
      the mixes of ``rewards`` to use: a Qwen3 checkpoint directory or preset run by our engine in this process,
      or an OpenAI-compatible base URL ("http://host:port/v1") serving ``judge_model``. Each step logs
      ``judge/agreement`` with the rule verifier over the judged rollouts and ``judge/unparsable``.
    - ``agent_rounds``: at most this many model turns in a tool rollout (report: "complete multi-turn
      interaction cycles").
    """

    tasks: list[str] = field(default_factory=lambda: ["debug:thinkfollow", "debug:lengthctrl"])
    task_weights: list[float] | None = None
    rewards: dict[str, dict[str, float]] = field(default_factory=dict)
    reward_model: str | None = None
    judge: str | None = None
    judge_model: str = "judge"
    judge_max_tokens: int = 256
    agent_rounds: int = 4

    def __post_init__(self) -> None:
        if not self.tasks:
            raise SettingsError("general_rl.tasks: name at least one task")
        for task in self.tasks:
            kind, _, family = task.partition(":")
            if (
                kind not in ("debug", "world")
                or not family
                or (kind == "debug" and family not in DEBUG_FAMILIES)
            ):
                raise SettingsError(
                    f"general_rl.tasks: {task!r} is neither 'world:<family>' nor one of "
                    f"{', '.join('debug:' + f for f in DEBUG_FAMILIES)}"
                )
        if self.task_weights is not None and (len(self.task_weights) != len(self.tasks)
                                              or any(w <= 0 for w in self.task_weights)):  # fmt: skip
            raise SettingsError(
                f"general_rl.task_weights: one positive weight per task, got {self.task_weights}"
            )
        if self.agent_rounds < 1:
            raise SettingsError(f"general_rl.agent_rounds: must be >= 1, got {self.agent_rounds}")
        if self.judge_max_tokens < 1:
            raise SettingsError(f"general_rl.judge_max_tokens: must be >= 1, got {self.judge_max_tokens}")
        uses_judge = [family for family, mix in self.rewards.items() if "judge" in mix]
        if uses_judge and not self.judge:
            raise SettingsError(
                f"general_rl.rewards: {', '.join(uses_judge)} mix the 'judge' reward, but general_rl.judge is not set"
            )

    def make_judge(self) -> Any:
        from qwen3.train.judge import Judge, in_process_judge, openai_judge

        remote = self.judge.startswith(("http://", "https://"))
        backend = openai_judge(self.judge, self.judge_model) if remote else in_process_judge(self.judge)
        return Judge(backend, max_tokens=self.judge_max_tokens)

    def weights(self) -> list[float]:
        return list(self.task_weights or [1.0] * len(self.tasks))

    def reward_mix(self) -> RewardMix:
        pieces: dict[str, Any] = {}
        mixes = copy.deepcopy(DEFAULT_WEIGHTS)
        if self.reward_model:
            from qwen3.train.reward_model import RewardModel, RewardModelReward

            pieces["reward_model"] = RewardModelReward(RewardModel.load(self.reward_model))
            mixes["preference"] = {"format": 0.2, "reward_model": 0.8}
        if self.judge:
            pieces["judge"] = self.make_judge()
        mixes.update(self.rewards)
        try:
            return RewardMix(mixes, pieces)
        except ValueError as err:
            raise SettingsError(f"general_rl.rewards: {err}") from None


# ------------------------------------------------------------------------------------------------------ runner
def parse_stage(table: dict[str, Any]) -> tuple[GeneralRLConfig, Any, Any]:
    """(GeneralRLConfig, GRPOConfig, TrainConfig) of a preset table."""
    from qwen3.train.config import TrainConfig
    from qwen3.train.grpo import split_table
    from qwen3.train.settings import from_table

    rest = copy.deepcopy(table)
    general = from_table(GeneralRLConfig, rest.pop("general_rl", {}) or {}, "general_rl")
    grpo, rest = split_table(rest)
    return general, grpo, TrainConfig.from_dict(rest)


@register_stage("general-rl", check=lambda table: [parse_stage(table)[-1]],
                description="stage 4: multi-task GRPO with per-task rewards (report section 4.4)")  # fmt: skip
def run_stage(table: dict[str, Any], *, resume: bool = False, overwrite: bool = False, env: Any = None,
              progress: bool | None = None, execute: Any = None) -> Any:  # fmt: skip
    """Train with general RL; returns the ``TrainResult``. ``execute`` replaces the world's tools (tests)."""
    from qwen3.train.grpo import objective_of
    from qwen3.train.trainer import Trainer

    general, grpo, config = parse_stage(table)
    weights = general.weights()
    train = task_items(general.tasks, weights, grpo.train_prompts, "train", config.seed)
    held_out = task_items(general.tasks, weights, grpo.eval_prompts, "validation", config.seed) \
        if grpo.eval_prompts else []  # fmt: skip
    rows = GeneralRLRows(
        grpo, config.seed, train, held_out, general.reward_mix(), general.agent_rounds, execute
    )
    trainer = Trainer(config, rows=rows, loss_fn=objective_of(grpo, config), resume=resume, overwrite=overwrite, env=env,
                      progress=progress)  # fmt: skip
    rows.bind(trainer)
    return trainer.fit()
