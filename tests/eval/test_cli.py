"""``qwen3 eval`` end to end on a debug checkpoint: in process and through ``qwen3 serve`` (same greedy scores),
the budget curve, and the one-line errors."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest

from qwen3.cli import main
from qwen3.model.checkpoint import init_checkpoint
from tests.eval.conftest import CALCULATOR, item
from tests.serve.conftest import MODEL, serve

ITEMS = [
    *[
        item("reasoning", f"What is {a} + {a}? End with 'Answer: N'.", {"answer": str(2 * a)}, id=f"r{a}")
        for a in range(3)
    ],
    item("knowledge", "What is the capital of Drask?", {"answer": "Velmora", "aliases": []}, id="k0"),
    item(
        "thinkfollow",
        "",
        {"mode": "no_think"},
        id="t0",
        messages=[{"role": "user", "content": "Hi /no_think"}],
    ),
    item(
        "thinkfollow", "", {"mode": "think"}, id="t1", messages=[{"role": "user", "content": "Why? /think"}]
    ),
    item(
        "tooluse",
        "What is 12*7?",
        {"calls": [[{"name": "calculator", "arguments": {"expression": "12*7"}}]], "answer": "84"},
        id="u0",
        tools=[CALCULATOR],
    ),
]
ENGINE = ["--weights", "reference", "--max-model-len", "2048"]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return init_checkpoint("qwen3-debug-tiny", tmp_path_factory.mktemp("eval") / "tiny", seed=0)


@pytest.fixture(scope="module")
def items_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("items") / "items.jsonl"
    path.write_text("".join(json.dumps(i.to_dict()) + "\n" for i in ITEMS))
    return path


def run(*argv: str) -> int:
    return main(["eval", *argv])


def scores(path: Path) -> dict:
    results = json.loads(path.read_text())
    return {
        (suite, mode): (summary["score"], [r["reply"]["content"] for r in summary["items"]])
        for suite, by_mode in results["suites"].items()
        for mode, summary in by_mode.items()
    }


def run_both(checkpoint: Path, common: list[str], tmp_path: Path) -> None:
    """``qwen3 eval`` in process (local.json) and through ``qwen3 serve`` on the same checkpoint (served.json)."""
    assert run(str(checkpoint), *common, *ENGINE, "--out", str(tmp_path / "local.json")) == 0
    with serve(checkpoint) as server:
        served = ["--base-url", server.url, "--model", MODEL, *common, "--out", str(tmp_path / "served.json")]
        assert run(*served) == 0


def test_in_process_and_server_agree_for_greedy(checkpoint, items_file, tmp_path):
    suites = "reasoning,knowledge,thinkfollow,tooluse"
    common = ["--items", str(items_file), "--suite", suites, "--sampling", "greedy", "--max-tokens", "24"]
    common.append("--no-progress")
    run_both(checkpoint, common, tmp_path)
    local, served = scores(tmp_path / "local.json"), scores(tmp_path / "served.json")
    assert set(local) == {
        ("reasoning", "think"),
        ("reasoning", "no_think"),
        ("knowledge", "think"),
        ("knowledge", "no_think"),
        ("thinkfollow", "both"),
        ("tooluse", "think"),
        ("tooluse", "no_think"),
    }
    assert local == served
    results = json.loads((tmp_path / "local.json").read_text())
    assert results["suites"]["reasoning"]["think"]["n"] == 3 and results["backend"] == "in_process"
    table = (tmp_path / "local.md").read_text()
    assert "| reasoning |" in table and "ThinkFollow*" in table


def test_budget_curve_on_a_debug_model(checkpoint, items_file, tmp_path):
    out = tmp_path / "budget.json"
    argv = [
        "--items",
        str(items_file),
        "--suite",
        "budget",
        "--budgets",
        "0,4,8,16,32",
        "--sampling",
        "greedy",
        "--max-tokens",
        "200",
        "--open-thought",
        "--no-progress",
        "--out",
        str(out),
        *ENGINE,
    ]
    assert run(str(checkpoint), *argv) == 0
    curve = json.loads(out.read_text())["budget"]
    assert [p["budget"] for p in curve["think"]] == [0, 4, 8, 16, 32]
    tokens = [p["metrics"]["reasoning_tokens"] for p in curve["think"]]
    # The budget caps the thought: one forced stop-thinking text on top of exactly the budget.
    forced = tokens[0]
    assert tokens == [forced + b for b in (0, 4, 8, 16, 32)]
    assert curve["no_think"]["metrics"]["reasoning_tokens"] == 0 and "score" in curve["no_think"]
    png = Path(curve["png"])
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def one_line_error(capsys, *argv: str) -> str:
    assert run(*argv) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("qwen3 eval: error:")
    return err


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Garbage(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        body = b"<html>hello</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET

    def log_message(self, *args):
        pass


def test_bad_input_is_one_line(checkpoint, items_file, tmp_path, capsys):
    items = ["--items", str(items_file), "--suite", "reasoning"]
    assert "unknown suite 'poetry'" in one_line_error(capsys, str(checkpoint), "--suite", "poetry")
    assert "unknown mode 'fast'" in one_line_error(capsys, str(checkpoint), "--mode", "fast")
    assert "not a checkpoint directory" in one_line_error(capsys, str(tmp_path / "nope"), *items)
    down = f"http://127.0.0.1:{free_port()}/v1"
    assert "cannot reach" in one_line_error(capsys, "--base-url", down, "--model", "m", *items)
    assert "needs --model" in one_line_error(capsys, "--base-url", down, *items)
    server = HTTPServer(("127.0.0.1", 0), Garbage)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        assert "does not answer" in one_line_error(capsys, "--base-url", url, "--model", "m", *items)
    finally:
        server.shutdown()
    bare = init_checkpoint("qwen3-debug-tiny", tmp_path / "bare", seed=0)
    config = json.loads((bare / "tokenizer_config.json").read_text())
    config.pop("chat_template")
    (bare / "tokenizer_config.json").write_text(json.dumps(config))
    assert "no chat template" in one_line_error(capsys, str(bare), *items, *ENGINE)
    bad_items = tmp_path / "bad.jsonl"
    bad_items.write_text('{"family": "reasoning"}\n')
    assert "bad.jsonl:1: not an Item" in one_line_error(capsys, str(checkpoint), "--items", str(bad_items))
    # Suites without items fail before the model loads.
    assert "no 'ifeval' items" in one_line_error(capsys, str(tmp_path / "nope"), *items, "--suite", "ifeval")


def test_preset_sampling_repeats_for_a_seed(checkpoint, items_file, tmp_path):
    argv = ["--items", str(items_file), "--suite", "reasoning,thinkfollow", "--samples", "2", "--seed", "5",
            "--max-tokens", "12", "--no-progress", *ENGINE]  # fmt: skip
    for name in ("a", "b"):
        assert run(str(checkpoint), *argv, "--out", str(tmp_path / f"{name}.json")) == 0
    first, second = scores(tmp_path / "a.json"), scores(tmp_path / "b.json")
    assert first == second
    replies = first[("reasoning", "no_think")][1]
    assert len(replies) == 6 and len(set(replies)) > 1  # 3 items x 2 samples, sampled (not all the same)


class Flaky(BaseHTTPRequestHandler):
    """An OpenAI-looking server that passes the start-up check, then fails: HTTP 500 or a body that is no chat
    completion, by the question asked."""

    def _send(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        self._send(
            200, {"object": "list", "data": [{"id": "m", "object": "model", "owned_by": "x", "created": 0}]}
        )

    def do_POST(self):  # noqa: N802
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        question = request["messages"][-1]["content"]
        if question == "Hi" or "0 + 0" in question:
            message = {"role": "assistant", "content": "Answer: 0"}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            self._send(
                200, {"id": "c", "object": "chat.completion", "created": 0, "model": "m", "choices": [choice]}
            )
        elif "1 + 1" in question:
            self._send(500, {"error": {"message": "boom", "type": "server_error"}})
        else:
            self._send(200, {"unexpected": True})

    def log_message(self, *args):
        pass


def test_a_server_failing_mid_run_fails_items_not_the_run(items_file, tmp_path):
    server = HTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    out = tmp_path / "flaky.json"
    try:
        url = f"http://127.0.0.1:{server.server_port}/v1"
        argv = ["--base-url", url, "--model", "m", "--items", str(items_file), "--suite", "reasoning"]
        assert run(*argv, "--mode", "no_think", "--no-progress", "--out", str(out)) == 0
    finally:
        server.shutdown()
    summary = json.loads(out.read_text())["suites"]["reasoning"]["no_think"]
    reasons = {record["id"]: record["reason"] for record in summary["items"]}
    assert reasons["r0"] == "correct" and "HTTP 500" in reasons["r1"] and "no reply" in reasons["r2"]
    assert summary["failed"] == 2 and summary["score"] == pytest.approx(1 / 3)


def test_world_suites_in_process_and_served_agree(checkpoint, tmp_path):
    """Every suite on the world's own test items (its constraints and real tools included), both backends."""
    world = pytest.importorskip("qwen3.world")
    if not hasattr(world, "generate"):
        pytest.skip("qwen3.world has no generators in this version")
    suites = "reasoning,knowledge,counterfact,ifeval,lengthctrl,tooluse,thinkfollow"
    common = [
        "--suite",
        suites,
        "--limit",
        "2",
        "--sampling",
        "greedy",
        "--max-tokens",
        "16",
        "--no-progress",
    ]
    run_both(checkpoint, common, tmp_path)
    local = scores(tmp_path / "local.json")
    assert local == scores(tmp_path / "served.json") and len(local) == 13
    results = json.loads((tmp_path / "local.json").read_text())
    assert all(s["failed"] == 0 for by_mode in results["suites"].values() for s in by_mode.values())
    assert {"prompt_strict", "instruction_loose"} <= set(results["suites"]["ifeval"]["think"]["metrics"])
