"""``Sequence``: one completion being generated, and its per-request state (nano-vllm's vocabulary).

``token_ids`` is the prompt followed by the output; ``num_computed_tokens`` of them have their keys and values in
the cache. The tokens after that are pending: the whole prompt at first, one sampled token during decoding, or the
sampled token plus forced stop-thinking tokens after the budget was hit.
"""

from __future__ import annotations

import enum

import torch

from qwen3.engine.detokenizer import OutputText
from qwen3.engine.outputs import CompletionOutput, TokenLogprobs, Usage
from qwen3.engine.sampling_params import SamplingParams
from qwen3.engine.thinking_budget import ThinkingState


class SequenceStatus(enum.Enum):
    WAITING = "waiting"
    RUNNING = "running"
    FINISHED = "finished"


class Sequence:
    UNIFORMS_PER_DRAW = 64  # random numbers fetched from the generator at a time

    def __init__(
        self,
        request_id: str,
        index: int,
        prompt_token_ids: list[int],
        params: SamplingParams,
        generator: torch.Generator,
        text: OutputText,
        thinking: ThinkingState,
        stream: bool = True,
    ):
        self.request_id = request_id
        self.stream = stream  # False: the caller takes only the final output (no per-step deltas)
        self.index = index
        self.token_ids = list(prompt_token_ids)
        self.num_prompt_tokens = len(prompt_token_ids)
        self.num_computed_tokens = 0
        self.params = params
        self.generator = generator
        self.text = text
        self.thinking = thinking
        self.status = SequenceStatus.WAITING
        self.slot = -1
        self.finish_reason: str | None = None
        self.error: str | None = None  # why the engine failed it (finish_reason "error")
        self.stop_reason: int | str | None = None
        self.logprobs: list[TokenLogprobs] | None = [] if params.logprobs is not None else None
        self.token_logprobs: list[float] | None = (
            [] if params.wants_logprobs else None
        )  # flat, sampled tokens
        self.forced_positions: list[
            int
        ] = []  # output indices of forced tokens (thinking budget, answer prefix)
        self.cumulative_logprob = 0.0
        self.token_counts: torch.Tensor | None = None  # [vocab] output-token counts, for penalties
        self.prompt_mask: torch.Tensor | None = None  # [vocab] tokens in the prompt, for repetition_penalty
        self._uniforms: list[float] = []
        self._next_uniform = 0
        self._emitted_tokens = 0  # output tokens already handed out in deltas
        self.num_forced_tokens = 0  # stop-thinking tokens the budget inserted
        # Completions 1..n-1 of a request share completion 0's prompt: they copy its cache rows instead of
        # prefilling the same tokens again (see Scheduler.awaits_fork).
        self.parent: Sequence | None = None
        self.children: list[Sequence] = []
        self.plain_greedy = params.plain_greedy  # read by the sampler every step
        # See ``defer_bookkeeping``.
        self.deferred = False
        self.end_ids: frozenset[int] = frozenset()
        self.max_length = 0

    # -- sizes -----------------------------------------------------------------------------------------------
    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def num_pending(self) -> int:
        return len(self.token_ids) - self.num_computed_tokens

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens :]

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    def remaining_tokens(self, max_model_len: int) -> int:
        """How many more output tokens max_tokens and the context allow."""
        left = max_model_len - self.num_tokens
        if self.params.max_tokens is not None:
            left = min(left, self.params.max_tokens - self.num_output_tokens)
        return left

    # -- randomness ------------------------------------------------------------------------------------------
    def next_uniform(self) -> float:
        """The next number of this sequence's own stream in [0, 1): independent of the rest of the batch."""
        if self._next_uniform == len(self._uniforms):
            draw = torch.rand(self.UNIFORMS_PER_DRAW, generator=self.generator, dtype=torch.float64)
            self._uniforms = draw.tolist()
            self._next_uniform = 0
        value = self._uniforms[self._next_uniform]
        self._next_uniform += 1
        return value

    def uniform_mark(self) -> tuple[list[float], int]:
        """Where the random stream is, for ``rewind_uniforms`` (a step that failed and is sampled again)."""
        return self._uniforms, self._next_uniform

    def rewind_uniforms(self, mark: tuple[list[float], int]) -> None:
        """Undo the draws since ``mark`` (at most one: a step takes one number per sequence)."""
        uniforms, index = mark
        if self._uniforms is uniforms:
            self._next_uniform = index
        else:  # the step refilled the buffer (the marked one was used up): the new one is unread
            self._next_uniform = 0

    # -- state changes ---------------------------------------------------------------------------------------
    def append(self, token_ids: list[int]) -> None:
        self.token_ids.extend(token_ids)
        if self.token_counts is not None:
            for token in token_ids:
                self.token_counts[token] += 1

    def force(self, tokens: list[int], max_model_len: int) -> list[int]:
        """Append stop-thinking tokens as output (as many as max_tokens and the context allow); returns them."""
        tokens = tokens[: max(0, self.remaining_tokens(max_model_len))]
        if tokens:
            start = self.num_output_tokens
            self.append(tokens)
            self.num_forced_tokens += len(tokens)
            self.forced_positions.extend(range(start, start + len(tokens)))
            if self.logprobs is not None:
                self.logprobs.extend([None] * len(tokens))
            if self.token_logprobs is not None:
                self.token_logprobs.extend([0.0] * len(tokens))  # log 1: the engine's choice, not a draw
            for token in tokens:
                self.thinking.observe(token)
        return tokens

    def finish(self, reason: str, stop_reason: int | str | None = None) -> None:
        self.status = SequenceStatus.FINISHED
        self.finish_reason = reason
        self.stop_reason = stop_reason
        if self.deferred:
            self._catch_up()

    # -- deferred bookkeeping --------------------------------------------------------------------------------
    def defer_bookkeeping(self, end_ids: frozenset[int], max_model_len: int) -> None:
        """For a sequence that nothing watches while it runs (the caller takes only the final output; no stop
        strings, thinking budget, answer prefix, logprobs or penalties): each step only appends its token and checks
        ``end_ids`` (the ids that end it) and ``max_length``; the text and the thought accounting catch up when it
        finishes, from the same tokens in the same order, so the output is the same. At 64 sequences this is most
        of the engine's per-step Python."""
        self.deferred = True
        self.end_ids = end_ids
        self.max_length = self.num_tokens + self.remaining_tokens(max_model_len)

    def _catch_up(self) -> None:
        new = self.token_ids[self.num_prompt_tokens + self.thinking.num_output :]
        for token in new:
            self.thinking.observe(token)
        # The stop token is in token_ids but not in the text (as LLMEngine._append_sampled does).
        self.text.push(new[:-1] if self.finish_reason == "stop" else new)

    def take_new_tokens(self) -> tuple[list[int], list[TokenLogprobs] | None]:
        """Output tokens (and their logprobs) not handed out yet."""
        start = self._emitted_tokens
        self._emitted_tokens = self.num_output_tokens
        new = self.token_ids[self.num_prompt_tokens + start :]
        return new, None if self.logprobs is None else self.logprobs[start:]

    def forced_mask(self) -> list[bool]:
        """One flag per output token: True where the engine forced it instead of sampling it."""
        mask = [False] * self.num_output_tokens
        for position in self.forced_positions:
            mask[position] = True
        return mask

    def usage(self) -> Usage:
        return Usage(self.num_prompt_tokens, self.num_output_tokens, self.thinking.reasoning_tokens)

    def to_output(self) -> CompletionOutput:
        parsed = self.text.parsed()
        return CompletionOutput(
            index=self.index,
            text=self.text.text,
            token_ids=self.output_token_ids,
            cumulative_logprob=self.cumulative_logprob if self.token_logprobs is not None else None,
            logprobs=self.logprobs,
            token_logprobs=None if self.token_logprobs is None else list(self.token_logprobs),
            forced=self.forced_mask(),
            finish_reason=self.finish_reason,
            stop_reason=self.stop_reason,
            reasoning_content=parsed.reasoning_content if parsed else None,
            content=parsed.content if parsed else None,
            tool_calls=parsed.tool_calls if parsed else [],
            num_reasoning_tokens=self.thinking.reasoning_tokens,
            num_forced_tokens=self.num_forced_tokens,
            error=self.error,
        )
