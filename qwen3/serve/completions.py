"""``POST /v1/completions``: raw prompts (text or token ids, one or a list), no chat template.

Sampling defaults come from the checkpoint's generation_config.json, as in vLLM; ``max_tokens`` defaults to 16, as
in OpenAI's API. Choice ``index`` is ``prompt_index * n + i``. ``echo`` puts the prompt text in front of each
choice's text (not together with ``logprobs``: prompt logprobs are not computed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from qwen3.engine.outputs import CompletionDelta
from qwen3.engine.sampling_params import SamplingParams
from qwen3.serve.config import ServerConfig
from qwen3.serve.errors import bad_request
from qwen3.serve.protocol import CompletionRequest
from qwen3.serve.responses import Responder, completion_logprobs
from qwen3.serve.sampling import (
    build_params,
    check_context,
    check_unsupported,
    defaults_of,
    resolve_max_tokens,
)


@dataclass
class CompletionPlan:
    prompts: list[list[int]]
    params: SamplingParams


def plan_completion(
    request: CompletionRequest, config: ServerConfig, tokenizer, max_model_len: int, defaults: SamplingParams
) -> CompletionPlan:
    check_unsupported(request)
    if request.suffix is not None:
        raise bad_request("suffix is not supported (Qwen3 fill-in-the-middle is not wired up)", "suffix")
    if request.best_of is not None and request.best_of != request.n:
        raise bad_request("best_of other than n is not supported", "best_of")
    if request.echo and request.logprobs is not None:
        raise bad_request(
            "echo with logprobs needs prompt logprobs, which this server does not compute", "echo"
        )
    prompts = _prompt_list(request.prompt)
    if len(prompts) > config.max_messages:
        raise bad_request(f"{len(prompts)} prompts, more than the limit of {config.max_messages}", "prompt")
    max_tokens = resolve_max_tokens(request.max_tokens, "max_tokens", config)
    ids = []
    for index, prompt in enumerate(prompts):
        param = "prompt" if len(prompts) == 1 else f"prompt[{index}]"
        if isinstance(prompt, str):
            if not prompt:
                raise bad_request(f"{param}: the prompt is empty", param)
            prompt = tokenizer.encode(prompt)
        elif not prompt:
            raise bad_request(f"{param}: the prompt has no token ids", param)
        check_context(len(prompt), max_tokens, max_model_len, param, "max_tokens")
        ids.append(prompt)
    params = build_params(request, defaults_of(defaults), max_tokens, request.logprobs)
    return CompletionPlan(ids, params)


def _prompt_list(prompt: str | list) -> list[str | list[int]]:
    if isinstance(prompt, str):
        return [prompt]
    if not prompt:
        raise bad_request("prompt: the list is empty", "prompt")
    if isinstance(prompt[0], int):
        return [prompt]  # one prompt given as token ids
    return list(prompt)


class CompletionResponder(Responder):
    """Engine deltas -> ``text_completion`` chunks or one body."""

    chunk_object = body_object = "text_completion"

    def __init__(
        self,
        response_id: str,
        model: str,
        plan: CompletionPlan,
        request_ids: list[str],
        echo: bool,
        include_usage: bool,
        tokenizer,
    ):
        super().__init__(response_id, model, include_usage, tokenizer, sum(len(ids) for ids in plan.prompts))
        self.n = plan.params.n
        self.top_logprobs = plan.params.logprobs
        self._prompt_of = {request_id: i for i, request_id in enumerate(request_ids)}
        self._echo = [tokenizer.decode(ids) if echo else "" for ids in plan.prompts]
        self._offsets: dict[int, int] = {}  # text_offset per choice

    def index(self, delta: CompletionDelta) -> int:
        return self._prompt_of[delta.request_id] * self.n + delta.index

    # -- streaming ---------------------------------------------------------------------------------------------
    def start(self) -> list[dict]:
        return [
            self._chunk(p * self.n + i, text, None)
            for p, text in enumerate(self._echo)
            if text
            for i in range(self.n)
        ]

    def chunks(self, delta: CompletionDelta) -> list[dict]:
        index = self.index(delta)
        logprobs = None
        if self.top_logprobs is not None and delta.token_ids:
            offset = self._offsets.get(index, 0)
            logprobs = completion_logprobs(
                delta.token_ids, delta.logprobs, self.top_logprobs, self.tokenizer, offset
            )
            self._offsets[index] = offset + sum(len(t) for t in logprobs["tokens"])
        if delta.finished:
            self.tally.finished(delta)
        if not delta.text and logprobs is None and not delta.finished:
            return []
        return [self._chunk(index, delta.text, logprobs, delta)]

    def _chunk(self, index: int, text: str, logprobs, delta: CompletionDelta | None = None) -> dict[str, Any]:
        finished = delta is not None and delta.finished
        return self._wrap(
            {
                "index": index,
                "text": text,
                "logprobs": logprobs,
                "finish_reason": delta.finish_reason if finished else None,
                "stop_reason": delta.stop_reason if finished else None,
            }
        )

    # -- one body ----------------------------------------------------------------------------------------------
    def add(self, delta: CompletionDelta, index: int | None = None) -> None:
        super().add(delta, self.index(delta))

    def choices(self) -> list[dict]:
        choices = []
        for index in sorted(self.finals):
            delta = self.finals[index]
            out = delta.output
            assert out is not None
            logprobs = None
            if self.top_logprobs is not None:
                logprobs = completion_logprobs(
                    out.token_ids, out.logprobs, self.top_logprobs, self.tokenizer, 0
                )
            choices.append(
                {
                    "index": index,
                    "text": self._echo[self._prompt_of[delta.request_id]] + out.text,
                    "logprobs": logprobs,
                    "finish_reason": out.finish_reason,
                    "stop_reason": out.stop_reason,
                }
            )
        return choices
