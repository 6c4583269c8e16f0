"""``qwen3 generate`` and ``qwen3 chat`` run as subprocesses, stdin piped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qwen3.engine import LLM, SamplingParams
from qwen3.model.checkpoint import init_checkpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return init_checkpoint("qwen3-debug-tiny", tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


def qwen3(*args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "qwen3", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )


RAW_GREEDY = ["--prompt", "hello", "--raw", "--temperature", "0", "--max-tokens", "6"]


def test_generate_json_matches_the_library(checkpoint):
    result = qwen3("generate", str(checkpoint), *RAW_GREEDY, "--json")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    expected = LLM(checkpoint).generate("hello", SamplingParams(temperature=0, max_tokens=6))[0]
    assert record["text"] == expected.outputs[0].text
    assert record["usage"]["completion_tokens"] == len(expected.outputs[0].token_ids)
    assert "tok/s" in result.stderr  # timings where a person waits


def test_generate_stream_prints_the_same_text(checkpoint):
    whole = json.loads(qwen3("generate", str(checkpoint), *RAW_GREEDY, "--json").stdout)["text"]
    streamed = qwen3("generate", str(checkpoint), *RAW_GREEDY, "--stream")
    assert streamed.returncode == 0, streamed.stderr
    assert streamed.stdout == whole + "\n"


def test_generate_chat_modes(checkpoint):
    result = qwen3(
        "generate",
        str(checkpoint),
        "--prompt",
        "hi",
        "--no-think",
        "--max-tokens",
        "5",
        "--json",
        "--seed",
        "1",
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["reasoning_content"] is None and record["usage"]["completion_tokens"] <= 5
    budget = qwen3(
        "generate", str(checkpoint), "--prompt", "hi", "--thinking-budget", "0", "--max-tokens", "3"
    )
    assert budget.returncode == 0, budget.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-tokens", "0"], "max_tokens must be >= 1"),
        (["--top-p", "1.5"], "top_p must be in"),
        (["--thinking-budget", "-1"], "thinking_budget must be >= 0"),
        (["--prompt", ""], "--prompt is empty"),
    ],
)
def test_generate_bad_input(checkpoint, args, message):
    result = qwen3("generate", str(checkpoint), "--prompt", "hi", *args)
    assert result.returncode == 1 and message in result.stderr and "Traceback" not in result.stderr


def test_generate_missing_model(tmp_path):
    result = qwen3("generate", str(tmp_path / "nope"), "--prompt", "hi")
    assert result.returncode == 1 and "neither a checkpoint directory nor a preset" in result.stderr


@pytest.mark.parametrize("command", [["generate", "--prompt", "x"], ["chat"]])
def test_bad_flags_fail_before_the_model_loads(tmp_path, command):
    result = qwen3(command[0], str(tmp_path / "nope"), *command[1:], "--top-p", "1.5", stdin="hi\n")
    assert result.returncode == 1 and "error: SamplingParams.top_p must be in" in result.stderr, result.stderr
    assert "loading" not in result.stderr and "neither a checkpoint" not in result.stderr


def test_chat_session_commands(checkpoint, tmp_path):
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    script = "\n".join(
        [
            "hi there",
            "/no_think",
            "and now?",
            "/budget 2",
            f"/save {first}",
            "/reset",
            "new topic",
            f"/save {second}",
        ]
    )
    result = qwen3("chat", str(checkpoint), "--max-tokens", "6", "--seed", "0", stdin=script + "\n")
    assert result.returncode == 0, result.stderr
    saved = json.loads(first.read_text())["messages"]
    assert [m["role"] for m in saved] == ["user", "assistant", "user", "assistant"]
    assert saved[2]["content"] == "and now? /no_think"
    assert "thinking off from the next message" in result.stderr and "thinking budget: 2" in result.stderr
    assert [m["content"] for m in json.loads(second.read_text())["messages"] if m["role"] == "user"] == [
        "new topic"
    ]
    assert result.stderr.count(" tokens in ") == 3  # a timing line after each reply


def test_replies_end_by_default_and_max_lifts_the_limit():
    from qwen3.cli import build_parser
    from qwen3.engine.terminal import DEFAULT_MAX_TOKENS, sampling_params

    for command in (["generate", "m", "--prompt", "x"], ["chat", "m"]):
        args = build_parser().parse_args(command)
        assert args.max_tokens == DEFAULT_MAX_TOKENS
        assert sampling_params(args, True, None).max_tokens == DEFAULT_MAX_TOKENS
        args = build_parser().parse_args([*command, "--max-tokens", "max"])
        assert sampling_params(args, True, None).max_tokens is None  # up to the context length


def test_bad_max_tokens_is_a_usage_error():
    result = qwen3("generate", "m", "--prompt", "x", "--max-tokens", "lots")
    assert result.returncode == 2
    assert "--max-tokens: expected a number of tokens or 'max', got 'lots'" in result.stderr


def test_piped_generate_marks_the_thinking(checkpoint):
    flags = ["--prompt", "hi", "--max-tokens", "5", "--seed", "0"]
    whole = qwen3("generate", str(checkpoint), *flags)
    streamed = qwen3("generate", str(checkpoint), *flags, "--stream")
    assert whole.returncode == streamed.returncode == 0, whole.stderr + streamed.stderr
    # random weights never close the thought: all of it is reasoning, between tags a program can find
    for out in (whole.stdout, streamed.stdout):
        assert out.startswith("<think>\n") and out.rstrip("\n").endswith("\n</think>")
        assert out.count("<think>") == 1
    assert whole.stdout.rstrip("\n") == streamed.stdout.rstrip("\n")
