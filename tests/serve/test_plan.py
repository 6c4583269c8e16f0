"""``plan_chat`` / ``plan_completion`` and the server's settings from ``qwen3 serve`` flags, without a server: what a
request or ``--default-chat-template-kwargs`` may put in ``chat_template_kwargs``, and ``--max-messages`` /
``--max-tokens-limit``."""

from __future__ import annotations

import argparse
import json

import pytest

import qwen3
from qwen3.chat.jinja import qwen3_template
from qwen3.engine.sampling_params import SamplingParams
from qwen3.serve.chat import plan_chat
from qwen3.serve.cli import build_config, register
from qwen3.serve.completions import plan_completion
from qwen3.serve.config import ServerConfig
from qwen3.serve.errors import APIError
from qwen3.serve.protocol import ChatCompletionRequest, CompletionRequest

USER = [{"role": "user", "content": "hi"}]
RESERVED = ["messages", "tools", "documents", "add_generation_prompt", "template", "namespace", "range"]


@pytest.fixture(scope="module")
def tokenizer():
    return qwen3.load_tokenizer("qwen3")


def flags(*args: str) -> ServerConfig:
    """The ``ServerConfig`` that ``qwen3 serve tiny ARGS...`` builds before it loads the model."""
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    return build_config(parser.parse_args(["serve", "tiny", *args]))


def plan(tokenizer, config: ServerConfig | None = None, **request):
    body = ChatCompletionRequest.model_validate({"messages": USER, **request})
    return plan_chat(body, config or ServerConfig(), tokenizer, max_model_len=2048)


def plan_text(tokenizer, config: ServerConfig, **request):
    body = CompletionRequest.model_validate(request)
    return plan_completion(body, config, tokenizer, 2048, SamplingParams())


def refused(tokenizer, param: str, config: ServerConfig | None = None, planner=plan, **request) -> APIError:
    with pytest.raises(APIError) as caught:
        planner(tokenizer, config, **request)
    assert caught.value.status == 400 and caught.value.param == param, caught.value
    return caught.value


@pytest.mark.parametrize("key", RESERVED)
@pytest.mark.parametrize("template", [None, "jinja"])
def test_reserved_chat_template_kwargs_are_refused(tokenizer, key, template):
    config = ServerConfig(chat_template=qwen3_template() if template else None)
    error = refused(tokenizer, f"chat_template_kwargs.{key}", config, chat_template_kwargs={key: []})
    assert key in error.message
    plan(tokenizer, config, chat_template_kwargs={"enable_thinking": False, "custom": 1})  # others pass


@pytest.mark.parametrize("key", RESERVED)
def test_reserved_keys_in_the_server_default_are_refused(key):
    with pytest.raises(ValueError, match=f"default_chat_template_kwargs.{key}: '{key}' is"):
        flags("--default-chat-template-kwargs", json.dumps({key: True}))
    with pytest.raises(ValueError, match="default_chat_template_kwargs.enable_thinking: .* true or false"):
        ServerConfig(default_chat_template_kwargs={"enable_thinking": "no"})


def test_max_messages(tokenizer):
    config = flags("--max-messages", "2")
    plan(tokenizer, config, messages=USER * 2)
    error = refused(tokenizer, "messages", config, messages=USER * 3)
    assert "3 messages, more than the limit of 2" in error.message
    plan_text(tokenizer, config, prompt=["a", "b"])  # for completions the limit counts prompts
    error = refused(tokenizer, "prompt", config, plan_text, prompt=["a", "b", "c"])
    assert "3 prompts, more than the limit of 2" in error.message


def test_max_tokens_limit(tokenizer):
    config = flags("--max-tokens-limit", "8")
    assert plan(tokenizer, config).params.max_tokens == 8  # the default when the request sets none
    assert plan(tokenizer, config, max_tokens=8).params.max_tokens == 8
    assert "limit of 8" in refused(tokenizer, "max_tokens", config, max_tokens=9).message
    refused(tokenizer, "max_completion_tokens", config, max_completion_tokens=9)
    assert plan_text(tokenizer, config, prompt="a", max_tokens=8).params.max_tokens == 8
    refused(tokenizer, "max_tokens", config, plan_text, prompt="a", max_tokens=9)
