"""A real uvicorn server on 127.0.0.1 (free port, in a thread of the test process) around a tiny random checkpoint
written by ``qwen3 init``; one server per test module, shared by its tests."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from qwen3.engine import LLMEngine
from qwen3.model.checkpoint import init_checkpoint
from qwen3.serve.app import Server, create_app
from qwen3.serve.config import ServerConfig

API_KEY = "sk-test-key"
MODEL = "tiny"


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    return init_checkpoint("qwen3-debug-tiny", tmp_path_factory.mktemp("serve") / "tiny", seed=0)


class RunningServer:
    """A started server: ``url`` (ends in /v1), ``state`` (the app's ``Server``), ``client`` (an openai client),
    ``http`` (an httpx client with the key)."""

    def __init__(self, app, port: int):
        self.app = app
        self.state: Server = app.state.server
        self.base = f"http://127.0.0.1:{port}"
        self.url = f"{self.base}/v1"
        self.api_key = self.state.config.api_key
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        self.http = httpx.Client(base_url=self.base, headers=headers, timeout=120)

    def client(self, **options):
        import openai

        return openai.OpenAI(base_url=self.url, api_key=self.api_key or "none", max_retries=0, **options)

    def metric(self, name: str, **labels: str) -> float:
        """A sample of /metrics (0 when absent)."""
        text = self.http.get("/metrics").text
        wanted = name + (
            "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}" if labels else ""
        )
        for line in text.splitlines():
            if line.startswith(wanted + " "):
                return float(line.rsplit(" ", 1)[1])
        return 0.0

    def wait_until(self, condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        """Poll (this waits for an event; it does not measure speed)."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.02)

    def idle(self) -> bool:
        """No request left anywhere: not in the engine, not in the server's streams, no concurrency place held."""
        state = self.state
        return (
            not state.engine.has_unfinished()
            and state.async_engine.num_open_requests == 0
            and state.admission.active == 0
        )


@contextmanager
def serve(checkpoint: Path, engine_setup: Callable[[LLMEngine], None] | None = None, **config) -> Iterator:
    engine = LLMEngine.from_pretrained(checkpoint, max_model_len=2048, max_num_seqs=16, weights="reference")
    if engine_setup is not None:
        engine_setup(engine)
    config.setdefault("served_model_names", [MODEL])
    app = create_app(engine, ServerConfig(**config))
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    running = RunningServer(app, sock.getsockname()[1])
    running.wait_until(lambda: server.started, "the server to start")
    try:
        yield running
    finally:
        running.http.close()
        server.should_exit = True
        thread.join(30)
        sock.close()
