"""What ``qwen3 generate`` and ``qwen3 chat`` share: sampling settings from the flags, printing a reply, timing it.

Kept apart from qwen3/engine/cli.py (the argument parsers and ``generate``) and qwen3/engine/chat_repl.py (the
chat session), which both use it, so that neither imports the other's internals.
"""

from __future__ import annotations

import argparse
import copy
import time

# New tokens per reply unless --max-tokens says otherwise: a reply ends even when the model never stops (random
# weights, a loop), as llama.cpp's and ollama's front ends cap it. Enough for most non-thinking answers and a
# moderate thought; the model card's 32,768 for hard reasoning needs --max-tokens 32768 (or "max").
DEFAULT_MAX_TOKENS = 2048


def max_tokens_flag(text: str) -> int | None:
    """``--max-tokens``: a number of tokens, or ``max`` for everything the context has room for (None)."""
    if text == "max":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of tokens or 'max', got {text!r}") from None


def sampling_params(args: argparse.Namespace, thinking: bool, budget: int | None, raw: bool = False):
    """The model card preset for the mode (raw prompts: the checkpoint's defaults), with the flags on top."""
    from qwen3.cli import UserFacingError
    from qwen3.engine.sampling_params import SamplingParams

    flags = {
        "temperature": args.temperature,
        "top_p": args.top_p,
        "top_k": args.top_k,
        "min_p": args.min_p,
        "presence_penalty": args.presence_penalty,
        "seed": args.seed,
    }
    overrides = {key: value for key, value in flags.items() if value is not None}
    overrides["max_tokens"] = args.max_tokens  # None: up to the context length
    overrides["thinking_budget"] = budget
    try:
        if raw:
            return SamplingParams.from_generation_config(None, **overrides)
        return SamplingParams.recommended(thinking, **overrides)
    except ValueError as err:
        raise UserFacingError(str(err)) from None


class ReplyPrinter:
    """Prints one reply, streamed or whole; raw text as is.

    For chat replies on a terminal the reasoning is dimmed and set apart from the answer by a blank line. When
    the output is not a terminal (piped, redirected) the reasoning is written between ``<think>`` and
    ``</think>`` lines instead, as the model writes it, so a program reading the output can tell the two apart.
    """

    def __init__(self, console, chat: bool, mark_reasoning: bool | None = None):
        self.console = console
        self.chat = chat
        self.mark_reasoning = not console.is_terminal if mark_reasoning is None else mark_reasoning
        self._in_reasoning = False

    def _text(self, text: str, style: str | None = None, end: str = "") -> None:
        self.console.print(text, style=style, end=end, markup=False, highlight=False, soft_wrap=True)

    def _reasoning(self, text: str) -> None:
        if not self._in_reasoning and self.mark_reasoning:
            self._text("<think>", end="\n")
        self._in_reasoning = True
        self._text(text, style=None if self.mark_reasoning else "dim")

    def _leave_reasoning(self) -> None:
        if self._in_reasoning:
            self._text("\n</think>" if self.mark_reasoning else "", end="\n\n")
            self._in_reasoning = False

    def _tool_call(self, call) -> None:
        self._text(f"[tool call] {call.function.name}({call.function.arguments})", end="\n")

    def delta(self, delta) -> None:
        if not self.chat:
            self._text(delta.text)
            return
        for message in delta.messages:
            if message.reasoning_content:
                self._reasoning(message.reasoning_content)
            if message.content:
                self._leave_reasoning()
                self._text(message.content)
            for call in message.tool_calls:
                self._leave_reasoning()
                self._tool_call(call)

    def whole(self, output) -> None:
        if not self.chat:
            self._text(output.text, end="\n")
            return
        if output.reasoning_content:
            self._reasoning(output.reasoning_content)
            self._leave_reasoning()
        if output.content:
            self._text(output.content, end="\n")
        for call in output.tool_calls:
            self._tool_call(call)

    def end(self) -> None:
        if self._in_reasoning and self.mark_reasoning:  # a thought cut off by the length limit: close its tag
            self._text("\n</think>")
        self._text("", end="\n")
        self._in_reasoning = False


class Timer:
    """Tokens/s of one reply, with the engine's prefill and decode split."""

    def __init__(self, engine):
        self.engine = engine
        self.before = copy.copy(engine.stats)
        self.start = time.perf_counter()
        self.tokens = 0

    def summary(self) -> str:
        seconds = time.perf_counter() - self.start
        stats, before = self.engine.stats, self.before
        prefill = stats.prefill_tokens - before.prefill_tokens
        prefill_s = stats.prefill_seconds - before.prefill_seconds
        decode = stats.decode_tokens - before.decode_tokens
        decode_s = stats.decode_seconds - before.decode_seconds
        parts = [f"{self.tokens} tokens in {seconds:.2f} s"]
        if prefill_s > 0:
            parts.append(f"prefill {prefill} tokens at {prefill / prefill_s:.1f} tok/s")
        if decode_s > 0:
            parts.append(f"decode {decode / decode_s:.1f} tok/s")
        return "[" + "; ".join(parts) + "]"
