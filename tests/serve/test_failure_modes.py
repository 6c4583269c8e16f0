"""The failure modes other servers' users report, driven through the real server with scripted model outputs
(``ScriptedSampler``: the engine, parser, responders and HTTP layer are the real ones; only the sampled tokens are
given). The server's default is thinking off (``--default-chat-template-kwargs '{"enable_thinking": false}'``),
so requests that want thinking also show that the request's ``chat_template_kwargs`` win.

- vllm#19839 / sglang#5874: with thinking off, the answer must be ``content``, streamed or not.
- sglang#22837: a tool call written without ``</think>`` must still be a tool call.
- vllm#19056: tags split over several tokens / stream chunks must be neither leaked nor lost.
"""

from __future__ import annotations

import json

import pytest

from qwen3.engine.sampling_params import STOP_THINKING_TEXT
from tests.engine.scripted import ScriptedSampler

from .conftest import MODEL, serve

CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
THINK = {"chat_template_kwargs": {"enable_thinking": True}}
LONG_THOUGHT = "<think>\n" + "step " * 40


def scripts(tokenizer) -> dict:
    plain = lambda text: tokenizer.encode(text, allow_special=False)  # noqa: E731 - tags as several tokens
    return {
        "RESULT": "It is sunny in Paris.",
        "PLAIN": "The answer is 4.\n\nDone.",
        "NO_END_TAG": "<think>\nI need the weather.\n" + CALL,
        "SPLIT": plain("<think>\nplan: call it\n</think>\n\nSure.\n" + CALL + "\nok"),
        "NAMED": '{"city": "Paris"}}\n</tool_call>',
        "REQUIRED": '<think>\nok\n</think>{"name": "get_weather", "arguments": {"city": "Rome"}}\n</tool_call>',
        "INVALID": "no json here",
        "CALLS": CALL,
        "LONG": LONG_THOUGHT + "</think>\n\nAnswer.",
    }


@pytest.fixture(scope="module")
def server(checkpoint):
    def script(engine):
        ScriptedSampler(engine, scripts(engine.tokenizer)).install(engine)

    with serve(
        checkpoint, engine_setup=script, default_chat_template_kwargs={"enable_thinking": False}
    ) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def ask(client, key: str, **request):
    """The reply both ways: (message dict, finish_reason) non-streamed and accumulated from the stream."""
    request = dict(model=MODEL, messages=[{"role": "user", "content": key}], max_tokens=200, **request)
    reply = client.chat.completions.create(**request)
    choice = reply.choices[0]
    whole = {**choice.message.model_dump(exclude_none=True), "finish_reason": choice.finish_reason}
    acc: dict = {"role": None, "reasoning_content": "", "reasoning": "", "content": "", "tool_calls": []}
    deltas = []
    for chunk in client.chat.completions.create(stream=True, **request):
        for c in chunk.choices:
            delta = c.delta.model_dump(exclude_none=True)
            deltas.append(delta)
            acc["role"] = acc["role"] or delta.get("role")
            for field in ("reasoning_content", "reasoning", "content"):
                acc[field] += delta.get(field) or ""
            acc["tool_calls"] += delta.get("tool_calls", [])
            if c.finish_reason:
                acc["finish_reason"] = c.finish_reason
    streamed = {key: value for key, value in acc.items() if value not in ("", [])}
    for call in streamed.get("tool_calls", []):
        call.pop("index")
        assert call.pop("id").startswith("call_")  # ids are random: each request has its own
    expected = {
        **whole,
        "tool_calls": [{k: v for k, v in c.items() if k != "id"} for c in whole.get("tool_calls", [])],
    }
    assert streamed == {k: v for k, v in expected.items() if v != []}, "the stream must add up to the reply"
    return whole, deltas


def test_thinking_off_answer_is_content(client):
    message, deltas = ask(client, "PLAIN")  # the server default: thinking off
    assert message["content"] == "The answer is 4.\n\nDone."
    assert "reasoning_content" not in message and "reasoning" not in message
    assert not any("reasoning_content" in d for d in deltas)
    message, _ = ask(client, "PLAIN", extra_body={"chat_template_kwargs": {"enable_thinking": False}})
    assert message["content"] == "The answer is 4.\n\nDone."


def test_thinking_on_request_wins_over_the_server_default(client):
    message, _ = ask(client, "PLAIN", extra_body=THINK)
    assert (
        message["reasoning_content"] == "The answer is 4.\n\nDone." and "content" not in message
    )  # no </think>


def test_tool_call_without_end_of_thought_is_still_a_call(client):
    message, _ = ask(client, "NO_END_TAG", tools=TOOLS, extra_body=THINK)
    assert (
        message["reasoning_content"] == "I need the weather.\n"
    )  # ended by <tool_call>: kept as vLLM keeps it
    assert message["finish_reason"] == "tool_calls" and "content" not in message
    (call,) = message["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert call["id"].startswith("call_") and call["type"] == "function"


def test_tags_split_over_tokens_are_not_leaked_or_lost(client):
    message, deltas = ask(client, "SPLIT", tools=TOOLS, extra_body=THINK)
    assert message["reasoning_content"] == "plan: call it"
    assert message["content"] == "Sure.\n\nok"  # the text around the call, joined
    assert [c["function"]["arguments"] for c in message["tool_calls"]] == ['{"city": "Paris"}']
    text = "".join(d.get("reasoning_content", "") + d.get("content", "") for d in deltas)
    for piece in ("<", ">", "think", "tool_call"):
        assert piece not in text
    assert sum(len(d.get("tool_calls", [])) for d in deltas) == 1  # the call comes whole, in one delta


def test_tool_choice_none_leaves_calls_as_text(client):
    message, _ = ask(client, "CALLS", tools=TOOLS, tool_choice="none")
    assert message["content"] == CALL and "tool_calls" not in message and message["finish_reason"] == "stop"
    message, _ = ask(client, "CALLS")  # no tools offered: nothing is parsed as a call either
    assert message["content"] == CALL


def test_named_tool_choice_forces_the_call(client):
    choice = {"type": "function", "function": {"name": "get_weather"}}
    message, _ = ask(client, "NAMED", tools=TOOLS, tool_choice=choice)
    assert [c["function"] for c in message["tool_calls"]] == [
        {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    ]
    assert message["finish_reason"] == "tool_calls"


def test_required_tool_choice_forces_a_call_after_the_thought(client):
    message, _ = ask(client, "REQUIRED", tools=TOOLS, tool_choice="required", extra_body=THINK)
    assert message["reasoning_content"] == "ok"
    assert [c["function"]["arguments"] for c in message["tool_calls"]] == ['{"city": "Rome"}']


def test_forced_call_that_is_not_valid_stays_text(client):
    message, _ = ask(client, "INVALID", tools=TOOLS, tool_choice="required")
    assert message["content"] == "<tool_call>\nno json here" and message["finish_reason"] == "stop"


def test_tool_round_trip(client):
    first, _ = ask(client, "CALLS", tools=TOOLS)
    call = first["tool_calls"][0]
    messages = [
        {"role": "user", "content": "CALLS"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": call["id"], "content": json.dumps({"weather": "RESULT"})},
    ]
    reply = client.chat.completions.create(model=MODEL, messages=messages, tools=TOOLS, max_tokens=50)
    assert reply.choices[0].message.content == "It is sunny in Paris."
    assert reply.choices[0].finish_reason == "stop"


def test_usage_counts_the_reasoning_tokens(server, client):
    request = dict(model=MODEL, messages=[{"role": "user", "content": "LONG"}], max_tokens=200)
    thought = len(server.state.tokenizer.encode(LONG_THOUGHT + "</think>"))
    usage = client.chat.completions.create(**request, extra_body=THINK).usage
    assert usage.completion_tokens_details.reasoning_tokens == thought < usage.completion_tokens
    usage = client.chat.completions.create(**request).usage  # thinking off: everything is content
    assert usage.completion_tokens_details.reasoning_tokens == 0 and usage.completion_tokens > thought


def test_a_stop_string_ends_the_reply(client):
    message, _ = ask(client, "PLAIN", stop=["4."])
    assert message["content"] == "The answer is " and message["finish_reason"] == "stop"
    request = dict(model=MODEL, messages=[{"role": "user", "content": "PLAIN"}], max_tokens=200)
    choice = client.chat.completions.create(**request, stop=["4."]).choices[0]
    assert choice.finish_reason == "stop" and choice.model_extra["stop_reason"] == "4."
    choice = client.chat.completions.create(**request).choices[0]  # ended by the model: no stop string
    assert choice.finish_reason == "stop" and choice.model_extra["stop_reason"] is None


def test_thinking_budget(server, client):
    message, _ = ask(client, "LONG", extra_body={**THINK, "thinking_budget": 5})
    tokenizer = server.state.tokenizer
    thought = tokenizer.decode(tokenizer.encode(LONG_THOUGHT)[1:6])  # the 5 thought tokens after <think>
    forced = STOP_THINKING_TEXT[: STOP_THINKING_TEXT.index("</think>")]
    assert message["reasoning_content"] == (thought + forced).strip("\n")
    unlimited, _ = ask(client, "LONG", extra_body=THINK)
    assert unlimited["reasoning_content"].count("step") == 40 and unlimited["content"] == "Answer."
