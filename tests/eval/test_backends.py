"""The in-process backend batches a whole suite into one generate call; the sandbox limits time and memory."""

from __future__ import annotations

import pytest

from qwen3.eval.backends import ChatRequest, EvalError, GenParams, InProcessBackend
from qwen3.eval.sandbox import run_python


@pytest.fixture(scope="module")
def backend() -> InProcessBackend:
    return InProcessBackend("qwen3-debug-tiny", max_model_len=256, weights="reference")


def test_one_generate_call_for_all_requests(backend, monkeypatch):
    calls = []
    generate = backend.llm.generate
    monkeypatch.setattr(backend.llm, "generate", lambda *a, **k: calls.append(len(a[0])) or generate(*a, **k))
    params = GenParams(temperature=0.0, max_tokens=4)
    requests = [
        ChatRequest([{"role": "user", "content": f"q{i}"}], params, enable_thinking=i % 2 == 0)
        for i in range(5)
    ]
    too_long = ChatRequest([{"role": "user", "content": "word " * 400}], params)
    replies = backend.complete([*requests[:2], too_long, *requests[2:]])
    assert calls == [5] and len(replies) == 6
    assert replies[2].error is not None and "context is 256" in replies[2].error
    assert all(r.error is None and r.finish_reason == "length" for i, r in enumerate(replies) if i != 2)
    # The hard switch closes the thought in the prompt: such replies are never unclosed.
    assert replies[1].think_closed and replies[4].think_closed  # requests 1 and 3: enable_thinking=False


def test_seeded_sampling_repeats(backend):
    params = GenParams(temperature=1.0, top_k=0, max_tokens=8, seed=7)
    request = ChatRequest([{"role": "user", "content": "hello"}], params, enable_thinking=False)
    first, second = backend.complete([request]), backend.complete([request, request])
    assert first[0].raw == second[0].raw == second[1].raw


def test_model_source_errors(tmp_path):
    with pytest.raises(EvalError, match="not a checkpoint directory, run directory or preset"):
        InProcessBackend(str(tmp_path / "missing"))


def test_sandbox_runs_code_in_a_child_with_limits():
    ok = run_python("import os; print(os.getpid())")
    import os

    assert ok.ok and int(ok.stdout) != os.getpid()
    assert not run_python("raise SystemExit(3)").ok
    slow = run_python("while True: pass", timeout_s=1.0)
    assert slow.timed_out and not slow.ok
    greedy = run_python("x = bytearray(1024 * 1024 * 1024)", memory_mb=256)
    assert not greedy.ok and "MemoryError" in greedy.stderr
    with pytest.raises(ValueError, match="timeout_s"):
        run_python("pass", timeout_s=0)
