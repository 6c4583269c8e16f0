"""What chat and text completions share on the way out: server-sent events, usage, logprobs, and the driver that
runs one HTTP request against the engine (admission, streaming or collecting, disconnects, metrics).

A responder (``ChatResponder``, ``CompletionResponder``) turns engine deltas into OpenAI objects:
``start()`` / ``chunks(delta)`` / ``end()`` give the streamed chunks, ``add(delta)`` / ``response()`` the
non-streamed body. The driver feeds it; tests feed it scripted deltas the same way.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from qwen3.engine.outputs import CompletionDelta, TokenLogprobs, Usage
from qwen3.serve.async_engine import AsyncEngine, EngineError, RequestStream
from qwen3.serve.errors import APIError, error_body, from_value_error
from qwen3.serve.limits import Admission
from qwen3.serve.metrics import Metrics, RequestTimer

logger = logging.getLogger("qwen3.serve")
DONE = "data: [DONE]\n\n"


def sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False, separators=(',', ':'))}\n\n"


class Responder:
    """What chat and text completion responders share: the header of every object, the usage chunk, the final body.

    Subclasses give ``start()`` / ``chunks(delta)`` (streamed chunks) and ``add(delta)`` / ``choices()`` (one body).
    """

    chunk_object = ""  # "chat.completion.chunk", "text_completion"
    body_object = ""

    def __init__(self, response_id: str, model: str, include_usage: bool, tokenizer, num_prompt_tokens: int):
        self.response_id = response_id
        self.model = model
        self.created = int(time.time())
        self.include_usage = include_usage
        self.tokenizer = tokenizer
        self.tally = Tally()
        self.tally.prompt_tokens = num_prompt_tokens
        self.finals: dict[int, CompletionDelta] = {}  # choice index -> its last delta

    def start(self) -> list[dict]:
        return []

    def chunks(self, delta: CompletionDelta) -> list[dict]:
        raise NotImplementedError

    def end(self) -> list[dict]:
        """The usage chunk (``choices: []``) when the client asked for it."""
        if not self.include_usage:
            return []
        return [{**self._header(self.chunk_object), "choices": [], "usage": self.tally.usage()}]

    def add(self, delta: CompletionDelta, index: int | None = None) -> None:
        if delta.finished:
            self.tally.finished(delta)
            self.finals[delta.index if index is None else index] = delta

    def choices(self) -> list[dict]:
        raise NotImplementedError

    def response(self) -> dict[str, Any]:
        return {**self._header(self.body_object), "choices": self.choices(), "usage": self.tally.usage()}

    def _header(self, kind: str) -> dict[str, Any]:
        return {"id": self.response_id, "object": kind, "created": self.created, "model": self.model}

    def _wrap(self, choice: dict[str, Any]) -> dict[str, Any]:
        """A streamed chunk holding one choice (``usage: null`` when the last chunk will carry the usage)."""
        chunk = {**self._header(self.chunk_object), "choices": [choice]}
        if self.include_usage:
            chunk["usage"] = None
        return chunk


class Tally:
    """Usage of one HTTP request: prompt tokens once per prompt, completion and reasoning tokens per completion."""

    def __init__(self) -> None:
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.reasoning_tokens = 0
        self.finish_reasons: list[str] = []

    def finished(self, delta: CompletionDelta) -> None:
        self.completion_tokens += delta.usage.completion_tokens
        self.reasoning_tokens += delta.usage.reasoning_tokens
        self.finish_reasons.append(delta.finish_reason or "abort")

    def usage(self) -> dict[str, Any]:
        return Usage(self.prompt_tokens, self.completion_tokens, self.reasoning_tokens).to_dict()


def token_text(tokenizer, token_id: int) -> str:
    return tokenizer.decode([token_id])


def chat_logprobs(
    token_ids: list[int], logprobs: list[TokenLogprobs] | None, top_n: int, tokenizer
) -> list[dict]:
    """OpenAI's ``logprobs.content`` entries. Tokens the engine forced (thinking budget, tool-call prefix) were not
    sampled and have no entry."""
    entries = []
    for token_id, alternatives in zip(token_ids, logprobs or []):
        if alternatives is None:
            continue
        top = sorted((lp.rank, tid, lp) for tid, lp in alternatives.items() if lp.rank <= top_n)
        entries.append(
            {
                **_token_entry(tokenizer, token_id, alternatives[token_id].logprob),
                "top_logprobs": [_token_entry(tokenizer, tid, lp.logprob) for _, tid, lp in top],
            }
        )
    return entries


def _token_entry(tokenizer, token_id: int, logprob: float) -> dict[str, Any]:
    return {
        "token": token_text(tokenizer, token_id),
        "logprob": logprob,
        "bytes": list(tokenizer.token_bytes(token_id)),
    }


def completion_logprobs(
    token_ids: list[int], logprobs: list[TokenLogprobs] | None, top_n: int, tokenizer, offset: int
) -> dict[str, list]:
    """The legacy completions ``logprobs`` object; forced tokens have null logprobs. ``offset``: text_offset of
    the first token."""
    result: dict[str, list] = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for token_id, alternatives in zip(token_ids, logprobs or []):
        text = token_text(tokenizer, token_id)
        result["tokens"].append(text)
        result["text_offset"].append(offset)
        offset += len(text)
        if alternatives is None:
            result["token_logprobs"].append(None)
            result["top_logprobs"].append(None)
            continue
        result["token_logprobs"].append(alternatives[token_id].logprob)
        top = sorted((lp.rank, tid, lp.logprob) for tid, lp in alternatives.items() if lp.rank <= top_n)
        result["top_logprobs"].append({token_text(tokenizer, tid): logprob for _, tid, logprob in top})
    return result


class Driver:
    """Runs HTTP requests against the engine, within the concurrency limit, with metrics."""

    def __init__(self, async_engine: AsyncEngine, admission: Admission, metrics: Metrics):
        self.async_engine = async_engine
        self.admission = admission
        self.metrics = metrics

    async def run(
        self,
        request: Request,
        streaming: bool,
        submit: Callable[[RequestStream], None],
        responder: Responder,
    ) -> JSONResponse | StreamingResponse:
        """``submit(stream)`` adds the engine requests (ValueError: 400). Nothing is queued when it fails."""
        await self.admission.acquire()
        scope = _Scope(self, responder)
        try:
            submit(scope.stream)
        except ValueError as err:
            scope.close()
            raise from_value_error(err) from None
        except EngineError as err:
            scope.close()
            raise APIError(err.status, str(err), code="engine_error") from None
        except BaseException:
            scope.close()
            raise
        self.metrics.prompt_tokens.inc(responder.tally.prompt_tokens)
        if streaming:
            return StreamingResponse(
                self._events(scope),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                background=BackgroundTask(
                    scope.close
                ),  # also runs when the client left before the first chunk
            )
        watcher = asyncio.create_task(_abort_on_disconnect(request, scope.stream))
        try:
            async for delta in scope.stream.deltas():
                scope.timer.token(len(delta.token_ids))
                responder.add(delta)
        except EngineError as err:
            raise APIError(err.status, str(err), code="engine_error") from None
        finally:
            watcher.cancel()
            scope.close()
        return JSONResponse(responder.response())

    async def _events(self, scope: _Scope) -> AsyncIterator[str]:
        responder = scope.responder
        try:
            try:
                for chunk in responder.start():
                    yield sse(chunk)
                async for delta in scope.stream.deltas():
                    scope.timer.token(len(delta.token_ids))
                    for chunk in responder.chunks(delta):
                        yield sse(chunk)
                for chunk in responder.end():
                    yield sse(chunk)
            except EngineError as err:  # the stream has started: report in the stream, then end it properly
                yield sse(error_body(str(err), "server_error", code="engine_error"))
            except Exception as err:
                logger.exception("error while streaming a response")
                yield sse(error_body(f"internal server error: {type(err).__name__}: {err}", "server_error"))
            yield DONE
        finally:
            scope.close()


class _Scope:
    """One admitted HTTP request; ``close`` (idempotent) aborts what is unfinished, frees the concurrency place and
    records the request's metrics."""

    def __init__(self, driver: Driver, responder: Responder):
        self.driver = driver
        self.responder = responder
        self.stream = driver.async_engine.open()
        self.timer = RequestTimer(driver.metrics)
        self._closed = False

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.stream.abort()
        self.driver.admission.release()
        tally = self.responder.tally
        if self.stream.request_ids:
            aborted = ["abort"] * self.stream.unfinished  # e.g. the client disconnected
            self.timer.finish(tally.finish_reasons + aborted, tally.reasoning_tokens)


async def _abort_on_disconnect(request: Request, stream: RequestStream) -> None:
    """For non-streamed requests: a client that hangs up cancels its generation."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            stream.abort()
            return
