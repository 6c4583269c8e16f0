"""Security and limits: the API key, the body size limit and the concurrency limit (queue, then 429)."""

from __future__ import annotations

import asyncio
import secrets
from collections import deque

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from qwen3.serve.errors import APIError


def check_api_key(authorization: str | None, api_key: str | None) -> None:
    """Raise 401 unless ``authorization`` is ``Bearer <api_key>`` (compared in constant time)."""
    if api_key is None:
        return
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not secrets.compare_digest(token.strip().encode(), api_key.encode()):
        raise APIError(
            401,
            "missing or invalid API key: send 'Authorization: Bearer <key>'",
            code="invalid_api_key",
            headers={"WWW-Authenticate": "Bearer"},
        )


def body_too_large(limit: int) -> APIError:
    return APIError(413, f"the request body is larger than the limit of {limit} bytes", code="body_too_large")


class BodyLimitMiddleware:
    """413 for bodies over ``max_bytes``: at once when Content-Length says so, else when the body read so far
    passes the limit (chunked uploads), so an oversized body is never held in memory."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            response = body_too_large(self.max_bytes).response()
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise body_too_large(self.max_bytes)
            return message

        await self.app(scope, limited_receive, send)


class Admission:
    """At most ``limit`` requests at a time (None: no limit); up to ``max_queue`` more wait in arrival order and
    the rest are refused with 429. Used from the event loop only."""

    def __init__(self, limit: int | None, max_queue: int):
        self.limit = limit
        self.max_queue = max_queue
        self.active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def queued(self) -> int:
        return sum(not waiter.done() for waiter in self._waiters)

    async def acquire(self) -> None:
        if self.limit is None or (self.active < self.limit and not self.queued):
            self.active += 1
            return
        if self.queued >= self.max_queue:
            raise APIError(
                429,
                f"the server is at its limit of {self.limit} concurrent requests and {self.max_queue} queued "
                "ones; retry later",
                code="too_many_requests",
                headers={"Retry-After": "1"},
            )
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter  # release() hands its place over, so ``active`` is unchanged
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the place came just as the client left: pass it on
            raise

    def release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.active -= 1
