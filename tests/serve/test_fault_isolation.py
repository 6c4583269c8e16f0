"""One client cannot abort the others' generations: the issue's reproducer (``"top_k": 9223372036854775808``) is
refused at admission with a 400 naming ``top_k`` while streams run beside it, and a request that still fails
inside an engine step (here: a sampler that fails for one poisoned request) ends alone with an error, the other
streams finishing with the tokens they get without it, and ``/health`` stays ok."""

from __future__ import annotations

import json
import threading

import pytest

from .conftest import MODEL, serve

CHAT = "/v1/chat/completions"
POISON = "poisoned request"


class PoisonedSampler:
    """The real sampler, except that any batch holding the poisoned request's sequence fails (as a kernel would on
    a value it cannot take)."""

    def __init__(self, engine):
        self.real = engine.sampler
        self.tokenizer = engine.tokenizer

    def __call__(self, logits, seqs):
        for seq in seqs:
            if POISON in self.tokenizer.decode(seq.token_ids[: seq.num_prompt_tokens]):
                raise OverflowError("injected: Overflow when unpacking long long")
        return self.real(logits, seqs)


@pytest.fixture(scope="module")
def server(checkpoint):
    def poison(engine):
        engine.sampler = PoisonedSampler(engine)

    with serve(checkpoint, engine_setup=poison) as running:
        yield running


def body(content: str, **fields) -> dict:
    return {
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "temperature": 0,
        "max_tokens": 60,
        "ignore_eos": True,
        **fields,
    }


def stream_tokens(server, content: str, out: list) -> None:
    """A streamed reply's content pieces and finish reasons (and any error event) appended to ``out``."""
    # Long enough that the other requests of the test arrive while it runs.
    with server.http.stream("POST", CHAT, json=body(content, stream=True, max_tokens=300)) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: ") and line != "data: [DONE]":
                out.append(json.loads(line[6:]))


def pieces(events: list) -> tuple[str, list]:
    text = "".join(e["choices"][0]["delta"].get("content") or "" for e in events if e.get("choices"))
    reasons = [
        e["choices"][0]["finish_reason"]
        for e in events
        if e.get("choices") and e["choices"][0]["finish_reason"]
    ]
    return text, reasons


def run_beside(server, contents: list[str], action) -> list[list]:
    """Stream each content in its own thread while ``action()`` runs; the events of each stream."""
    results: list[list] = [[] for _ in contents]
    threads = [threading.Thread(target=stream_tokens, args=(server, c, r)) for c, r in zip(contents, results)]
    for thread in threads:
        thread.start()
    server.wait_until(
        lambda: len(server.state.engine.scheduler.running) == len(contents), "the streams to run"
    )
    action()
    for thread in threads:
        thread.join(60)
    return results


def reference(server, contents: list[str]) -> list[tuple[str, list]]:
    out = []
    for content in contents:
        events: list = []
        stream_tokens(server, content, events)
        out.append(pieces(events))
    return out


STREAMS = ["tell me a story", "count to ten"]


def test_huge_top_k_is_refused_and_the_streams_go_on(server):
    expected = reference(server, STREAMS)
    answers = []

    def attack():
        for value in (9223372036854775808, 2**31, 2**63 - 1):
            answers.append(server.http.post(CHAT, json=body("hi", top_k=value, temperature=1.0)))

    results = run_beside(server, STREAMS, attack)
    for response in answers:
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "top_k"
    assert [pieces(events) for events in results] == expected
    assert server.http.get("/health").json() == {"status": "ok"}


def test_a_request_failing_inside_a_step_fails_alone(server):
    expected = reference(server, STREAMS)
    answers = []

    def poisoned():
        answers.append(server.http.post(CHAT, json=body(POISON)))
        events: list = []
        stream_tokens(server, POISON, events)
        answers.append(events)

    results = run_beside(server, STREAMS, poisoned)
    plain, streamed = answers
    assert plain.status_code == 500
    assert plain.json()["error"]["code"] == "engine_error"
    assert "Overflow when unpacking long long" in plain.json()["error"]["message"]
    assert [e["error"]["code"] for e in streamed if "error" in e] == ["engine_error"]
    assert [pieces(events) for events in results] == expected
    assert all("error" not in e for events in results for e in events)
    assert server.http.get("/health").json() == {"status": "ok"}
    server.wait_until(server.idle, "the server to be idle")
