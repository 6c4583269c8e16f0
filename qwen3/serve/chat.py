"""``POST /v1/chat/completions``: from the request to a prompt and sampling settings, and from engine deltas to
OpenAI chat completions (streamed chunks or one body).

- Thinking: ``chat_template_kwargs.enable_thinking`` (the request) wins over the server's
  ``default_chat_template_kwargs``. Whether the reply is parsed for a thought is read from the rendered prompt
  itself: a prompt whose last turn already closed its thought (the hard switch, or any template that does so)
  makes everything the model writes ``content`` (vllm#19839, sglang#5874).
- Sampling defaults are the model card's preset for the mode the conversation asks for (``/think``, ``/no_think``,
  ``enable_thinking``); every field the request sets wins.
- Tools: ``auto`` renders the tools and parses ``<tool_call>`` blocks (also one written without ``</think>``,
  sglang#22837); ``none`` neither renders nor parses them; ``required`` and a named function force the answer to
  start with ``<tool_call>\\n`` (and ``{"name": "<fn>", "arguments": ``), right after the thought.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jinja2

from qwen3.chat import render, render_jinja, resolve_thinking
from qwen3.engine.detokenizer import ChatOptions
from qwen3.engine.outputs import CompletionDelta
from qwen3.engine.sampling_params import NON_THINKING_PRESET, THINKING_PRESET, SamplingParams
from qwen3.serve.config import ServerConfig, check_chat_template_kwargs
from qwen3.serve.errors import bad_request, from_value_error
from qwen3.serve.protocol import ChatCompletionRequest, NamedToolChoice
from qwen3.serve.responses import Responder, chat_logprobs
from qwen3.serve.sampling import build_params, check_context, check_unsupported, resolve_max_tokens
from qwen3.tokenizer.special import IM_START, THINK_END, THINK_START, TOOL_CALL_START


@dataclass
class ChatPlan:
    prompt_ids: list[int]
    params: SamplingParams
    options: ChatOptions


def plan_chat(
    request: ChatCompletionRequest, config: ServerConfig, tokenizer, max_model_len: int
) -> ChatPlan:
    check_unsupported(request)
    _check_response_format(request.response_format)
    if len(request.messages) > config.max_messages:
        raise bad_request(
            f"{len(request.messages)} messages, more than the limit of {config.max_messages}", "messages"
        )
    kwargs = {**config.default_chat_template_kwargs, **(request.chat_template_kwargs or {})}
    problem = check_chat_template_kwargs(kwargs)
    if problem is not None:  # checked on both renderers, so a request is valid or not whatever the template
        key, message = problem
        raise bad_request(f"chat_template_kwargs.{key}: {message}", f"chat_template_kwargs.{key}")
    enable_thinking = kwargs.get("enable_thinking")
    tools, parse_tools, answer_prefix = _resolve_tools(request)
    prompt = _render(request.messages, tools, enable_thinking, kwargs, config.chat_template)
    prompt_ids = tokenizer.encode(prompt)
    max_tokens_param = "max_completion_tokens" if request.max_completion_tokens is not None else "max_tokens"
    max_tokens = resolve_max_tokens(
        request.max_completion_tokens or request.max_tokens, max_tokens_param, config
    )
    check_context(len(prompt_ids), max_tokens, max_model_len, "messages", max_tokens_param)
    try:
        thinking = resolve_thinking(request.messages, enable_thinking)
    except ValueError as err:
        raise from_value_error(err, "messages") from None
    if request.top_logprobs is not None and not request.logprobs:
        raise bad_request("top_logprobs needs logprobs: true", "top_logprobs")
    logprobs = (request.top_logprobs or 0) if request.logprobs else None
    preset = THINKING_PRESET if thinking else NON_THINKING_PRESET
    params = build_params(request, preset, max_tokens, logprobs, answer_prefix=answer_prefix)
    options = ChatOptions(enable_thinking=not prompt_closes_thought(prompt), tool_calls=parse_tools)
    return ChatPlan(prompt_ids, params, options)


def prompt_closes_thought(prompt: str) -> bool:
    """Whether the last turn of the prompt already holds a closed thought (``<think>\\n\\n</think>\\n\\n``)."""
    turn = prompt[max(prompt.rfind(IM_START), 0) :]
    return turn.rfind(THINK_END) > turn.rfind(THINK_START)


def _check_response_format(response_format: dict[str, Any] | None) -> None:
    kind = (response_format or {}).get("type", "text")
    if kind != "text":
        raise bad_request(
            f"response_format {kind!r} is not supported (no grammar-constrained decoding); use 'text'",
            "response_format.type",
        )


def _resolve_tools(request: ChatCompletionRequest) -> tuple[list[dict] | None, bool, str | None]:
    """(tools to render, whether to parse tool calls, the forced answer prefix)."""
    choice = request.tool_choice or ("auto" if request.tools else "none")
    if not request.tools:
        if request.tool_choice not in (None, "none"):
            raise bad_request("tool_choice needs tools: the request has none", "tool_choice")
        return None, False, None
    names: dict[str, int] = {}
    for index, tool in enumerate(request.tools):
        name = tool.function.name
        if name in names:
            raise bad_request(
                f"tools[{index}] repeats the function name {name!r} of tools[{names[name]}]",
                f"tools[{index}].function.name",
            )
        names[name] = index
    if choice == "none":
        return None, False, None
    tools = [tool.model_dump(exclude_unset=True) for tool in request.tools]
    if choice == "auto":
        return tools, True, None
    if choice == "required":
        return tools, True, f"{TOOL_CALL_START}\n"
    assert isinstance(choice, NamedToolChoice)
    name = choice.function.name
    if name not in names:
        raise bad_request(
            f"tool_choice names the function {name!r}, which is not in tools ({', '.join(names)})",
            "tool_choice.function.name",
        )
    return tools, True, f'{TOOL_CALL_START}\n{{"name": {json.dumps(name, ensure_ascii=False)}, "arguments": '


def _render(messages, tools, enable_thinking, kwargs: dict[str, Any], template: str | None) -> str:
    try:
        if template is not None:
            return render_jinja(template, messages, tools=tools, add_generation_prompt=True, **kwargs)
        return render(
            messages,
            tools=tools,
            add_generation_prompt=True,
            enable_thinking=enable_thinking,
            prefix_preserving=bool(kwargs.get("prefix_preserving", False)),
        )
    except ValueError as err:
        raise from_value_error(err, "messages") from None
    except jinja2.TemplateError as err:
        raise bad_request(f"the chat template failed on this conversation: {err}", "messages") from None


class ChatResponder(Responder):
    """Engine deltas -> ``chat.completion.chunk`` objects or one ``chat.completion``."""

    chunk_object = "chat.completion.chunk"
    body_object = "chat.completion"

    def __init__(
        self,
        response_id: str,
        model: str,
        n: int,
        top_logprobs: int | None,
        include_usage: bool,
        tokenizer,
        num_prompt_tokens: int,
    ):
        super().__init__(response_id, model, include_usage, tokenizer, num_prompt_tokens)
        self.n = n
        self.top_logprobs = top_logprobs
        self._called = [False] * n  # whether choice i has produced a tool call

    # -- streaming ---------------------------------------------------------------------------------------------
    def start(self) -> list[dict]:
        return [self._chunk(i, {"role": "assistant", "content": ""}) for i in range(self.n)]

    def chunks(self, delta: CompletionDelta) -> list[dict]:
        out = [self._chunk(delta.index, message_delta(m)) for m in delta.messages]
        if self.top_logprobs is not None and delta.token_ids:
            entries = chat_logprobs(delta.token_ids, delta.logprobs, self.top_logprobs, self.tokenizer)
            if entries:
                if not out:
                    out.append(self._chunk(delta.index, {}))
                out[-1]["choices"][0]["logprobs"] = {"content": entries}
        self._called[delta.index] |= any(m.tool_calls for m in delta.messages)
        if delta.finished:
            self.tally.finished(delta)
            reason = finish_reason(delta.finish_reason, self._called[delta.index])
            out.append(self._chunk(delta.index, {}, reason, delta.stop_reason))
        return out

    def _chunk(self, index: int, delta: dict, reason: str | None = None, stop_reason=None) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": index, "delta": delta, "logprobs": None, "finish_reason": reason}
        if reason is not None:
            choice["stop_reason"] = stop_reason
        return self._wrap(choice)

    # -- one body ----------------------------------------------------------------------------------------------
    def choices(self) -> list[dict]:
        choices = []
        for index in sorted(self.finals):
            out = self.finals[index].output
            assert out is not None
            message: dict[str, Any] = {
                "role": "assistant",
                "content": out.content,
                "reasoning_content": out.reasoning_content,
                "reasoning": out.reasoning_content,
            }
            if out.tool_calls:
                message["tool_calls"] = [call.to_dict() for call in out.tool_calls]
            logprobs = None
            if self.top_logprobs is not None:
                logprobs = {
                    "content": chat_logprobs(out.token_ids, out.logprobs, self.top_logprobs, self.tokenizer)
                }
            choices.append(
                {
                    "index": index,
                    "message": message,
                    "logprobs": logprobs,
                    "finish_reason": finish_reason(out.finish_reason, bool(out.tool_calls)),
                    "stop_reason": out.stop_reason,
                }
            )
        return choices


def message_delta(message) -> dict[str, Any]:
    """One parser delta as an OpenAI ``delta``; the reasoning is in both ``reasoning_content`` and ``reasoning``."""
    delta: dict[str, Any] = {}
    if message.reasoning_content is not None:
        delta["reasoning_content"] = delta["reasoning"] = message.reasoning_content
    if message.content is not None:
        delta["content"] = message.content
    if message.tool_calls:
        delta["tool_calls"] = [call.to_dict() for call in message.tool_calls]
    return delta


def finish_reason(reason: str | None, called_tools: bool) -> str | None:
    """OpenAI's reasons: a reply that ended normally after tool calls finished with "tool_calls"."""
    return "tool_calls" if reason == "stop" and called_tools else reason
