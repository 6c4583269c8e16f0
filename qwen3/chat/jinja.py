"""Render any Jinja chat template (a model directory's ``chat_template``) the way transformers does.

The environment matches transformers' chat-template compiler: an immutable sandbox with ``trim_blocks`` and
``lstrip_blocks``, the ``loopcontrols`` extension, a ``{% generation %}`` tag (rendered as its body), a ``tojson``
filter that is ``json.dumps(ensure_ascii=False)`` with the same optional arguments, and the ``raise_exception``,
``strftime_now``, ``dict`` and ``namespace`` globals. The messages are prepared as ``apply_chat_template`` prepares
them: keys whose value is None are dropped, and ``reasoning_content`` is filled from ``thinking`` or ``reasoning``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
import jinja2.ext
import jinja2.nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

from qwen3.chat.messages import REASONING_FIELDS


class _GenerationTag(jinja2.ext.Extension):
    """``{% generation %}...{% endgeneration %}`` marks assistant output in training templates; render the body."""

    tags = {"generation"}

    def parse(self, parser: jinja2.parser.Parser) -> jinja2.nodes.Node:
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return jinja2.nodes.CallBlock(self.call_method("_render_body"), [], [], body).set_lineno(lineno)

    def _render_body(self, caller: Any) -> str:
        return caller()


class _Namespace(jinja2.utils.Namespace):
    """A namespace that refuses underscore-prefixed attributes (no route to CPython internals)."""

    def __init__(*args: Any, **kwargs: Any) -> None:
        self, args = args[0], args[1:]
        attrs = dict(*args, **kwargs)
        for name in attrs:
            _Namespace._check_name(name)
        jinja2.utils.Namespace.__init__(self, attrs)

    def __setitem__(self, name: str, value: Any) -> None:
        _Namespace._check_name(name)
        jinja2.utils.Namespace.__setitem__(self, name, value)

    @staticmethod
    def _check_name(name: Any) -> None:
        if isinstance(name, str) and name.startswith("_"):
            raise jinja2.exceptions.SecurityError(
                f"a chat template cannot set the namespace attribute {name!r}"
            )


def _raise_exception(message: str) -> None:
    raise jinja2.exceptions.TemplateError(message)


def _tojson(
    value: Any,
    ensure_ascii: bool = False,
    indent: Any = None,
    separators: Any = None,
    sort_keys: bool = False,
) -> str:
    return json.dumps(
        value, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
    )


def _strftime_now(format: str) -> str:
    return datetime.now().strftime(format)


def _template_dict(*args: Any, **kwargs: Any) -> dict:
    return dict(*args, **kwargs)


@lru_cache(maxsize=16)
def compile_template(template: str) -> jinja2.Template:
    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[_GenerationTag, jinja2.ext.loopcontrols]
    )
    env.filters["tojson"] = _tojson
    env.globals.update(
        raise_exception=_raise_exception,
        strftime_now=_strftime_now,
        dict=_template_dict,
        namespace=_Namespace,
    )
    return env.from_string(template)


def _prepare_message(message: Any, index: int) -> dict:
    if not isinstance(message, Mapping):
        raise ValueError(f"messages[{index}]: a message must be a dict, got {type(message).__name__}")
    prepared = {key: value for key, value in message.items() if value is not None}
    reasoning = next((prepared[name] for name in REASONING_FIELDS if name in prepared), None)
    if reasoning is not None:
        prepared = {"thinking": reasoning, **prepared, "reasoning_content": reasoning}
    return prepared


def render_jinja(
    template: str,
    messages: Sequence[Any],
    tools: Sequence[Any] | None = None,
    add_generation_prompt: bool = False,
    **kwargs: Any,
) -> str:
    """Render ``messages`` with a Jinja chat ``template``; extra keyword arguments (``enable_thinking``, ...) are
    passed to the template as variables, like ``apply_chat_template``'s ``**kwargs``."""
    prepared = [_prepare_message(message, index) for index, message in enumerate(messages)]
    return compile_template(template).render(
        messages=prepared, tools=tools, documents=None, add_generation_prompt=add_generation_prompt, **kwargs
    )


def qwen3_template() -> str:
    """Our Qwen3 chat template (qwen3/chat/qwen3.jinja), the one written into tokenizer_config.json."""
    return resources.files("qwen3.chat").joinpath("qwen3.jinja").read_text(encoding="utf-8")
