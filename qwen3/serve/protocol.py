"""Request bodies of the OpenAI API, as pydantic models with OpenAI's field names.

Validation is strict about types (``"n": "2"`` or ``"stream": "yes"`` are errors, not coerced) and lenient about
unknown fields, which are accepted and ignored as OpenAI's and vLLM's servers do (clients send fields such as
``user`` or ``service_tier``). Extensions over the OpenAI API, the ones vLLM users know: ``top_k``, ``min_p``,
``repetition_penalty``, ``chat_template_kwargs``, ``stop_token_ids``, ``ignore_eos``, ``skip_special_tokens``,
``include_stop_str_in_output``, plus ``thinking_budget`` (vLLM's name ``thinking_token_budget`` is accepted too).

Checks that involve several fields or the server's state (a named tool that is not in ``tools``, the context
length) are made by the handlers, which name the offending field in their errors.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

# OpenAI: "a-z, A-Z, 0-9, or contain underscores and dashes, with a maximum length of 64"; vLLM also allows dots.
FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")


class OpenAIModel(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class StreamOptions(OpenAIModel):
    include_usage: bool = False


class FunctionDefinition(OpenAIModel):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, name: str) -> str:
        if not FUNCTION_NAME.match(name):
            raise ValueError(f"function names are 1 to 64 letters, digits, '_', '-' or '.', got {name!r}")
        return name

    @field_validator("parameters")
    @classmethod
    def _parameters(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        if schema is not None:
            check_object_schema(schema)
        return schema


class ToolDefinition(OpenAIModel):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(OpenAIModel):
    name: str


class NamedToolChoice(OpenAIModel):
    type: Literal["function"]
    function: FunctionName


class SamplingRequest(OpenAIModel):
    """The fields chat and text completions share."""

    model: str | None = None
    n: int = Field(1, ge=1, le=128)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1)
    min_p: float | None = Field(None, ge=0.0, le=1.0)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0)
    max_tokens: int | None = Field(None, ge=1)
    stop: str | list[str] | None = None
    stop_token_ids: list[int] | None = None
    seed: int | None = Field(None, ge=-(2**63), le=2**63 - 1)  # torch's int64 (as vLLM)
    stream: bool = False
    stream_options: StreamOptions | None = None
    logit_bias: dict[str, float] | None = None
    thinking_budget: int | None = Field(None, ge=-1)
    thinking_token_budget: int | None = Field(None, ge=-1)
    ignore_eos: bool = False
    skip_special_tokens: bool = True
    include_stop_str_in_output: bool = False

    @field_validator("stop")
    @classmethod
    def _stop(cls, stop: str | list[str] | None) -> list[str]:
        stops = [stop] if isinstance(stop, str) else list(stop or [])
        if any(not text for text in stops):
            raise ValueError("stop strings must not be empty")
        return stops

    @property
    def include_usage(self) -> bool:
        return self.stream_options is not None and self.stream_options.include_usage

    @property
    def budget(self) -> int | None:
        """The thinking budget; -1 (vLLM's "unlimited") and absent are None."""
        value = self.thinking_budget if self.thinking_budget is not None else self.thinking_token_budget
        return None if value is None or value < 0 else value


class ChatCompletionRequest(SamplingRequest):
    messages: list[dict[str, Any]] = Field(min_length=1)
    tools: list[ToolDefinition] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=20)
    chat_template_kwargs: dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None


class CompletionRequest(SamplingRequest):
    prompt: str | list[str] | list[int] | list[list[int]]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for text completions
    echo: bool = False
    logprobs: int | None = Field(None, ge=0, le=20)
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1)


def check_object_schema(schema: dict[str, Any]) -> None:
    """The shape OpenAI requires of a function's ``parameters``: a JSON Schema object, with ``properties`` an object
    of schemas and ``required`` a list of names. (No full JSON Schema validation: that needs a validator library.)"""
    kind = schema.get("type", "object")
    if kind != "object":
        raise ValueError(f"parameters must be a JSON Schema with type 'object', got type {kind!r}")
    properties = schema.get("properties", {})
    if not isinstance(properties, dict):
        raise ValueError(f"parameters.properties must be an object, got {type(properties).__name__}")
    for name, value in properties.items():
        if not isinstance(value, dict):
            raise ValueError(
                f"parameters.properties.{name} must be a schema object, got {type(value).__name__}"
            )
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(item, str) for item in required):
        raise ValueError("parameters.required must be a list of property names")
