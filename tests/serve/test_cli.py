"""``qwen3 serve`` as a subprocess: the vLLM-style command line, the API key from the environment, a clean exit on
Ctrl-C, and flag errors reported before the model is loaded."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def qwen3_serve(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "qwen3", "serve", *args],
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_for_health(process: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + 120  # waits for the start; not a speed check
    while time.monotonic() < deadline:
        assert process.poll() is None, process.stdout.read()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError("the server did not start")


def test_serve_like_vllm(checkpoint):
    port = free_port()
    process = qwen3_serve(
        str(checkpoint),
        "--port",
        str(port),
        "--served-model-name",
        "Qwen/Qwen3-8B",
        "qwen3",
        "--reasoning-parser",
        "qwen3",
        "--enable-auto-tool-choice",
        "--tool-call-parser",
        "hermes",
        "--max-model-len",
        "512",
        "--default-chat-template-kwargs",
        '{"enable_thinking": false}',
        env={"QWEN3_API_KEY": "sk-env"},
    )
    try:
        wait_for_health(process, f"http://127.0.0.1:{port}/health")
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-env", max_retries=0)
        assert [m.id for m in client.models.list().data] == ["Qwen/Qwen3-8B", "qwen3"]
        assert client.models.retrieve("qwen3").model_extra["max_model_len"] == 512
        reply = client.chat.completions.create(
            model="qwen3", messages=[{"role": "user", "content": "hi"}], max_tokens=4
        )
        assert reply.model == "qwen3" and reply.usage.completion_tokens_details.reasoning_tokens == 0
        unauthorized = httpx.get(f"http://127.0.0.1:{port}/v1/models")
        assert unauthorized.status_code == 401
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=60)
    assert process.returncode == 0, output
    assert "127.0.0.1" in output and "with an API key" in output


def test_bad_flags_fail_before_loading(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "qwen3",
            "serve",
            str(tmp_path / "missing"),
            "--default-chat-template-kwargs",
            "[1]",
        ],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert "--default-chat-template-kwargs: must be a JSON object" in result.stderr
    assert "loading" not in result.stderr
