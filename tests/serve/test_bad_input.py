"""Every kind of bad input gets an OpenAI error object with the right status and ``param``, never a 500 or a dropped
connection, and the server keeps serving."""

from __future__ import annotations

import json

import pytest

from .conftest import MODEL, serve

USER = [{"role": "user", "content": "hi"}]
TOOL = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
CHAT, COMPLETIONS = "/v1/chat/completions", "/v1/completions"


def chat(**fields):
    return {"messages": USER, **fields}


# (path, body, status, param); a body that is bytes is sent as is.
CASES = [
    (CHAT, b"{bad", 400, None),
    (CHAT, b"", 400, None),
    (CHAT, b"[1, 2]", 400, None),
    (CHAT, b'"text"', 400, None),
    (CHAT, {}, 400, "messages"),
    (CHAT, {"messages": []}, 400, "messages"),
    (CHAT, {"messages": "hi"}, 400, "messages"),
    (CHAT, {"messages": [3]}, 400, "messages[0]"),
    (CHAT, {"messages": [{"role": "wizard", "content": "x"}]}, 400, "messages[0].role"),
    (CHAT, {"messages": [{"role": "user", "content": 5}]}, 400, "messages[0].content"),
    (
        CHAT,
        {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
        400,
        "messages[0].content[0].type",
    ),
    (
        CHAT,
        {"messages": [{"role": "assistant", "tool_calls": [{"function": {"name": 5, "arguments": "{}"}}]}]},
        400,
        "messages[0].tool_calls[0].function.name",
    ),
    (CHAT, chat(temperature="hot"), 400, "temperature"),
    (CHAT, chat(temperature=5), 400, "temperature"),
    (CHAT, chat(top_p=0), 400, "top_p"),
    (CHAT, chat(n=0), 400, "n"),
    (CHAT, chat(n="2"), 400, "n"),
    (CHAT, chat(seed="x"), 400, "seed"),
    (CHAT, chat(seed=2**64), 400, "seed"),
    (CHAT, chat(seed=-(2**63) - 1), 400, "seed"),
    (CHAT, chat(stream="yes"), 400, "stream"),
    # A lone surrogate escape: JSON that no UTF-8 text matches; refused as a malformed body.
    (CHAT, b'{"messages": [{"role": "user", "content": "a\\ud800b"}]}', 400, None),
    (COMPLETIONS, b'{"prompt": "a\\ud800b"}', 400, None),
    (CHAT, chat(stop=[""]), 400, "stop"),
    (CHAT, chat(stop=[1]), 400, "stop[0]"),
    (CHAT, chat(max_tokens=-1), 400, "max_tokens"),
    (CHAT, chat(max_tokens=10**6), 400, "max_tokens"),
    (CHAT, chat(max_completion_tokens=10**6), 400, "max_completion_tokens"),
    (CHAT, {"messages": [{"role": "user", "content": "word " * 3000}]}, 400, "messages"),
    (CHAT, chat(tools=[{"type": "retrieval"}]), 400, "tools[0].type"),
    (CHAT, chat(tools=[{"type": "function", "function": {}}]), 400, "tools[0].function.name"),
    (CHAT, chat(tools=[{"type": "function", "function": {"name": "a b"}}]), 400, "tools[0].function.name"),
    (
        CHAT,
        chat(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]),
        400,
        "tools[0].function.parameters",
    ),
    (
        CHAT,
        chat(tools=[{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}]),
        400,
        "tools[0].function.parameters",
    ),
    (CHAT, chat(tools=[TOOL, TOOL]), 400, "tools[1].function.name"),
    (CHAT, chat(tools=[TOOL], tool_choice="sometimes"), 400, "tool_choice"),
    (
        CHAT,
        chat(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "g"}}),
        400,
        "tool_choice.function.name",
    ),
    (CHAT, chat(tool_choice="required"), 400, "tool_choice"),
    (CHAT, chat(chat_template_kwargs={"enable_thinking": "no"}), 400, "chat_template_kwargs.enable_thinking"),
    (CHAT, chat(chat_template_kwargs="x"), 400, "chat_template_kwargs"),
    (CHAT, chat(chat_template_kwargs={"tools": []}), 400, "chat_template_kwargs.tools"),
    (CHAT, chat(top_logprobs=3), 400, "top_logprobs"),
    (CHAT, chat(logprobs=True, top_logprobs=50), 400, "top_logprobs"),
    (CHAT, chat(logit_bias={"1": 5}), 400, "logit_bias"),
    (CHAT, chat(response_format={"type": "json_object"}), 400, "response_format.type"),
    (CHAT, chat(thinking_budget=-5), 400, "thinking_budget"),
    (CHAT, chat(stop_token_ids=[99999]), 400, "stop_token_ids[0]"),
    (CHAT, chat(top_k=9223372036854775808), 400, "top_k"),  # past C's long long: issue 15's reproducer
    (CHAT, chat(top_k=2**31), 400, "top_k"),  # past the sampling kernel's int32
    (CHAT, chat(repetition_penalty=1e-300), 400, "repetition_penalty"),
    (CHAT, chat(stop_token_ids=[2**64]), 400, "stop_token_ids[0]"),
    (COMPLETIONS, {"prompt": "x", "n": 2, "stop_token_ids": [-1]}, 400, "stop_token_ids[0]"),
    (CHAT, chat(model="gpt-4"), 404, "model"),
    (COMPLETIONS, {}, 400, "prompt"),
    (COMPLETIONS, {"prompt": 5}, 400, "prompt"),
    (COMPLETIONS, {"prompt": ""}, 400, "prompt"),
    (COMPLETIONS, {"prompt": []}, 400, "prompt"),
    (COMPLETIONS, {"prompt": [1, -1]}, 400, "prompt"),
    (COMPLETIONS, {"prompt": ["ok", ""]}, 400, "prompt[1]"),
    (COMPLETIONS, {"prompt": "x", "suffix": "y"}, 400, "suffix"),
    (COMPLETIONS, {"prompt": "x", "echo": True, "logprobs": 1}, 400, "echo"),
    (COMPLETIONS, {"prompt": "x", "logprobs": 30}, 400, "logprobs"),
    (COMPLETIONS, {"prompt": "x", "best_of": 3}, 400, "best_of"),
    (COMPLETIONS, {"prompt": "x", "seed": 2**63}, 400, "seed"),
    (COMPLETIONS, {"prompt": "x", "max_tokens": 5000}, 400, "max_tokens"),
    (COMPLETIONS, {"prompt": "x", "model": "nope"}, 404, "model"),
]


@pytest.fixture(scope="module")
def server(checkpoint):
    with serve(checkpoint) as running:
        yield running


def check_error(response, status: int, param: str | None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param and error["message"]
    assert error["type"] == ("invalid_request_error" if status < 500 else "server_error")
    return error


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    CASES,
    ids=lambda v: json.dumps(v)[:60] if isinstance(v, dict) else None,
)
def test_bad_request(server, path, body, status, param):
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    response = server.http.post(path, content=content, headers={"Content-Type": "application/json"})
    check_error(response, status, param)


def test_unknown_routes_and_methods(server):
    error = check_error(server.http.get("/v1/nothing"), 404, None)
    assert error["code"] == "not_found"
    check_error(server.http.get(CHAT), 405, None)


def test_still_serving(server):
    assert server.http.get("/health").json() == {"status": "ok"}
    reply = server.http.post(CHAT, json={"model": MODEL, "messages": USER, "max_tokens": 3}).json()
    assert reply["choices"][0]["finish_reason"] in ("stop", "length")
    assert server.metric("qwen3_http_requests_total", endpoint="/v1/chat/completions", status="500") == 0
    assert server.idle()
