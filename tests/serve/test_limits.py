"""Body size limit (413); the concurrency limit (one request at a time, one more waits, the next gets 429); an
engine step that fails (the requests in it get an error, the server goes on)."""

from __future__ import annotations

import json
import threading

import httpx
import pytest

from .conftest import serve

USER = [{"role": "user", "content": "hi"}]
LONG = {"messages": USER, "max_tokens": 1500, "ignore_eos": True}


class Gate:
    """Pauses the engine thread between steps while closed, so a request holds its place as long as a test needs;
    ``fail`` makes the next step raise."""

    def __init__(self, engine):
        self.opened = threading.Event()
        self.opened.set()
        self.fail = threading.Event()
        step = engine.step

        def gated_step():
            self.opened.wait()
            if self.fail.is_set():
                self.fail.clear()
                raise RuntimeError("injected failure")
            return step()

        engine.step = gated_step


@pytest.fixture(scope="module")
def gate():
    return {}


@pytest.fixture(scope="module")
def server(checkpoint, gate):
    def install(engine):
        gate["gate"] = Gate(engine)

    with serve(checkpoint, install, max_body_bytes=4096, max_concurrent_requests=1, max_queue=1) as running:
        yield running
        gate["gate"].opened.set()


def test_body_over_the_limit(server):
    body = json.dumps({"messages": [{"role": "user", "content": "x" * 5000}]}).encode()
    response = server.http.post("/v1/chat/completions", content=body)
    assert response.status_code == 413 and response.json()["error"]["code"] == "body_too_large"


def test_chunked_body_over_the_limit(server):
    def chunks():  # no Content-Length: the limit applies while reading
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}]}'

    response = server.http.post("/v1/chat/completions", content=chunks())
    assert response.status_code == 413 and response.json()["error"]["type"] == "invalid_request_error"
    assert server.http.get("/health").status_code == 200


def test_queue_then_429(server, gate):
    gate["gate"].opened.clear()  # the engine stops stepping: the first request keeps its place
    results = {}
    with server.http.stream("POST", "/v1/chat/completions", json={**LONG, "stream": True}) as first:
        assert first.status_code == 200
        lines = first.iter_lines()  # (kept: a dropped line iterator closes the connection)
        next(lines)  # admitted and streaming (the role chunk): the one place is taken

        def queued():
            results["queued"] = server.http.post(
                "/v1/chat/completions", json={"messages": USER, "max_tokens": 4}
            )

        waiter = threading.Thread(target=queued)
        waiter.start()
        server.wait_until(lambda: server.state.admission.queued == 1, "the second request to queue")
        assert server.metric("qwen3_num_requests_queued") == 1
        refused = server.http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 4})
        assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
        assert refused.json()["error"]["type"] == "rate_limit_error"
    # Leaving the stream frees its place; the queued request runs.
    gate["gate"].opened.set()
    waiter.join(60)
    assert results["queued"].status_code == 200
    server.wait_until(server.idle, "all requests to finish")


def test_a_client_that_gives_up_while_queued_is_cleaned_up(server, gate):
    aborted = server.metric("qwen3_request_success_total", finished_reason="abort")
    gate["gate"].opened.clear()
    with server.http.stream("POST", "/v1/chat/completions", json={**LONG, "stream": True}) as first:
        lines = first.iter_lines()
        next(lines)
        with pytest.raises(httpx.ReadTimeout):
            server.http.post("/v1/chat/completions", json=LONG, timeout=httpx.Timeout(30, read=0.3))
        assert server.state.admission.queued == 1  # the hang-up is noticed when its turn comes
    gate["gate"].opened.set()
    server.wait_until(server.idle, "all requests to finish")
    # Both were aborted: the stream that was left and the queued request, which would otherwise run 1500 tokens.
    assert server.metric("qwen3_request_success_total", finished_reason="abort") == aborted + 2
    assert (
        server.http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 2}).status_code == 200
    )


def test_a_failing_engine_step_fails_its_requests_and_the_server_goes_on(server, gate):
    gate["gate"].fail.set()
    response = server.http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 4})
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["type"] == "server_error" and "injected failure" in error["message"]

    gate["gate"].fail.set()
    with server.http.stream(
        "POST", "/v1/chat/completions", json={"messages": USER, "max_tokens": 4, "stream": True}
    ) as r:
        lines = [line for line in r.iter_lines() if line]
    assert r.status_code == 200 and lines[-1] == "data: [DONE]"
    assert "injected failure" in json.loads(lines[-2].removeprefix("data: "))["error"]["message"]

    assert (
        server.http.post("/v1/chat/completions", json={"messages": USER, "max_tokens": 4}).status_code == 200
    )
    assert server.http.get("/health").status_code == 200
    server.wait_until(server.idle, "all requests to finish")
