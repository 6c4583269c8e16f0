"""``LLM``: offline generation and chat over ``LLMEngine`` (vLLM's ``LLM`` interface).

```python
llm = qwen3.LLM("path/to/Qwen3-0.6B", dtype="bfloat16")
out = llm.generate(["The capital of France is"], qwen3.SamplingParams(temperature=0, max_tokens=16))
reply = llm.chat([{"role": "user", "content": "Hi /no_think"}], thinking_budget=None)
for delta in llm.chat_stream(messages): print(delta.text, end="")
```
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from qwen3.engine.config import EngineConfig
from qwen3.engine.detokenizer import ChatOptions
from qwen3.engine.llm_engine import EngineStats, LLMEngine
from qwen3.engine.loading import load_model_and_tokenizer
from qwen3.engine.outputs import CompletionDelta, CompletionOutput, RequestOutput
from qwen3.engine.sampling_params import SamplingParams

Prompt = str | list[int]
Messages = list[dict[str, Any]]


@dataclass
class _Request:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    n: int


class LLM:
    def __init__(
        self,
        model,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str = "cpu",
        tokenizer=None,
        seed: int = 0,
        **engine_config: Any,
    ):
        """``model``: checkpoint directory, preset name or a ``Qwen3ForCausalLM``; ``engine_config``:
        ``EngineConfig`` fields (max_model_len, max_num_seqs, kv_cache_memory_gb, weights, ...)."""
        config = EngineConfig(seed=seed, **engine_config)
        model, tokenizer = load_model_and_tokenizer(model, dtype, device, tokenizer, seed)
        self.engine = LLMEngine(model, tokenizer, config)
        self._ids = itertools.count()

    @property
    def tokenizer(self):
        return self.engine.tokenizer

    @property
    def model(self):
        return self.engine.model

    def sync_weights(self) -> None:
        """After changing the model's weights (e.g. an RL policy update): see ``LLMEngine.sync_weights``."""
        self.engine.sync_weights()

    # -- plain generation ------------------------------------------------------------------------------------
    def generate(
        self,
        prompts: Prompt | Sequence[Prompt],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        progress: bool | None = None,
    ) -> list[RequestOutput]:
        """One ``RequestOutput`` per prompt, in order. A prompt is text or a list of token ids."""
        requests = self._add_all(_as_prompt_list(prompts), sampling_params, chat=None, stream=False)
        return self._collect(requests, progress)

    def stream(
        self,
        prompts: Prompt | Sequence[Prompt],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
    ) -> Iterator[CompletionDelta]:
        """The deltas of all prompts as the engine produces them (``delta.request_id`` says which)."""
        requests = self._add_all(_as_prompt_list(prompts), sampling_params, chat=None)
        return self._stream(requests)

    # -- chat ------------------------------------------------------------------------------------------------
    def chat(
        self,
        conversations: Messages | Sequence[Messages],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        tools: list[dict] | None = None,
        enable_thinking: bool | None = None,
        progress: bool | None = None,
    ) -> list[RequestOutput]:
        """Render each conversation with the Qwen3 chat template, generate, and parse the reply into
        ``reasoning_content`` / ``content`` / ``tool_calls``. Without ``sampling_params`` each conversation gets the
        model card's preset for the mode it asks for (``/think``, ``/no_think``, ``enable_thinking``)."""
        requests = self._add_chats(conversations, sampling_params, tools, enable_thinking, stream=False)
        return self._collect(requests, progress)

    def chat_stream(
        self,
        conversations: Messages | Sequence[Messages],
        sampling_params: SamplingParams | Sequence[SamplingParams] | None = None,
        tools: list[dict] | None = None,
        enable_thinking: bool | None = None,
    ) -> Iterator[CompletionDelta]:
        return self._stream(self._add_chats(conversations, sampling_params, tools, enable_thinking))

    def render_chat(
        self, messages: Messages, tools: list[dict] | None = None, enable_thinking: bool | None = None
    ) -> str:
        from qwen3.chat import render

        return render(messages, tools=tools, add_generation_prompt=True, enable_thinking=enable_thinking)

    # -- internals -------------------------------------------------------------------------------------------
    def _add_chats(
        self, conversations, sampling_params, tools, enable_thinking, stream: bool = True
    ) -> list[_Request]:
        from qwen3.chat import resolve_thinking

        convs = _as_conversation_list(conversations)
        params_list = _broadcast(sampling_params, len(convs))
        prompts, params, chats = [], [], []
        for messages, p in zip(convs, params_list):
            prompts.append(self.render_chat(messages, tools, enable_thinking))
            params.append(p or SamplingParams.recommended(resolve_thinking(messages, enable_thinking)))
            chats.append(ChatOptions(enable_thinking=enable_thinking is not False))
        return self._add_all(prompts, params, chats, stream)

    def _add_all(self, prompts: list[Prompt], sampling_params, chat, stream: bool = True) -> list[_Request]:
        """Queue every prompt or none; ``stream=False`` when only the final outputs are wanted."""
        params_list = _broadcast(sampling_params, len(prompts))
        chats = chat if isinstance(chat, list) else [chat] * len(prompts)
        requests: list[_Request] = []
        try:
            for index, (prompt, params, options) in enumerate(zip(prompts, params_list, chats)):
                request_id = str(next(self._ids))
                try:
                    ids = self.engine.add_request(request_id, prompt, params, chat=options, stream=stream)
                except (ValueError, TypeError) as err:
                    if len(prompts) > 1 and err.args and isinstance(err.args[0], str):
                        err.args = (f"prompt {index} of {len(prompts)}: {err.args[0]}", *err.args[1:])
                    raise
                n = (params or self.engine.default_params).n
                requests.append(_Request(request_id, prompt if isinstance(prompt, str) else None, ids, n))
        except Exception:
            self._cancel(requests)  # all or nothing
            raise
        return requests

    def _cancel(self, requests: list[_Request]) -> None:
        for request in requests:
            self.engine.abort(request.request_id)
        while self.engine.has_unfinished():
            self.engine.step()

    def _stream(
        self, requests: list[_Request], after_step: Callable[[], None] | None = None
    ) -> Iterator[CompletionDelta]:
        remaining = {request.request_id: request.n for request in requests}
        try:
            while remaining:
                deltas = self.engine.step()
                if after_step is not None:
                    after_step()
                for delta in deltas:
                    if delta.request_id in remaining:
                        yield delta
                        if delta.finished:
                            remaining[delta.request_id] -= 1
                            if not remaining[delta.request_id]:
                                del remaining[delta.request_id]
        finally:
            if remaining:  # the consumer stopped early: cancel what is left
                self._cancel([r for r in requests if r.request_id in remaining])

    def _collect(self, requests: list[_Request], progress: bool | None) -> list[RequestOutput]:
        finals: dict[str, dict[int, CompletionOutput]] = {request.request_id: {} for request in requests}
        with _Progress(sum(request.n for request in requests), progress, self.engine.stats) as bar:
            for delta in self._stream(requests, bar.refresh if bar.enabled else None):
                assert delta.finished and delta.output is not None  # stream=False: final deltas only
                finals[delta.request_id][delta.index] = delta.output
                bar.finished()
        return [
            RequestOutput(
                r.request_id,
                r.prompt,
                r.prompt_token_ids,
                [finals[r.request_id][i] for i in sorted(finals[r.request_id])],
            )
            for r in requests
        ]


class _Progress:
    """A rich progress bar on stderr (completions done, output tokens/s); shown by default only on a terminal."""

    def __init__(self, total: int, enabled: bool | None, stats: EngineStats):
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.total = total
        self._stats = stats
        self._first_token = stats.output_tokens

    def __enter__(self) -> _Progress:
        if self.enabled:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("generating"),
                BarColumn(),
                TextColumn("{task.completed}/{task.total} completions"),
                TextColumn("{task.fields[rate]}"),
                TimeElapsedColumn(),
                transient=False,
            )
            self._bar.start()
            self._task = self._bar.add_task("generate", total=self.total, rate="")
        return self

    def refresh(self) -> None:
        """After each engine step: output tokens/s so far."""
        elapsed = self._bar.tasks[0].elapsed or 0.0
        tokens = self._stats.output_tokens - self._first_token
        self._bar.update(self._task, rate=f"{tokens / elapsed:.1f} tok/s" if elapsed > 0 else "")

    def finished(self) -> None:
        if self.enabled:
            self._bar.update(self._task, advance=1)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._bar.stop()


def _as_prompt_list(prompts) -> list[Prompt]:
    if isinstance(prompts, str):
        return [prompts]
    prompts = list(prompts)
    if prompts and all(isinstance(p, int) and not isinstance(p, bool) for p in prompts):
        return [prompts]  # one prompt given as token ids
    return prompts


def _as_conversation_list(conversations) -> list[Messages]:
    conversations = list(conversations)
    if conversations and isinstance(conversations[0], dict):
        return [conversations]
    return conversations


def _broadcast(params, count: int) -> list:
    if params is None or isinstance(params, SamplingParams):
        return [params] * count
    params = list(params)
    if len(params) != count:
        raise ValueError(f"got {len(params)} SamplingParams for {count} prompts")
    return params
