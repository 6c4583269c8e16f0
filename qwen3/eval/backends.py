"""Backends: where replies come from. ``InProcessBackend`` runs ``qwen3.LLM`` (all requests of a batch in one
``LLM.generate`` call); ``OpenAIBackend`` sends concurrent requests to any OpenAI-compatible server (ours, vLLM or
SGLang with ``--reasoning-parser qwen3``; docs/eval.md).

Both take ``ChatRequest``s (a conversation, its tools, the hard thinking switch and the decoding settings) and
return one ``Reply`` per request, in order. A request that fails becomes ``Reply.failed(reason)`` (graded wrong
with the reason); only problems that would fail every request (no server, an unknown model, no chat template)
raise ``EvalError`` before any work.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3.cli import UserFacingError
from qwen3.eval.reply import Reply
from qwen3.tokenizer.special import THINK_START


class EvalError(UserFacingError):
    """Bad input for an evaluation (a model, server, suite or option); printed as one line by the CLI."""


@dataclass(frozen=True)
class GenParams:
    """Decoding settings of one request (SamplingParams' and OpenAI's names). ``seed`` makes it reproducible
    whatever else is in the batch; ``thinking_budget`` caps the thought (report §4.3)."""

    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    presence_penalty: float = 0.0
    max_tokens: int | None = None
    seed: int | None = None
    thinking_budget: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ChatRequest:
    messages: list[dict[str, Any]]
    params: GenParams
    tools: list[dict[str, Any]] | None = None
    enable_thinking: bool | None = None  # False: the hard switch (the prompt closes the thought)
    open_thought: bool = (
        False  # in process: the prompt ends in "<think>\n", so the model starts inside a thought
    )
    extra: dict[str, Any] = field(default_factory=dict)


class InProcessBackend:
    """``qwen3.LLM`` on a checkpoint directory, a run directory (its newest checkpoint), a preset name (random
    weights) or a ready ``LLM``. ``engine`` holds ``LLM`` keyword arguments (max_model_len, weights, ...)."""

    name = "in_process"

    def __init__(self, model: Any, **engine: Any):
        from qwen3.engine import LLM

        self.label = str(model) if not isinstance(model, LLM) else "LLM"
        self.llm = model if isinstance(model, LLM) else LLM(check_model_source(model), **engine)
        if (
            isinstance(model, (str, Path))
            and Path(model).is_dir()
            and self.llm.tokenizer.chat_template is None
        ):
            raise EvalError(
                f"{model}: the model's tokenizer has no chat template (tokenizer_config.json chat_template or "
                "chat_template.jinja); qwen3 eval needs a chat model"
            )

    @property
    def max_model_len(self) -> int:
        return self.llm.engine.max_model_len

    def complete(self, requests: Sequence[ChatRequest], progress: bool = False) -> list[Reply]:
        from qwen3.engine import SamplingParams

        replies: list[Reply | None] = [None] * len(requests)
        prompts, params, runnable = [], [], []
        for index, request in enumerate(requests):
            try:
                text = self.llm.render_chat(request.messages, request.tools, request.enable_thinking)
                if request.open_thought and request.enable_thinking is not False:
                    text += THINK_START + "\n"
                ids = self.llm.tokenizer.encode(text)
                if len(ids) >= self.max_model_len:
                    raise ValueError(f"the prompt has {len(ids)} tokens; the context is {self.max_model_len}")
                params.append(
                    SamplingParams(**request.params.to_dict())
                )  # GenParams uses SamplingParams' names
            except ValueError as err:  # a conversation the template or the engine refuses
                replies[index] = Reply.failed(str(err))
                continue
            prompts.append(ids)
            runnable.append(index)
        outputs = self.llm.generate(prompts, params, progress=progress) if prompts else []
        for index, output in zip(runnable, outputs):
            completion, request = output.outputs[0], requests[index]
            replies[index] = Reply.from_text(
                completion.text,
                enable_thinking=request.enable_thinking is not False,
                tools=bool(request.tools),
                finish_reason=completion.finish_reason,
                reasoning_tokens=completion.num_reasoning_tokens,
            )
        return replies  # type: ignore[return-value]


def check_model_source(model: Any) -> Any:
    """A directory or a preset name; anything else is an EvalError naming it."""
    if not isinstance(model, (str, Path)):
        return model
    from qwen3.model.presets import PRESETS

    if Path(model).is_dir() or str(model) in PRESETS:
        return model
    raise EvalError(
        f"{model}: not a checkpoint directory, run directory or preset name (presets: {', '.join(sorted(PRESETS))})"
    )


class OpenAIBackend:
    """Chat completions against ``base_url`` (e.g. ``http://localhost:8000/v1``), ``concurrency`` requests in
    flight. Thinking off is sent as ``chat_template_kwargs={"enable_thinking": false}``, top-k and the thinking
    budget as the vLLM extensions ``top_k`` and ``thinking_budget`` / ``thinking_token_budget``."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        concurrency: int = 16,
        timeout_s: float = 600,
    ):
        import openai

        if concurrency < 1:
            raise EvalError(f"--concurrency must be >= 1, got {concurrency}")
        self.base_url, self.model, self.label = base_url, model, f"{model} @ {base_url}"
        self.concurrency = concurrency
        self.client = openai.OpenAI(
            base_url=base_url, api_key=api_key or "none", max_retries=1, timeout=timeout_s
        )

    def check(self) -> None:
        """Fail fast with one line: no server, an answer that is not the OpenAI API, an unknown model, a model
        without a chat template."""
        import openai

        try:
            served = [entry.id for entry in self.client.models.list().data]
        except openai.APIConnectionError as err:
            raise EvalError(f"cannot reach an OpenAI-compatible server at {self.base_url} ({err})") from None
        except Exception as err:  # a 404, HTML or any other answer that is not the models list
            raise EvalError(
                f"{self.base_url} does not answer GET /models like an OpenAI server ({err})"
            ) from None
        if self.model not in served:
            raise EvalError(
                f"the server at {self.base_url} does not serve {self.model!r} (it serves {served})"
            )
        try:
            response = self.client.chat.completions.create(
                model=self.model, messages=[{"role": "user", "content": "Hi"}], max_tokens=1
            )
            message = response.choices[0].message
        except openai.BadRequestError as err:
            if "template" in str(err).lower():
                raise EvalError(f"{self.model!r} has no chat template on {self.base_url} ({err})") from None
            raise EvalError(f"{self.base_url} refused a one-turn chat request ({err})") from None
        except Exception as err:
            raise EvalError(
                f"{self.base_url} does not answer chat completions like an OpenAI server ({err})"
            ) from None
        if message is None or not hasattr(message, "content"):
            raise EvalError(f"{self.base_url} answered a chat completion without a message")

    def complete(self, requests: Sequence[ChatRequest], progress: bool = False) -> list[Reply]:
        with ThreadPoolExecutor(self.concurrency) as pool, _Bar(len(requests), progress, "requests") as bar:
            futures = [pool.submit(self._one, request) for request in requests]
            for future in futures:
                future.add_done_callback(lambda _: bar.advance())
            return [future.result() for future in futures]

    def _one(self, request: ChatRequest) -> Reply:
        import openai

        if request.open_thought:
            return Reply.failed(
                "open_thought (a prompt that starts the thought) needs the in-process backend"
            )

        p = request.params
        extra: dict[str, Any] = {"top_k": p.top_k if p.top_k > 0 else -1}
        if request.enable_thinking is not None:
            extra["chat_template_kwargs"] = {"enable_thinking": request.enable_thinking}
        if p.thinking_budget is not None:
            extra["thinking_budget"] = extra["thinking_token_budget"] = p.thinking_budget
        body: dict[str, Any] = {
            "model": self.model,
            "messages": request.messages,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "presence_penalty": p.presence_penalty,
            "extra_body": extra,
        }
        if p.seed is not None:
            body["seed"] = p.seed
        if p.max_tokens is not None:
            body["max_tokens"] = p.max_tokens
        if request.tools:
            body["tools"] = request.tools
        try:
            response = self.client.chat.completions.create(**body)
            choice = response.choices[0]
            message = choice.message.model_dump()
        except openai.APIStatusError as err:
            return Reply.failed(f"HTTP {err.status_code}: {str(err)[:200]}")
        except openai.APIError as err:
            return Reply.failed(f"{type(err).__name__}: {str(err)[:200]}")
        except (AttributeError, IndexError, TypeError) as err:
            return Reply.failed(f"the server's answer is not a chat completion ({err})")
        message["reasoning_content"] = message.get("reasoning_content") or _extra_field(choice.message)
        tokens = _reasoning_tokens(response)
        thinking = request.enable_thinking is not False
        return Reply.from_message(
            message, finish_reason=choice.finish_reason, thinking_prompt=thinking, reasoning_tokens=tokens
        )


def _extra_field(message: Any) -> str | None:
    """reasoning_content / reasoning as the openai package keeps unknown fields."""
    extra = getattr(message, "model_extra", None) or {}
    return extra.get("reasoning_content") or extra.get("reasoning")


def _reasoning_tokens(response: Any) -> int | None:
    details = getattr(getattr(response, "usage", None), "completion_tokens_details", None)
    return getattr(details, "reasoning_tokens", None)


class _Bar:
    """A rich progress bar on stderr over ``total`` requests (only on a terminal unless asked)."""

    def __init__(self, total: int, enabled: bool, what: str):
        self.enabled, self.total, self.what = enabled and total > 0, total, what

    def __enter__(self) -> _Bar:
        if self.enabled:
            from rich.console import Console
            from rich.progress import Progress

            self._bar = Progress(console=Console(file=sys.stderr))
            self._bar.start()
            self._task = self._bar.add_task(self.what, total=self.total)
        return self

    def advance(self) -> None:
        if self.enabled:
            self._bar.update(self._task, advance=1)

    def __exit__(self, *exc) -> None:
        if self.enabled:
            self._bar.stop()
