"""Prometheus metrics, one registry per app (so several apps in one process, as in the tests, stay apart).

Names follow vLLM's where there is one (with the ``qwen3_`` prefix instead of ``vllm:``).
"""

from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen3.engine.outputs import CompletionDelta

LATENCY_BUCKETS = (
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    20.0,
    40.0,
    80.0,
    160.0,
    320.0,
    640.0,
)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "qwen3_http_requests", "HTTP requests by endpoint and status", ["endpoint", "status"], registry=r
        )
        self.request_success = Counter(
            "qwen3_request_success", "Finished completions by finish reason", ["finished_reason"], registry=r
        )
        self.prompt_tokens = Counter("qwen3_prompt_tokens", "Prompt tokens of admitted requests", registry=r)
        self.generation_tokens = Counter("qwen3_generation_tokens", "Generated tokens", registry=r)
        self.reasoning_tokens = Counter(
            "qwen3_reasoning_tokens", "Generated tokens inside thoughts", registry=r
        )
        self.running = Gauge("qwen3_num_requests_running", "Sequences in the engine's batch", registry=r)
        self.waiting = Gauge("qwen3_num_requests_waiting", "Sequences waiting for a cache slot", registry=r)
        self.queued = Gauge(
            "qwen3_num_requests_queued",
            "Requests waiting for a concurrency place (before the engine)",
            registry=r,
        )
        self.engine_steps = Counter("qwen3_engine_steps", "Engine steps", registry=r)
        self.batch_size = Histogram(
            "qwen3_batch_size",
            "Sequences that got a token per engine step",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "qwen3_time_to_first_token_seconds",
            "Request arrival to first token",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.e2e = Histogram(
            "qwen3_e2e_request_latency_seconds",
            "Request arrival to last token",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.time_per_output_token = Histogram(
            "qwen3_time_per_output_token_seconds",
            "Mean time between output tokens of a request",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
            registry=r,
        )

    def observe_step(self, deltas: list[CompletionDelta], running: int, waiting: int) -> None:
        """Called by the engine thread after every step."""
        self.engine_steps.inc()
        sampled = sum(1 for delta in deltas if delta.token_ids)
        if sampled:
            self.batch_size.observe(sampled)
        self.generation_tokens.inc(sum(len(delta.token_ids) for delta in deltas))
        self.running.set(running)
        self.waiting.set(waiting)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestTimer:
    """Latency metrics of one HTTP request: call ``token()`` for each delta with tokens, ``finish()`` at the end."""

    def __init__(self, metrics: Metrics):
        self.metrics = metrics
        self.start = time.perf_counter()
        self.first: float | None = None
        self.tokens = 0

    def token(self, count: int) -> None:
        if count and self.first is None:
            self.first = time.perf_counter()
            self.metrics.ttft.observe(self.first - self.start)
        self.tokens += count

    def finish(self, finish_reasons: list[str], reasoning_tokens: int) -> None:
        end = time.perf_counter()
        self.metrics.e2e.observe(end - self.start)
        if self.first is not None and self.tokens > 1:
            self.metrics.time_per_output_token.observe((end - self.first) / (self.tokens - 1))
        for reason in finish_reasons:
            self.metrics.request_success.labels(finished_reason=reason).inc()
        self.metrics.reasoning_tokens.inc(reasoning_tokens)


class HTTPMetricsMiddleware:
    """Counts responses by route and status (a pure ASGI middleware: it does not touch streaming bodies)."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # an exception that escapes every handler

        async def watching_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, watching_send)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.http_requests.labels(endpoint=endpoint, status=str(status)).inc()
