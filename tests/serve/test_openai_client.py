"""End to end on the real (random) model, driven with the official ``openai`` client: models, chat with and without
streaming, thinking off, n, logprobs, completions, tools accepted, auth, batching, disconnects, metrics."""

from __future__ import annotations

import threading

import httpx
import openai
import pytest

from .conftest import API_KEY, MODEL, serve

USER = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture(scope="module")
def server(checkpoint):
    with serve(checkpoint, api_key=API_KEY) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    return server.client()


def reasoning(message) -> str | None:
    """OpenAI's SDK keeps fields it does not know (reasoning_content, reasoning) as extras."""
    extra = message.model_extra or {}
    assert extra.get("reasoning_content") == extra.get("reasoning")
    return extra.get("reasoning_content")


def streamed(client, **request):
    chunks = list(client.chat.completions.create(stream=True, **request))
    text = {"reasoning_content": "", "reasoning": "", "content": ""}
    finish, usage = {}, None
    for chunk in chunks:
        usage = chunk.usage or usage
        for choice in chunk.choices:
            for field in text:
                text[field] += (
                    (choice.delta.model_extra or {}).get(field) or getattr(choice.delta, field, None) or ""
                )
            if choice.finish_reason:
                finish[choice.index] = choice.finish_reason
    return text, finish, usage, chunks


def test_models(client):
    assert [m.id for m in client.models.list().data] == [MODEL]
    assert client.models.retrieve(MODEL).id == MODEL
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")


def test_chat(client):
    reply = client.chat.completions.create(model=MODEL, messages=USER, max_tokens=12, seed=1)
    choice = reply.choices[0]
    assert choice.finish_reason in ("stop", "length") and choice.message.role == "assistant"
    assert reply.usage.prompt_tokens > 0 and reply.usage.completion_tokens <= 12
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens
    assert reply.usage.completion_tokens_details.reasoning_tokens <= reply.usage.completion_tokens


def test_streaming_adds_up_to_the_non_streamed_reply(client):
    request = dict(model=MODEL, messages=USER, max_tokens=40, seed=7, temperature=1.0)
    reply = client.chat.completions.create(**request)
    text, finish, usage, chunks = streamed(client, stream_options={"include_usage": True}, **request)
    message = reply.choices[0].message
    assert (text["reasoning_content"] or None) == reasoning(message)
    assert text["reasoning"] == text["reasoning_content"]
    assert (text["content"] or None) == message.content
    assert finish == {0: reply.choices[0].finish_reason}
    assert usage.model_dump() == reply.usage.model_dump()
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and all(c.usage is None for c in chunks[:-1])


def test_thinking_off_puts_everything_in_content(client):
    thinking_off = {"chat_template_kwargs": {"enable_thinking": False}}
    for stream in (False, True):
        request = dict(model=MODEL, messages=USER, max_tokens=30, seed=3, extra_body=thinking_off)
        if stream:
            text, _, _, _ = streamed(client, **request)
            assert text["reasoning_content"] == "" and text["reasoning"] == ""
        else:
            reply = client.chat.completions.create(**request)
            assert reasoning(reply.choices[0].message) is None
            assert reply.usage.completion_tokens_details.reasoning_tokens == 0


def test_n_choices_and_logprobs(client):
    reply = client.chat.completions.create(
        model=MODEL, messages=USER, max_tokens=6, n=2, seed=5, logprobs=True, top_logprobs=3
    )
    assert [c.index for c in reply.choices] == [0, 1]
    for choice in reply.choices:
        entries = choice.logprobs.content
        assert 0 < len(entries) <= 6
        for entry in entries:
            assert entry.logprob <= 0 and len(entry.top_logprobs) == 3
            assert entry.top_logprobs[0].logprob >= entry.top_logprobs[-1].logprob
    text, finish, usage, chunks = streamed(
        client, model=MODEL, messages=USER, max_tokens=6, n=2, seed=5, logprobs=True, top_logprobs=3
    )
    streamed_entries = [e for c in chunks for ch in c.choices if ch.logprobs for e in ch.logprobs.content]
    assert len(streamed_entries) == sum(len(c.logprobs.content) for c in reply.choices)
    assert finish.keys() == {0, 1}


def test_tools_are_accepted_and_a_tool_turn_renders(client):
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather of a city",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}},
                    "required": ["city"],
                },
            },
        }
    ]
    messages = [
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
    ]
    for choice in ("auto", "none", "required", {"type": "function", "function": {"name": "get_weather"}}):
        reply = client.chat.completions.create(
            model=MODEL, messages=messages, tools=tools, tool_choice=choice, max_tokens=8, seed=2
        )
        assert reply.choices[0].finish_reason in ("stop", "length", "tool_calls")


def test_completions(server, client):
    reply = client.completions.create(
        model=MODEL,
        prompt=["Once upon", "a time"],
        n=2,
        max_tokens=5,
        seed=4,
        extra_body={"ignore_eos": True},
    )
    assert [c.index for c in reply.choices] == [0, 1, 2, 3]
    encode = server.state.tokenizer.encode
    assert reply.usage.prompt_tokens == len(encode("Once upon")) + len(encode("a time"))
    assert reply.usage.completion_tokens == 4 * 5
    ids_reply = client.completions.create(model=MODEL, prompt=[1, 2, 3], max_tokens=3, seed=4, logprobs=2)
    lp = ids_reply.choices[0].logprobs
    assert (
        len(lp.tokens) == len(lp.token_logprobs) == len(lp.top_logprobs) == ids_reply.usage.completion_tokens
    )
    stream = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=8, seed=9, stream=True)
    text = "".join(c.choices[0].text for c in stream if c.choices)
    assert (
        text
        == client.completions.create(model=MODEL, prompt="Once upon", max_tokens=8, seed=9).choices[0].text
    )
    echo = client.completions.create(model=MODEL, prompt="Once upon", max_tokens=2, echo=True)
    assert echo.choices[0].text.startswith("Once upon")


def test_auth(server):
    bad = server.client().with_options(api_key="wrong")
    with pytest.raises(openai.AuthenticationError):
        bad.models.list()
    response = httpx.get(f"{server.url}/models")
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(f"{server.base}/health").status_code == 200  # health and metrics stay open


def test_concurrent_requests_share_batches(server, client):
    steps_before = server.state.engine.stats.steps
    count, tokens = 8, 24
    barrier = threading.Barrier(count)
    results = []

    def one(i):
        barrier.wait()
        reply = client.chat.completions.create(
            model=MODEL, messages=USER, max_tokens=tokens, seed=i, extra_body={"ignore_eos": True}
        )
        results.append(reply.usage.completion_tokens)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [tokens] * count
    steps = server.state.engine.stats.steps - steps_before
    assert steps < count * tokens / 2  # one request at a time would need count * tokens decode steps
    batched_steps = server.metric("qwen3_batch_size_count") - server.metric(
        "qwen3_batch_size_bucket", le="1.0"
    )
    assert batched_steps > 0


def test_disconnect_mid_stream_frees_the_request(server, client):
    aborted = server.metric("qwen3_request_success_total", finished_reason="abort")
    stream = client.chat.completions.create(
        model=MODEL, messages=USER, max_tokens=1500, stream=True, extra_body={"ignore_eos": True}
    )
    for i, _ in enumerate(stream):
        if i == 3:
            break
    stream.close()
    server.wait_until(server.idle, "the aborted request to leave the engine")
    assert server.metric("qwen3_request_success_total", finished_reason="abort") == aborted + 1
    assert server.state.engine.scheduler.running == []


def test_disconnect_while_waiting_for_a_non_streamed_reply(server):
    aborted = server.metric("qwen3_request_success_total", finished_reason="abort")
    with pytest.raises(httpx.ReadTimeout):  # 1500 tokens: still generating when the client gives up
        server.http.post(
            "/v1/chat/completions",
            json={"messages": USER, "max_tokens": 1500, "ignore_eos": True},
            timeout=httpx.Timeout(30, read=0.3),
        )
    server.wait_until(server.idle, "the abandoned request to leave the engine")
    assert server.metric("qwen3_request_success_total", finished_reason="abort") == aborted + 1


def test_metrics(server):
    text = server.http.get("/metrics").text
    for name in (
        "qwen3_http_requests_total",
        "qwen3_generation_tokens_total",
        "qwen3_num_requests_running",
        "qwen3_num_requests_waiting",
        "qwen3_time_to_first_token_seconds_bucket",
        "qwen3_e2e_request_latency_seconds_count",
    ):
        assert name in text
    assert server.metric("qwen3_generation_tokens_total") > 0
    assert server.metric("qwen3_http_requests_total", endpoint="/v1/chat/completions", status="200") > 0
