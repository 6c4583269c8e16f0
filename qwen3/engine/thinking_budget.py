"""The thinking budget (Qwen3 report §4.3; the Qwen docs' quickstart implementation), per sequence, plus reasoning-token accounting.

A sequence's thought is in one of three phases, read from the prompt first:

- ``BEFORE``: no ``<think>`` in the current turn yet (a chat prompt in thinking mode ends with
  ``<|im_start|>assistant\\n``; the model opens the thought itself);
- ``OPEN``: the prompt's last ``<think>`` has no ``</think>`` after it (the prompt ends inside a thought, e.g. a
  template that pre-fills ``<think>\\n``, or a continued partial thought);
- ``CLOSED``: the thought is over (``enable_thinking=False`` puts ``<think>\\n\\n</think>\\n\\n`` in the prompt).

"The current turn" is what follows the last ``<|im_start|>``; a plain-text prompt is one turn.

The budget counts the tokens the engine generates inside the thought (``<think>`` and ``</think>`` excluded;
thought text already in the prompt is not counted). When the count reaches the budget and no ``</think>`` came,
the stop-thinking text is appended as forced tokens: the engine feeds them to the model like a prompt chunk in the
next step, they count toward ``max_tokens`` and they are part of the output (text, reasoning, token ids). If the
budget is reached right after ``<think>`` (budget 0), the forced text is ``"\\n\\n</think>\\n\\n"`` instead, so the
output starts with exactly the empty think block of non-thinking mode, ``<think>\\n\\n</think>\\n\\n``, then the
answer. A prompt that ends inside a thought with budget 0 gets the forced text before the first step.

An answer prefix (``SamplingParams.answer_prefix``) is forced the same way right after the thought closes: after
the model's own ``</think>`` (preceded by the ``"\n\n"`` the model writes there), after a forced stop-thinking
text, or before the first step when the prompt closed the thought. It is forced once.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass


class Phase(enum.Enum):
    BEFORE = "before"
    OPEN = "open"
    CLOSED = "closed"


@dataclass(frozen=True)
class ThinkTokens:
    """The ids the budget needs, resolved from the tokenizer by content (never hard-coded)."""

    think_start: int
    think_end: int
    turn_start: int  # <|im_start|>
    tool_call_start: int
    stop_ids: tuple[int, ...]  # the tokenised stop-thinking text
    empty_ids: tuple[int, ...]  # the tokenised "\n\n</think>\n\n"


# What the model writes between "</think>" and its answer (the chat template's "</think>\n\n").
ANSWER_SEPARATOR = "\n\n"


@dataclass(frozen=True)
class AnswerPrefix:
    """A request's answer prefix tokenised as is (after a prompt or a forced text that ends in ``</think>\n\n``)
    and with the separator in front (after the model's own ``</think>``)."""

    ids: tuple[int, ...]
    after_think_end_ids: tuple[int, ...]


def prompt_phase(prompt_ids: Sequence[int], tokens: ThinkTokens) -> Phase:
    """Where the prompt leaves the thought of its last turn."""
    turn = _last_index(prompt_ids, tokens.turn_start)
    start = _last_index(prompt_ids, tokens.think_start)
    end = _last_index(prompt_ids, tokens.think_end)
    if start > max(turn, end):
        return Phase.OPEN
    if end > max(turn, start):
        return Phase.CLOSED
    return Phase.BEFORE


def _last_index(ids: Sequence[int], token: int) -> int:
    for i in range(len(ids) - 1, -1, -1):
        if ids[i] == token:
            return i
    return -1


class ThinkingState:
    """Tracks one sequence's thought; ``on_sampled(token)`` returns the tokens to force after it (usually none)."""

    def __init__(
        self,
        prompt_ids: Sequence[int],
        tokens: ThinkTokens,
        budget: int | None,
        answer_prefix: AnswerPrefix | None = None,
        implicit_thought: bool = False,
    ):
        self.tokens = tokens
        # A chat reply in thinking mode is reasoning from its first token, <think> or not (qwen3.chat.parse's rule);
        # a raw completion only after a generated <think>.
        self.implicit_thought = implicit_thought
        self._answer_prefix = answer_prefix  # None once forced
        self.budget = budget
        self.phase = prompt_phase(prompt_ids, tokens)
        self.closed_by_prompt = self.phase is Phase.CLOSED
        self.thought_tokens = 0  # generated (or forced) tokens inside the thought
        self.num_output = 0
        self.reasoning_end: int | None = None  # output tokens up to and including the first </think>
        self.tool_call_at: int | None = None  # output tokens before the first <tool_call>
        self._right_after_start = bool(prompt_ids) and prompt_ids[-1] == tokens.think_start

    def initial_forced(self) -> list[int]:
        """Tokens to append before the first step: budget 0 with a prompt that ends inside a thought, or the answer
        prefix when the prompt closed the thought."""
        if self._budget_reached():
            return self._force()
        return self._take_answer_prefix(after_think_end=False) if self.phase is Phase.CLOSED else []

    def on_sampled(self, token: int) -> list[int]:
        was_open = self.phase is Phase.OPEN
        self.observe(token)
        if self.budget is not None and self.phase is Phase.OPEN and self.thought_tokens >= self.budget:
            return self._force()
        if self._answer_prefix is not None and was_open and self.phase is Phase.CLOSED:
            return self._take_answer_prefix(after_think_end=True)
        return []

    def observe(self, token: int) -> None:
        """Account one output token (sampled or forced)."""
        self.num_output += 1
        if self.phase is Phase.CLOSED:
            return
        if token == self.tokens.tool_call_start and self.tool_call_at is None:
            self.tool_call_at = self.num_output - 1
        if token == self.tokens.think_end and (self.phase is Phase.OPEN or self.implicit_thought):
            self.phase = Phase.CLOSED
            self.reasoning_end = self.num_output
            return
        if self.phase is Phase.BEFORE:
            if token == self.tokens.think_start:
                self.phase = Phase.OPEN
                self._right_after_start = True
            return
        self._right_after_start = False
        self.thought_tokens += 1

    @property
    def passive(self) -> bool:
        """Never forces tokens (no budget, no answer prefix): only accounts the tokens it observes."""
        return self.budget is None and self._answer_prefix is None

    @property
    def reasoning_tokens(self) -> int:
        """The output tokens ``qwen3.chat.parse`` files as reasoning: up to and including the first ``</think>``;
        without one, those before the first ``<tool_call>``, or all of them (a thought cut off). A raw completion
        (no implicit thought) counts only from a generated ``<think>``; 0 when the prompt closed the thought."""
        if self.closed_by_prompt:
            return 0
        if self.reasoning_end is not None:
            return self.reasoning_end
        if self.phase is Phase.OPEN or self.implicit_thought:
            return self.tool_call_at if self.tool_call_at is not None else self.num_output
        return 0

    def _budget_reached(self) -> bool:
        return self.budget is not None and self.phase is Phase.OPEN and self.thought_tokens >= self.budget

    def _force(self) -> list[int]:
        stop = self.tokens.empty_ids if self._right_after_start else self.tokens.stop_ids
        return [*stop, *self._take_answer_prefix(after_think_end=False)]

    def _take_answer_prefix(self, after_think_end: bool) -> list[int]:
        prefix, self._answer_prefix = self._answer_prefix, None
        if prefix is None:
            return []
        return list(prefix.after_think_end_ids if after_think_end else prefix.ids)
