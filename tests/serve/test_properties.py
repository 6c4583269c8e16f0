"""Property tests of the server's input surface: whatever the body, the answer is a 200 (a complete reply or a
complete event stream) or a JSON 4xx whose ``param`` names a field the body got wrong; never a 5xx or a dropped
connection; and well-formed streams running beside the fuzzing get exactly the tokens they get alone.

CI runs a few hundred bodies against one server; ``pytest -m slow`` runs 5,000 more."""

from __future__ import annotations

import json
import re
import threading

import pytest
from hypothesis import HealthCheck, given, settings

from .conftest import MODEL, serve
from .strategies import Case, chat_body, completion_body, mutated_body

# A 400 about one field may name another that the same check involves.
RELATED = {
    "tools": {"tool_choice", "messages", "chat_template_kwargs"},
    "tool_choice": {"tools"},
    "logprobs": {"top_logprobs", "echo"},
    "top_logprobs": {"logprobs"},
    "echo": {"logprobs"},
    "max_tokens": {"messages", "prompt", "max_completion_tokens"},
    "max_completion_tokens": {"messages", "max_tokens"},
    "messages": {"max_tokens", "max_completion_tokens", "tools"},
    "prompt": {"max_tokens", "echo"},
    "stop_token_ids": {"stop_token_ids"},
    "n": {"max_tokens", "max_completion_tokens"},
}
SIDE_STREAM = {
    "model": MODEL,
    "messages": [{"role": "user", "content": "a well-formed stream"}],
    "temperature": 0,
    "max_tokens": 40,
    "ignore_eos": True,
    "stream": True,
}


@pytest.fixture(scope="module")
def server(checkpoint):
    with serve(checkpoint, max_messages=256) as running:
        yield running


def read(server, case: Case):
    """Status, body bytes and the events of a stream; a dropped connection raises."""
    headers = {"Content-Type": "application/json"}
    with server.http.stream("POST", case.path, content=case.content, headers=headers) as response:
        return response.status_code, response.read(), response.headers.get("content-type", "")


def check_answer(status: int, raw: bytes, kind: str, case: Case, fields: set[str]) -> None:
    assert status == 200 or 400 <= status < 500, (status, raw[:500], case)
    if kind.startswith("text/event-stream"):
        text = raw.decode()
        assert text.endswith("data: [DONE]\n\n"), text[-300:]
        events = [json.loads(line[6:]) for line in text.splitlines() if line.startswith("data: {")]
        assert not [e for e in events if "error" in e], (events, case)
        return
    body = json.loads(raw)
    if status == 200:
        assert body["choices"], body
        return
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"], body
    if status == 400 and case.is_object:
        # A body that is a JSON object is refused for one of its fields, and the error names it: one the body
        # has or a mutation dropped (or one checked together with those).
        assert error["param"] is not None, (error, case)
        root = re.split(r"[.\[]", error["param"])[0]
        fields = fields | case.mutated | set(json.loads(case.content))
        allowed = fields | set().union(*(RELATED.get(f, set()) for f in fields))
        assert root in allowed, (error, case)


class SideStreams:
    """Well-formed streams run over and over in a thread while the fuzzing goes on; each must match the first."""

    def __init__(self, server):
        self.server = server
        self.expected = self.once()
        self.failures: list = []
        self.runs = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def once(self) -> str:
        with self.server.http.stream("POST", "/v1/chat/completions", json=SIDE_STREAM) as response:
            assert response.status_code == 200
            return response.read().decode()

    def _loop(self) -> None:
        while not self._stop.is_set():
            text = self.once()
            # Ids and timestamps differ; the content and finish reasons must not.
            if _contents(text) != _contents(self.expected):
                self.failures.append(text[-500:])
            self.runs += 1

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(60)
        assert not self.failures, self.failures[:2]
        assert self.runs > 0


def _contents(stream_text: str) -> list:
    events = [json.loads(line[6:]) for line in stream_text.splitlines() if line.startswith("data: {")]
    return [
        (e["choices"][0]["delta"], e["choices"][0]["finish_reason"]) for e in events if e.get("choices")
    ] + ["error" in e for e in events]


def fuzz(server, examples: int) -> None:
    @settings(
        max_examples=examples,
        deadline=None,
        database=None,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
        ],
    )
    @given(case=mutated_body())
    def mutated(case: Case) -> None:
        status, raw, kind = read(server, case)
        check_answer(status, raw, kind, case, set())

    @settings(max_examples=max(20, examples // 5), deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
    @given(body=chat_body() | completion_body())
    def well_formed(body: dict) -> None:
        path = "/v1/chat/completions" if "messages" in body else "/v1/completions"
        case = Case(path, json.dumps(body).encode(), set(body))
        status, raw, kind = read(server, case)
        # Within the schema, only a check across fields (top_logprobs without logprobs, a stop id past the
        # vocabulary...) may refuse it, and it names one of the fields the body set.
        check_answer(status, raw, kind, case, set(body))

    with SideStreams(server):
        well_formed()
        mutated()
    assert server.http.get("/health").json() == {"status": "ok"}
    server.wait_until(server.idle, "the server to be idle")
    assert server.metric("qwen3_http_requests_total", endpoint="/v1/chat/completions", status="500") == 0
    assert server.metric("qwen3_http_requests_total", endpoint="/v1/completions", status="500") == 0


def test_any_body_gets_a_reply_or_a_named_error(server):
    fuzz(server, examples=250)


@pytest.mark.slow
def test_any_body_gets_a_reply_or_a_named_error_at_length(server):
    fuzz(server, examples=5_000)
