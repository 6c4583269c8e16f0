"""``SamplingParams``: how one request is decoded (vLLM's field names), validated when it is built.

Processing order for each step (that of transformers' ``generate``, so each knob can be checked against its logits
processor): repetition penalty (prompt and output tokens), presence and frequency penalties (output tokens), then
temperature, top-k, top-p, min-p, and a draw from what is left. ``temperature == 0`` is greedy (the argmax after
the penalties).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace
from typing import Any

# Qwen's stop-thinking text (the Qwen docs' quickstart, "Thinking Budget"; the report prints "</think>." with a stray period).
STOP_THINKING_TEXT = (
    "\n\nConsidering the limited time by the user, I have to give the solution based on the thinking directly "
    "now.\n</think>\n\n"
)
# What follows <think> when the budget is 0: the empty think block of non-thinking mode (`<think>\n\n</think>\n\n`).
EMPTY_THOUGHT_TEXT = "\n\n</think>\n\n"
# What logprobs report: the model's distribution, or the one the token was drawn from (RL importance ratios).
LOGPROBS_MODES = ("raw", "processed")

# The model cards' recommended settings ("Best Practices").
THINKING_PRESET: dict[str, Any] = {"temperature": 0.6, "top_p": 0.95, "top_k": 20, "min_p": 0.0}
NON_THINKING_PRESET: dict[str, Any] = {"temperature": 0.7, "top_p": 0.8, "top_k": 20, "min_p": 0.0}

MAX_LOGPROBS = 20
# Range limits of the integers that reach C or torch (the sampling kernel reads top_k as int32, torch.Generator takes
# a 64-bit seed, token ids become int64 tensors); a value past them would fail inside an engine step instead of here.
INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# Completions of one request: each is a sequence with its own cache slot, so a huge n would hang admission.
MAX_N = 1024
# Temperatures below this are greedy (as vLLM's _SAMPLING_EPS): dividing fp32 logits by a smaller one overflows.
MIN_TEMPERATURE = 1e-5
# The largest float the fp32 sampling math can take as a divisor or factor without turning logits into inf or NaN.
MAX_FACTOR = 1e4


@dataclass
class SamplingParams:
    """Decoding settings of one request.

    - ``n``: completions per prompt (at most ``MAX_N``), each with its own random stream (``seed + i`` when seeded).
    - ``temperature`` in [0, ``MAX_FACTOR``]: 0 = greedy, and so is anything below ``MIN_TEMPERATURE`` (as vLLM).
      ``top_k``: 0 or -1 = off, at most 2**31 - 1 (values past the vocabulary are off too). ``top_p`` in (0, 1]. ``min_p`` in [0, 1]: drop tokens
      whose probability is below ``min_p`` times the most likely one's.
    - ``presence_penalty`` / ``frequency_penalty`` in [-2, 2] (OpenAI): subtract ``presence`` once and
      ``frequency`` per occurrence from the logits of tokens already in the output.
      ``repetition_penalty`` in (0, ``MAX_FACTOR``] (CTRL, as transformers): logits of tokens in the prompt or output are divided by it
      when positive, multiplied when negative; 1 = off.
    - ``max_tokens``: bound on generated tokens (forced thinking-budget tokens included); None = up to the context.
    - ``stop``: strings; the output text ends before the first one (kept with ``include_stop_str_in_output``).
      ``stop_token_ids``: extra ids that end the request like the end-of-sequence ids (``ignore_eos`` ignores those
      only).
    - ``seed``: makes the request reproducible whatever else is in the batch; a signed 64-bit integer.
    - ``logprobs``: None = off, k >= 0 = the sampled token's log-probability plus the k most likely tokens' (one
      ``{token_id: Logprob}`` dict per output token, each token decoded to text).
    - ``token_logprobs``: True fills ``CompletionOutput.token_logprobs``, the flat list of the sampled tokens'
      log-probabilities (0.0 for forced tokens), without building dicts or decoding tokens (RL rollouts). It is
      also filled whenever ``logprobs`` is set.
    - ``logprobs_mode``: "raw" = ``log_softmax`` of the model's logits (before penalties and temperature, vLLM's
      default); "processed" = under the distribution the token was drawn from: penalties, then temperature, then
      top-k / top-p / min-p truncation renormalised over the kept tokens (a dropped token gets -inf). Greedy rows
      (temperature 0) take the penalised logits at temperature 1.
    - ``thinking_budget``: at most this many generated tokens inside ``<think>``; then ``thinking_stop_text`` is
      forced (see ``qwen3.engine.thinking_budget``). 0 gives an empty think block, as non-thinking mode does.
    - ``answer_prefix``: text the answer (what follows the thought) must start with, forced as output tokens right
      after the thought closes, or before the first step when the prompt already closed it (non-thinking mode).
      The server uses it to force a tool call (``tool_choice``): ``'<tool_call>\n{"name": "f", "arguments": '``.
    """

    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    min_p: float = 0.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    repetition_penalty: float = 1.0
    max_tokens: int | None = None
    stop: list[str] = field(default_factory=list)
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    seed: int | None = None
    logprobs: int | None = None
    token_logprobs: bool = False
    logprobs_mode: str = "raw"
    thinking_budget: int | None = None
    thinking_stop_text: str = STOP_THINKING_TEXT
    answer_prefix: str | None = None
    skip_special_tokens: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop or [])
        self.stop_token_ids = list(self.stop_token_ids or [])
        if self.top_k == -1:
            self.top_k = 0
        _check(self)
        if self.temperature < MIN_TEMPERATURE:
            self.temperature = 0.0

    # -- presets ---------------------------------------------------------------------------------------------
    @classmethod
    def thinking(cls, **overrides: Any) -> SamplingParams:
        """The model cards' thinking-mode settings: temperature 0.6, top_p 0.95, top_k 20, min_p 0."""
        return cls(**{**THINKING_PRESET, **overrides})

    @classmethod
    def non_thinking(cls, **overrides: Any) -> SamplingParams:
        """The model cards' non-thinking settings: temperature 0.7, top_p 0.8, top_k 20, min_p 0."""
        return cls(**{**NON_THINKING_PRESET, **overrides})

    @classmethod
    def recommended(cls, thinking: bool, **overrides: Any) -> SamplingParams:
        return cls.thinking(**overrides) if thinking else cls.non_thinking(**overrides)

    @classmethod
    def from_generation_config(cls, generation_config: dict | None, **overrides: Any) -> SamplingParams:
        """Defaults from a checkpoint's generation_config.json (as vLLM does), greedy when it has none."""
        config = generation_config or {}
        values: dict[str, Any] = {}
        if config.get("do_sample") is False or not config:
            values["temperature"] = 0.0
        for key in ("temperature", "top_p", "top_k", "min_p", "repetition_penalty"):
            if key in config and config[key] is not None and values.get("temperature") != 0.0:
                values[key] = config[key]
        return cls(**{**values, **overrides})

    def validate(self) -> None:
        """Check the ranges again (ValueError naming the field): for params changed after they were built."""
        _check(self)

    def replace(self, **changes: Any) -> SamplingParams:
        return replace(self, **changes)

    # -- derived ---------------------------------------------------------------------------------------------
    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    @property
    def plain_greedy(self) -> bool:
        """Greedy with no penalties and no logprobs: the token is the argmax of the model's logits."""
        return self.temperature == 0.0 and not self.wants_logprobs and not self.uses_penalties

    @property
    def wants_logprobs(self) -> bool:
        """Whether the sampled tokens' log-probabilities are recorded (dicts, the flat list, or both)."""
        return self.logprobs is not None or self.token_logprobs

    @property
    def uses_penalties(self) -> bool:
        return self.presence_penalty != 0.0 or self.frequency_penalty != 0.0 or self.repetition_penalty != 1.0

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def _check(p: SamplingParams) -> None:
    """Raise ValueError naming the field for any value outside its range."""
    _integer(p, "n", low=1, high=MAX_N)
    _number(p, "temperature", low=0.0, high=MAX_FACTOR)
    _number(p, "top_p", low=0.0, low_open=True, high=1.0)
    _integer(p, "top_k", low=0, high=INT32_MAX)
    _number(p, "min_p", low=0.0, high=1.0)
    _number(p, "presence_penalty", low=-2.0, high=2.0)
    _number(p, "frequency_penalty", low=-2.0, high=2.0)
    _number(p, "repetition_penalty", low=1.0 / MAX_FACTOR, high=MAX_FACTOR)
    if p.max_tokens is not None:
        _integer(p, "max_tokens", low=1, high=INT64_MAX)
    if p.seed is not None:
        _integer(p, "seed", low=INT64_MIN, high=INT64_MAX)  # torch.Generator.manual_seed takes 64 bits
    if p.logprobs is not None:
        _integer(p, "logprobs", low=0, high=MAX_LOGPROBS)
    if not isinstance(p.token_logprobs, bool):
        raise ValueError(f"SamplingParams.token_logprobs must be a bool, got {p.token_logprobs!r}")
    if p.logprobs_mode not in LOGPROBS_MODES:
        raise ValueError(
            f"SamplingParams.logprobs_mode must be one of {LOGPROBS_MODES}, got {p.logprobs_mode!r}"
        )
    if p.thinking_budget is not None:
        _integer(p, "thinking_budget", low=0, high=INT64_MAX)
    for name in ("ignore_eos", "include_stop_str_in_output", "skip_special_tokens"):
        if not isinstance(getattr(p, name), bool):
            raise ValueError(f"SamplingParams.{name} must be True or False, got {getattr(p, name)!r}")
    for i, text in enumerate(p.stop):
        if not isinstance(text, str) or not text:
            raise ValueError(f"SamplingParams.stop[{i}] must be a non-empty string, got {text!r}")
    for i, token in enumerate(p.stop_token_ids):
        if not _is_int(token) or not 0 <= token <= INT64_MAX:
            raise ValueError(f"SamplingParams.stop_token_ids[{i}] must be a token id >= 0, got {token!r}")
    if not isinstance(p.thinking_stop_text, str) or "</think>" not in p.thinking_stop_text:
        raise ValueError(
            "SamplingParams.thinking_stop_text must contain '</think>' (it ends the thought), got "
            f"{p.thinking_stop_text!r}"
        )
    if p.answer_prefix is not None and (not isinstance(p.answer_prefix, str) or not p.answer_prefix):
        raise ValueError(
            f"SamplingParams.answer_prefix must be a non-empty string or None, got {p.answer_prefix!r}"
        )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _integer(p: SamplingParams, name: str, low: int | None, high: int | None = None) -> None:
    value = getattr(p, name)
    if not _is_int(value):
        raise ValueError(f"SamplingParams.{name} must be an integer, got {value!r}")
    if low is not None and value < low and (high is None or high >= INT32_MAX):
        raise ValueError(f"SamplingParams.{name} must be >= {low}, got {value}")
    if high is not None and value > high and high >= INT32_MAX:  # a machine limit, not a range of the knob
        raise ValueError(f"SamplingParams.{name} must be at most {high}, got {value}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"SamplingParams.{name} must be in [{low}, {high}], got {value}")


def _number(
    p: SamplingParams, name: str, low: float, high: float | None = None, low_open: bool = False
) -> None:
    value = getattr(p, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"SamplingParams.{name} must be a finite number, got {value!r}")
    too_low = value <= low if low_open else value < low
    if too_low or (high is not None and value > high):
        left = "(" if low_open else "["
        bounds = (
            f"> {low}"
            if high is None and low_open
            else f">= {low}"
            if high is None
            else f"in {left}{low}, {high}]"
        )
        raise ValueError(f"SamplingParams.{name} must be {bounds}, got {value}")
    setattr(p, name, float(value))
