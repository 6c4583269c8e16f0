"""The runner with a scripted backend: pass@k, summaries, multi-round tool use, failures, determinism."""

from __future__ import annotations

import json
import math

import pytest

from qwen3.eval import Reply
from qwen3.eval.backends import EvalError
from qwen3.eval.report import markdown_table
from qwen3.eval.runner import EvalOptions, parse_list, pass_at_k, request_seed, run_suites
from tests.eval.conftest import CALCULATOR, fake_execute, item


def test_pass_at_k_matches_hand_values():
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - 3 / 10)  # 1 - C(3,2)/C(5,2)
    assert pass_at_k(10, 1, 5) == pytest.approx(0.5)  # 1 - C(9,5)/C(10,5) = 1 - 126/252
    assert pass_at_k(3, 3, 3) == 1.0 and pass_at_k(4, 0, 2) == 0.0
    with pytest.raises(ValueError, match="pass_at_k"):
        pass_at_k(3, 4, 1)


class Scripted:
    """A backend answering from a function of the request; it records every request it got."""

    name = "scripted"
    label = "scripted"

    def __init__(self, answer):
        self.answer = answer
        self.requests = []

    def complete(self, requests, progress=False):
        self.requests.extend(requests)
        return [self.answer(request) for request in requests]


def last_user(request) -> str:
    return [m for m in request.messages if m["role"] == "user"][-1]["content"]


REASONING = [item("reasoning", f"{a} + {a}?", {"answer": str(2 * a)}, id=f"r{a}") for a in range(4)]


def test_scores_stderr_and_pass_at_k_over_samples():
    # Item r0 always right, r1 right on even seeds only (seed parity decides), r2 and r3 always wrong.
    def answer(request):
        a = int(last_user(request).split()[0])
        ok = a == 0 or (a == 1 and request.params.seed % 2 == 0)
        return Reply.from_text(f"<think>\nt\n</think>\n\nAnswer: {2 * a if ok else -1}")

    backend = Scripted(answer)
    options = EvalOptions(samples=4, seed=3)
    results = run_suites(
        backend, ["reasoning"], ["think"], options, {"reasoning": REASONING}, log=lambda _: None
    )
    summary = results["suites"]["reasoning"]["think"]
    right_r1 = sum(request_seed(3, "reasoning", "r1", s, None) % 2 == 0 for s in range(4))
    per_item = [1.0, right_r1 / 4, 0.0, 0.0]
    mean = sum(per_item) / 4
    assert summary["score"] == pytest.approx(mean) and summary["pass@1"] == pytest.approx(mean)
    stderr = math.sqrt(sum((x - mean) ** 2 for x in per_item) / 3 / 4)
    assert summary["stderr"] == pytest.approx(stderr)
    assert summary["pass@4"] == pytest.approx((1 + (right_r1 > 0)) / 4)
    assert summary["n"] == 4 and len(summary["items"]) == 16 and len(backend.requests) == 16
    # The report's presets: thinking T 0.6 / top-p 0.95 / top-k 20, the hard switch on.
    first = backend.requests[0]
    assert (first.params.temperature, first.params.top_p, first.params.top_k) == (0.6, 0.95, 20)
    assert first.enable_thinking is True
    assert "reasoning" in markdown_table(results)


def test_no_think_preset_and_greedy():
    backend = Scripted(lambda r: Reply.from_text("Answer: 0", enable_thinking=False))
    run_suites(
        backend, ["reasoning"], ["no_think"], EvalOptions(), {"reasoning": REASONING}, log=lambda _: None
    )
    params = backend.requests[0].params
    assert (params.temperature, params.top_p, params.presence_penalty) == (0.7, 0.8, 1.5)
    assert backend.requests[0].enable_thinking is False
    greedy = Scripted(lambda r: Reply.from_text("Answer: 0", enable_thinking=False))
    options = EvalOptions(sampling="greedy")
    run_suites(greedy, ["reasoning"], ["think"], options, {"reasoning": REASONING}, log=lambda _: None)
    assert greedy.requests[0].params.temperature == 0.0


def test_a_budget_point_keeps_max_tokens_of_room_after_its_thought():
    # Budget 64 with --max-tokens 32: a cap of 32 would end every thought before the budget could.
    backend = Scripted(lambda r: Reply.from_text("<think>\nt\n</think>\n\nAnswer: 0"))
    options = EvalOptions(max_tokens=32, budgets=(8, 64))
    results = run_suites(
        backend, ["budget"], ["think"], options, {"reasoning": REASONING}, log=lambda _: None
    )
    caps = sorted({(r.params.thinking_budget, r.params.max_tokens) for r in backend.requests}, key=str)
    assert caps == [(64, 96), (8, 40), (None, 32)]
    assert [point["budget"] for point in results["budget"]["think"]] == [8, 64]


def test_seeds_do_not_depend_on_the_other_items():
    seeds = {}
    for limit in (4, 2):
        backend = Scripted(lambda r: Reply.failed("x"))
        run_suites(
            backend,
            ["reasoning"],
            ["think"],
            EvalOptions(limit=limit),
            {"reasoning": REASONING},
            log=lambda _: None,
        )
        seeds[limit] = [r.params.seed for r in backend.requests]
    assert seeds[2] == seeds[4][:2]


def test_failures_are_recorded_never_raised():
    def answer(request):
        if "1 +" in last_user(request):
            return Reply.failed("HTTP 500: boom")
        return Reply.from_text("<think>\nt\n</think>\n\nAnswer: 0")

    broken = item("reasoning", "0 + 0?", {}, id="no-answer-key")  # grading raises KeyError
    items = {"reasoning": [*REASONING[:2], broken]}
    results = run_suites(Scripted(answer), ["reasoning"], ["think"], EvalOptions(), items, log=lambda _: None)
    summary = results["suites"]["reasoning"]["think"]
    reasons = [record["reason"] for record in summary["items"]]
    assert summary["failed"] == 1 and "HTTP 500" in reasons[1] and "grading failed: KeyError" in reasons[2]
    assert summary["score"] == pytest.approx(1 / 3)


def test_tooluse_runs_the_tools_between_rounds():
    tooluse = item(
        "tooluse",
        "What is 12*7?",
        {"calls": [[{"name": "calculator", "arguments": {"expression": "12*7"}}]], "answer": "84"},
        tools=[CALCULATOR],
    )

    def answer(request):
        if request.messages[-1]["role"] == "tool":
            result = json.loads(request.messages[-1]["content"])["result"]
            return Reply.from_text(f"<think>\nthe tool said {result}\n</think>\n\nAnswer: {result}")
        call = json.dumps({"name": "calculator", "arguments": {"expression": "12*7"}})
        return Reply.from_text(f"<think>\nuse it\n</think>\n\n<tool_call>\n{call}\n</tool_call>")

    backend = Scripted(answer)
    options = EvalOptions(execute=fake_execute)
    results = run_suites(backend, ["tooluse"], ["think"], options, {"tooluse": [tooluse]}, log=lambda _: None)
    summary = results["suites"]["tooluse"]["think"]
    assert summary["score"] == 1.0 and summary["items"][0]["rounds"] == 2
    second = backend.requests[1].messages
    assert (
        second[-2]["role"] == "assistant" and second[-2]["tool_calls"][0]["function"]["name"] == "calculator"
    )
    assert second[-1] == {"role": "tool", "tool_call_id": "call_0", "content": '{"result": 84}'}
    assert summary["metrics"]["intent"] == summary["metrics"]["parameters"] == 1.0


def test_tool_rounds_bound_a_model_that_keeps_calling():
    tooluse = item("tooluse", "q", {"calls": [[]], "answer": None}, tools=[CALCULATOR])
    call = json.dumps({"name": "calculator", "arguments": {"expression": "1+1"}})
    backend = Scripted(lambda r: Reply.from_text(f"<tool_call>\n{call}\n</tool_call>", enable_thinking=False))
    options = EvalOptions(execute=fake_execute, tool_rounds=3)
    results = run_suites(
        backend, ["tooluse"], ["no_think"], options, {"tooluse": [tooluse]}, log=lambda _: None
    )
    assert len(backend.requests) == 3 and results["suites"]["tooluse"]["no_think"]["score"] < 1.0


def test_thinkfollow_runs_once_with_the_items_own_flags():
    dialogue = [{"role": "user", "content": "Hi /no_think"}]
    follow = item("thinkfollow", "", {"mode": "no_think"}, messages=dialogue)
    backend = Scripted(lambda r: Reply.from_text("<think>\n\n</think>\n\nHello"))
    results = run_suites(
        backend,
        ["thinkfollow"],
        ["think", "no_think"],
        EvalOptions(),
        {"thinkfollow": [follow]},
        log=lambda _: None,
    )
    assert list(results["suites"]["thinkfollow"]) == ["both"] and len(backend.requests) == 1
    assert backend.requests[0].enable_thinking is None and backend.requests[0].params.presence_penalty == 1.5
    assert results["suites"]["thinkfollow"]["both"]["score"] == 1.0


def test_unknown_suite_mode_and_options():
    with pytest.raises(EvalError, match="unknown suite 'poetry'"):
        parse_list("reasoning,poetry", ["reasoning"], "suite")
    with pytest.raises(EvalError, match="unknown mode 'fast'"):
        run_suites(Scripted(None), ["reasoning"], ["fast"], EvalOptions(), {"reasoning": REASONING})
    with pytest.raises(EvalError, match="--samples"):
        EvalOptions(samples=0)
    with pytest.raises(EvalError, match="--split"):
        EvalOptions(split="dev")
    with pytest.raises(EvalError, match="no 'knowledge' items"):
        run_suites(Scripted(None), ["knowledge"], ["think"], EvalOptions(), {"reasoning": REASONING})
