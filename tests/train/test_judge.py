"""The judge: good, bad and garbage verdicts, agreement with the rule verifier, the in-process and HTTP backends."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from qwen3.eval import Reply
from qwen3.train.judge import (
    Judge,
    agreement,
    in_process_judge,
    judge_prompt,
    openai_judge,
    parse_score,
    rule_grades,
)
from qwen3.world import Item


class Scripted:
    """A backend that answers with the given verdicts and records the prompts it saw."""

    def __init__(self, verdicts):
        self.verdicts, self.seen = list(verdicts), []

    def complete(self, requests):
        self.seen += [request.messages for request in requests]
        assert all(
            request.enable_thinking is False and request.params.temperature == 0 for request in requests
        )
        return [Reply(content=self.verdicts.pop(0)) for _ in requests]


def question(answer="5", **reference):
    return Item("reasoning", "q1", "train", [{"role": "user", "content": "What is 2+3?"}],
                {"answer": answer, **reference})  # fmt: skip


def reply(text):
    return Reply.from_text(f"<think>\nsum\n</think>\n\n{text}")


@pytest.mark.parametrize(
    ("verdict", "score"),
    [
        ("The response is right.\nScore: 10", 1.0),
        ("Close but the sign is wrong. Score: 3", 0.3),
        ("**Score:** 7", 0.7),
        ("Verdict: [[6]]", 0.6),
        ("I'd give it 4/5.", 0.8),
        ("Score: 2 at first glance... on reflection Score: 9", 0.9),  # the last score is the verdict
        ("Score: 11", None),
        ("Score: -1", None),
        ("banana banana", None),
        ("", None),
        ("0/0", None),
    ],
)
def test_parse_score(verdict, score):
    parsed = parse_score(verdict)
    assert parsed == (None if score is None else pytest.approx(score))


def test_judge_scores_good_bad_and_garbage_verdicts_without_crashing(caplog):
    backend = Scripted(["Correct. Score: 9", "Wrong answer. Score: 1", "<<<<garbage>>>>"])
    judge = Judge(backend)
    items = [question(), question(), question()]
    replies = [reply("Answer: 5"), reply("Answer: 6"), reply("Answer: five")]
    with caplog.at_level("WARNING"):
        results = judge.score_all(items, replies)
    assert [r.score for r in results] == [pytest.approx(0.9), pytest.approx(0.1), 0.0]
    assert "unparsable" in results[2].reason and judge.unparsable == 1 and judge.calls == 3
    assert "no score in the verdict" in caplog.text and "garbage" in caplog.text
    prompt = backend.seen[0][1]["content"]
    assert "What is 2+3?" in prompt and "[Reference answer]\n5" in prompt and "Answer: 5" in prompt
    assert "sum" not in prompt  # the judge sees the answer, not the thought


def test_agreement_with_the_rule_verifier():
    items = [question(), question(), question(), Item("preference", "p", "train", [{"role": "user", "content": "hi"}],
                                                     {"chosen": "a", "rejected": "b"}, direct="hello")]  # fmt: skip
    replies = [reply("Answer: 5"), reply("Answer: 6"), reply("Answer: 5.0"), reply("hello")]
    judged = Judge(Scripted(["Score: 10", "Score: 8", "Score: 2", "Score: 10"])).score_all(items, replies)
    grades = rule_grades(items, replies)
    assert grades[3] is None  # no rule verifier for preference
    result = agreement(judged, grades)
    assert (result.items, result.agreed) == (3, 1)
    assert result.judge_pass_rule_fail == 1 and result.judge_fail_rule_pass == 1
    assert result.to_dict()["rate"] == pytest.approx(1 / 3)


def test_a_failed_request_is_a_logged_zero():
    class Down:
        def complete(self, requests):
            return [Reply.failed("HTTP 503: busy") for _ in requests]

    judge = Judge(Down())
    (result,) = judge.score_all([question()], [reply("Answer: 5")])
    assert result.score == 0.0 and "HTTP 503" in result.reason and judge.unparsable == 1


def test_reference_of_a_false_premise():
    item = Item("counterfact", "c", "train", [{"role": "user", "content": "Why is the moon cheese?"}],
                {"false_premise": True, "premise": "the moon is cheese", "truth": "it is rock"})  # fmt: skip
    assert (
        "false premise (the moon is cheese); in fact it is rock"
        in judge_prompt(item, reply("x"))[1]["content"]
    )
    with pytest.raises(ValueError, match="no reference answer"):
        judge_prompt(Item("ifeval", "i", "train", [{"role": "user", "content": "x"}], {}), reply("x"))


def test_an_in_process_qwen3_judge_runs_and_its_babble_scores_zero():
    judge = Judge(in_process_judge("qwen3-debug-tiny", max_model_len=512), max_tokens=8)
    results = judge.score_all([question(), question()], [reply("Answer: 5"), reply("Answer: 6")])
    assert len(results) == 2 and all(0.0 <= r.score <= 1.0 for r in results)
    assert judge.calls == 2


class _ChatServer(BaseHTTPRequestHandler):
    def do_POST(self):  # noqa: N802 (http.server's name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        verdict = "Score: 8" if "Answer: 5" in body["messages"][-1]["content"] else "no idea"
        payload = {"id": "x", "object": "chat.completion", "created": 0, "model": body["model"],
                   "choices": [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": verdict}}]}  # fmt: skip
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_an_openai_compatible_judge():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        backend = openai_judge(f"http://127.0.0.1:{server.server_port}/v1", "judge", concurrency=2)
        results = Judge(backend).score_all([question(), question()], [reply("Answer: 5"), reply("Answer: 6")])
    finally:
        server.shutdown()
    assert [r.score for r in results] == [pytest.approx(0.8), 0.0]
