"""What the engine returns, with vLLM's field names: ``RequestOutput`` holding one ``CompletionOutput`` per completion
(``n``), and ``CompletionDelta``, the per-step increment ``LLMEngine.step`` yields for streaming.

Token counts: ``num_reasoning_tokens`` counts the output tokens the chat parser files as reasoning: up to and
including the first ``</think>``; without one, those before the first ``<tool_call>``, or all of them (a thought
cut off). 0 when the prompt closed the thought, as non-thinking mode does. Raw (non-chat) completions count only
from a generated ``<think>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from qwen3.chat.parse import ParsedOutput, ToolCall
from qwen3.chat.streaming import DeltaMessage


@dataclass
class Logprob:
    """Log-probability of one token under the model's distribution at that step; ``rank`` 1 = most likely."""

    logprob: float
    rank: int
    decoded_token: str | None = None


# Per output token: {token_id: Logprob} with the chosen token and the top-k alternatives; None for tokens the
# engine forced (thinking budget), which were not sampled.
TokenLogprobs = dict[int, Logprob] | None


@dataclass(slots=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
            "completion_tokens_details": {"reasoning_tokens": self.reasoning_tokens},
        }


@dataclass
class CompletionOutput:
    """One finished (or, in a snapshot, partial) completion.

    ``text`` is the decoded output (special tokens skipped by default, cut before a matched stop string);
    ``token_ids`` every output token including a final end-of-sequence token. ``token_logprobs`` (with
    ``SamplingParams.token_logprobs`` or ``logprobs``) the log-probability of each of them under
    ``logprobs_mode``, 0.0 where forced; ``forced`` flags the tokens the engine forced (thinking budget's stop
    text, answer prefix) instead of sampling. For chat requests the text is also
    split by the chat parser into ``reasoning_content``, ``content`` and ``tool_calls``.
    ``finish_reason``: "stop" (end-of-sequence, a stop token or string), "length" (max_tokens or the context),
    "abort", "error" (the engine failed this completion alone; ``error`` says why, the batch went on).
    ``stop_reason``: the stop string or stop token id that matched (None for end-of-sequence).
    """

    index: int
    text: str
    token_ids: list[int]
    cumulative_logprob: float | None = None
    logprobs: list[TokenLogprobs] | None = None
    token_logprobs: list[float] | None = None
    forced: list[bool] = field(default_factory=list)
    finish_reason: str | None = None
    stop_reason: int | str | None = None
    reasoning_content: str | None = None
    content: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    num_reasoning_tokens: int = 0
    num_forced_tokens: int = 0  # stop-thinking tokens the budget inserted (part of token_ids and text)
    error: str | None = None  # finish_reason "error": what failed

    def finished(self) -> bool:
        return self.finish_reason is not None

    def message(self) -> dict[str, Any]:
        """The assistant message of a chat reply, ready to append to the conversation."""
        return ParsedOutput(self.reasoning_content, self.content, self.tool_calls).to_message()


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool = True

    @property
    def usage(self) -> Usage:
        return Usage(
            prompt_tokens=len(self.prompt_token_ids),
            completion_tokens=sum(len(o.token_ids) for o in self.outputs),
            reasoning_tokens=sum(o.num_reasoning_tokens for o in self.outputs),
        )


@dataclass(slots=True)
class CompletionDelta:
    """What one engine step produced for one completion (request ``request_id``, completion ``index``).

    ``token_ids``/``text``/``logprobs`` are the new parts only (text may lag the tokens: incomplete characters and
    a possible stop-string prefix are held back). ``messages`` are the chat parser's deltas (empty for plain
    generation). On the last delta ``finished`` is True and ``output`` holds the complete ``CompletionOutput``;
    ``error`` is set when the engine failed this completion alone (finish_reason "error").
    """

    request_id: str
    index: int
    token_ids: list[int]
    text: str
    messages: list[DeltaMessage]
    logprobs: list[TokenLogprobs] | None
    finished: bool
    finish_reason: str | None
    stop_reason: int | str | None
    usage: Usage
    output: CompletionOutput | None = None
    error: str | None = None
