"""From an OpenAI request to ``SamplingParams``: defaults, limits, the context check, unsupported fields."""

from __future__ import annotations

from typing import Any

from qwen3.engine.sampling_params import SamplingParams
from qwen3.serve.config import ServerConfig
from qwen3.serve.errors import APIError, bad_request, from_value_error
from qwen3.serve.protocol import SamplingRequest

# Request fields that override the defaults one by one when the request sets them.
OVERRIDABLE = (
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "seed",
)
PRESET_FIELDS = ("temperature", "top_p", "top_k", "min_p", "repetition_penalty")


def defaults_of(params: SamplingParams) -> dict[str, Any]:
    """The sampling fields of ready params (e.g. the checkpoint's generation_config defaults)."""
    return {name: getattr(params, name) for name in PRESET_FIELDS}


def resolve_max_tokens(requested: int | None, param: str, config: ServerConfig) -> int | None:
    limit = config.max_tokens_limit
    if requested is None:
        return limit
    if limit is not None and requested > limit:
        raise bad_request(f"{param} is {requested}, more than this server's limit of {limit}", param)
    return requested


def check_context(
    num_prompt_tokens: int,
    max_tokens: int | None,
    max_model_len: int,
    prompt_param: str,
    max_tokens_param: str,
) -> None:
    """400 ``context_length_exceeded`` when the prompt, or the prompt plus ``max_tokens``, does not fit (as vLLM)."""
    if num_prompt_tokens >= max_model_len:
        raise APIError(
            400,
            f"the prompt has {num_prompt_tokens} tokens but the model's context is {max_model_len} tokens "
            "(prompt plus at least one generated token): shorten the prompt",
            prompt_param,
            "context_length_exceeded",
        )
    if max_tokens is not None and num_prompt_tokens + max_tokens > max_model_len:
        raise APIError(
            400,
            f"the model's context is {max_model_len} tokens, but the request asks for "
            f"{num_prompt_tokens + max_tokens} ({num_prompt_tokens} in the prompt, {max_tokens} in the completion): "
            f"lower {max_tokens_param} or shorten the prompt",
            max_tokens_param,
            "context_length_exceeded",
        )


def check_unsupported(request: SamplingRequest) -> None:
    if request.logit_bias:
        raise bad_request("logit_bias is not supported by this server", "logit_bias")


def build_params(
    request: SamplingRequest,
    defaults: dict[str, Any],
    max_tokens: int | None,
    logprobs: int | None,
    **extra: Any,
) -> SamplingParams:
    """``defaults`` (a preset or the checkpoint's) with every field the request sets on top."""
    values = dict(defaults)
    for name in OVERRIDABLE:
        value = getattr(request, name)
        if value is not None:
            values[name] = value
    values.update(
        n=request.n,
        max_tokens=max_tokens,
        stop=request.stop,
        stop_token_ids=request.stop_token_ids or [],
        ignore_eos=request.ignore_eos,
        skip_special_tokens=request.skip_special_tokens,
        include_stop_str_in_output=request.include_stop_str_in_output,
        logprobs=logprobs,
        thinking_budget=request.budget,
        **extra,
    )
    try:
        return SamplingParams(**values)
    except ValueError as err:
        raise from_value_error(err) from None
