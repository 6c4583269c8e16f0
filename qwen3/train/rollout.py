"""Rollouts for RL from our own engine, in the training process (report section 4.2: GRPO samples a group of
responses per query).

``RolloutEngine`` wraps an ``LLMEngine`` built on the policy module itself with ``shared=True``: the engine never
switches the module to eval mode nor re-points its parameters' storage; with ``weights = "reference"`` it runs the
module and sees every optimizer update in place, the faster layouts ("fused", "packed") hold copies that
``sync()`` rebuilds after each update. Where the policy's parameters are sharded (FSDP2: DTensors), or the engine
should sample in another dtype (bf16), the engine owns an inference copy instead (``source`` = the policy) and ``sync()`` loads the policy's full state into it
(``LLMEngine.load_weights``, a collective: every rank calls it). Log-probabilities are recorded flat (``token_logprobs``) in the engine's
"processed" mode, i.e. under the distribution each token was drawn from (temperature applied, top-k / top-p
renormalised), with the mask of the tokens the engine forced.

Each query gets ``n`` completions sampled with the request seed ``rollout_seed(seed, batch, query)`` (the engine
gives completion i the seed ``+ i``), so a rollout depends only on the weights, the query and these numbers: not
on the batch around it, the rank that drew it or a restart. Queries are chat conversations rendered with the
Qwen3 chat template; ``enable_thinking`` chooses thinking mode (None: the item's own switch or the template's
default), and ``SamplingParams.thinking_budget`` bounds the thought (the budget's forced tokens are marked in
``Rollout.forced`` and never trained on).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import torch

MASK64 = (1 << 63) - 1


def rollout_seed(seed: int, batch: int, query: int) -> int:
    """A request seed for query ``query`` of generation batch ``batch`` of a run seeded ``seed``: a hash, so that
    nearby numbers give unrelated streams and completion seeds (``+ i``) of different queries never collide."""
    digest = hashlib.sha256(f"{seed}:{batch}:{query}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (MASK64 >> 8)


@dataclass
class Rollout:
    """One sampled completion of one query."""

    query: int  # index of the query in the generation batch
    sample: int  # index of the completion within its group
    prompt_ids: list[int]
    token_ids: list[int]  # the completion, including a final end-of-sequence token
    logprobs: list[
        float
    ]  # engine log-probability of each token under its sampling distribution (0.0 if forced)
    forced: list[bool]  # tokens the engine inserted (thinking budget), not sampled
    text: str
    content: str | None
    reasoning: str | None
    finish_reason: str
    thinking: bool = True  # the prompt left the thought to the model (False: it closed it, non-thinking mode)
    reward: float = 0.0
    correct: bool = False
    rewards: list[float] = field(default_factory=list)  # each reward function's value

    @property
    def truncated(self) -> bool:
        return self.finish_reason == "length"

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Rollout:
        return cls(**data)


@dataclass
class RolloutStats:
    tokens: int = 0
    seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


class RolloutEngine:
    """Sampling from the policy module, or with ``source`` (the policy) from ``model``, a copy the engine owns
    (module docstring). ``engine`` keyword arguments are ``EngineConfig`` fields."""

    def __init__(self, model: torch.nn.Module, tokenizer: Any, source: torch.nn.Module | None = None,
                 **engine: Any):  # fmt: skip
        from qwen3.engine.config import EngineConfig
        from qwen3.engine.llm_engine import LLMEngine

        if source is not None and source is model:
            raise ValueError("RolloutEngine: source must be another module than the engine's copy")
        self.engine = LLMEngine(model, tokenizer, EngineConfig(**engine), shared=source is None)
        self.model, self.source = model, source
        self.tokenizer = tokenizer
        self.stats = RolloutStats()
        self._ids = 0

    def sync(self) -> None:
        """Call after each optimizer update: rebuilds the engine's fused views / packed copies of the weights, or
        loads the policy's full state into the engine's copy."""
        if self.source is None:
            self.engine.sync_weights()
        else:
            self.engine.load_weights(self.source.state_dict().items())

    @property
    def forward_tokens(self) -> int:
        """Tokens the engine ran a forward over so far: prompts prefilled (once per request, its n completions
        share it) and decode steps (one per sampled token but the last)."""
        return self.engine.stats.prefill_tokens + self.engine.stats.decode_tokens

    def generate(
        self,
        conversations: list[list[dict[str, Any]] | str],
        params: Any,
        seeds: list[int],
        enable_thinking: list[bool | None] | bool | None = None,
        tools: list[list[dict] | None] | None = None,
    ) -> list[list[Rollout]]:
        """``params.n`` rollouts per conversation, one group per conversation, in order. A conversation is a list
        of messages (rendered with the chat template) or a prompt text already rendered."""
        from qwen3.chat import render
        from qwen3.engine.detokenizer import ChatOptions

        if len(seeds) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(seeds)} seeds")
        modes = enable_thinking if isinstance(enable_thinking, list) else [enable_thinking] * len(seeds)
        tools = tools or [None] * len(seeds)
        params = params.replace(token_logprobs=True, logprobs_mode="processed")
        start = time.perf_counter()
        requests = []
        for messages, seed, mode, offered in zip(conversations, seeds, modes, tools):
            prompt = (
                messages
                if isinstance(messages, str)
                else render(messages, tools=offered, add_generation_prompt=True, enable_thinking=mode)
            )
            request_id = f"rollout-{self._ids}"
            self._ids += 1
            prompt_ids = self.engine.add_request(
                request_id, prompt, params.replace(seed=seed), chat=ChatOptions(enable_thinking=mode is not False),
                stream=False,
            )  # fmt: skip
            requests.append((request_id, prompt_ids, _thought_left_open(prompt)))
        outputs = self._run({request_id for request_id, _, _ in requests})
        groups = []
        for query, (request_id, prompt_ids, thinking) in enumerate(requests):
            completions = sorted(outputs[request_id], key=lambda output: output.index)
            groups.append([_rollout(query, prompt_ids, output, thinking) for output in completions])
        self.stats.seconds += time.perf_counter() - start
        self.stats.tokens += sum(len(r.token_ids) for group in groups for r in group)
        return groups

    def _run(self, pending: set[str]) -> dict[str, list[Any]]:
        outputs: dict[str, list[Any]] = {request_id: [] for request_id in pending}
        while self.engine.has_unfinished():
            for delta in self.engine.step():
                if delta.finished and delta.request_id in outputs:
                    outputs[delta.request_id].append(delta.output)
        return outputs


def _thought_left_open(prompt: str) -> bool:
    """Whether the prompt's last turn leaves the thought to the model (no ``</think>`` in it)."""
    return "</think>" not in prompt[prompt.rfind("<|im_start|>") :]


def _rollout(query: int, prompt_ids: list[int], output: Any, thinking: bool) -> Rollout:
    return Rollout(
        query=query,
        sample=output.index,
        prompt_ids=list(prompt_ids),
        token_ids=list(output.token_ids),
        logprobs=list(output.token_logprobs),
        forced=list(output.forced) or [False] * len(output.token_ids),
        text=output.text,
        content=output.content,
        reasoning=output.reasoning_content,
        finish_reason=output.finish_reason,
        thinking=thinking,
    )
