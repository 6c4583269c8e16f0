"""``ServerConfig``: what the server does beyond the engine (names, security, limits, chat defaults)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MiB = 1024 * 1024


@dataclass
class ServerConfig:
    """
    - ``served_model_names``: the names clients may put in ``model``; the first is the one responses carry
      (vLLM's ``--served-model-name``). A request without ``model`` gets the first.
    - ``api_key``: when set, every ``/v1`` route wants ``Authorization: Bearer <key>`` (401 otherwise);
      ``/health`` and ``/metrics`` stay open, as in vLLM.
    - ``default_chat_template_kwargs``: e.g. ``{"enable_thinking": False}``; a request's ``chat_template_kwargs``
      win key by key. The names the server passes to the template itself (``messages``, ``tools``, ...) and the
      template's functions are refused (``check_chat_template_kwargs``).
    - ``chat_template``: a Jinja chat template rendered in transformers' environment instead of the built-in
      renderer (which is byte-identical to the official Qwen3 template).
    - ``max_body_bytes``: larger bodies get 413. ``max_messages``: messages per chat request, prompts per
      completions request. ``max_tokens_limit``: the largest ``max_tokens`` a request may ask for (None: the
      context); requests without ``max_tokens`` are capped at it too.
    - ``max_concurrent_requests``: requests in the engine at once (None: no limit); up to ``max_queue`` more wait
      for a place, beyond that the answer is 429 (``max_queue=0``: reject at once).
    """

    served_model_names: list[str] = field(default_factory=lambda: ["qwen3"])
    model_path: str | None = None
    api_key: str | None = field(default=None, repr=False)  # kept out of logs
    default_chat_template_kwargs: dict[str, Any] = field(default_factory=dict)
    chat_template: str | None = None
    max_body_bytes: int = 16 * MiB
    max_messages: int = 2048
    max_tokens_limit: int | None = None
    max_concurrent_requests: int | None = 256
    max_queue: int = 1024

    def __post_init__(self) -> None:
        if isinstance(self.served_model_names, str):
            self.served_model_names = [self.served_model_names]
        if not self.served_model_names or not all(isinstance(n, str) and n for n in self.served_model_names):
            raise ValueError(f"served_model_names must be non-empty strings, got {self.served_model_names!r}")
        if self.api_key is not None and not self.api_key:
            raise ValueError("api_key must not be empty (use None for no key)")
        if not isinstance(self.default_chat_template_kwargs, dict):
            raise ValueError(
                "default_chat_template_kwargs must be a JSON object, got "
                f"{type(self.default_chat_template_kwargs).__name__}"
            )
        problem = check_chat_template_kwargs(self.default_chat_template_kwargs)
        if problem is not None:
            raise ValueError(f"default_chat_template_kwargs.{problem[0]}: {problem[1]}")
        for name in ("max_body_bytes", "max_messages"):
            _positive(name, getattr(self, name))
        for name in ("max_tokens_limit", "max_concurrent_requests"):
            if getattr(self, name) is not None:
                _positive(name, getattr(self, name))
        if isinstance(self.max_queue, bool) or not isinstance(self.max_queue, int) or self.max_queue < 0:
            raise ValueError(f"ServerConfig.max_queue must be an integer >= 0, got {self.max_queue!r}")

    @property
    def model_name(self) -> str:
        return self.served_model_names[0]


# Names the server itself gives the chat template (``render_jinja``'s arguments and template variables); a
# ``chat_template_kwargs`` key that repeats one would make rendering fail ("got multiple values for argument").
TEMPLATE_ARGUMENTS = ("messages", "tools", "documents", "add_generation_prompt", "template")


def check_chat_template_kwargs(kwargs: dict[str, Any]) -> tuple[str, str] | None:
    """(key, what is wrong) for the first key that cannot go to a chat template, or None when all can.

    Refused: the names the server sets itself, and the template's functions (``range``, ``namespace``,
    ``raise_exception``, ...), which a value would shadow, so that calling them fails inside the template."""
    from qwen3.chat.jinja import compile_template

    functions = compile_template("").environment.globals
    for key, value in kwargs.items():
        if key in TEMPLATE_ARGUMENTS:
            return key, f"{key!r} is set by the server (from the request), not by chat_template_kwargs"
        if key in functions:
            return key, f"{key!r} is a function of the chat template and cannot be replaced"
        if key == "enable_thinking" and not isinstance(value, bool):
            return key, f"enable_thinking must be true or false, got {value!r}"
    return None


def load_chat_template(value: str, model_template: Callable[[], str | None]) -> str:
    """``--chat-template``: a file, the word ``model`` (the model directory's own template, read by calling
    ``model_template``) or the template text."""
    if value == "model":
        template = model_template()
        if template is None:
            raise ValueError("--chat-template model: the model directory has no chat template")
        return template
    path = Path(value)
    if path.is_file():
        return path.read_text(encoding="utf-8")
    if "{{" in value or "{%" in value:
        return value
    raise ValueError(f"--chat-template {value!r} is not a file, 'model', or Jinja template text")


def parse_json_object(text: str, flag: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ValueError(f"{flag}: not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{flag}: must be a JSON object, got {type(value).__name__}")
    return value


def _positive(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"ServerConfig.{name} must be a positive integer, got {value!r}")
