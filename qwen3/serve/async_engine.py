"""``AsyncEngine``: ``LLMEngine`` driven by one background thread, with an asyncio view for request handlers.

The thread owns the engine: it calls ``step()`` while there is work and sleeps on an event otherwise. Handlers
add requests and abort them from the event loop (``LLMEngine.add_request`` and ``abort`` are thread-safe); every
step's deltas are handed to the event loop with ``loop.call_soon_threadsafe``, one call per HTTP request, into that
request's ``asyncio.Queue``. All concurrent requests share the engine's continuous batch.

One HTTP request is one ``RequestStream``, which may hold several engine requests (a completions request with a
list of prompts) and ends when all their completions have finished. Aborting it (the client disconnected) frees
their cache slots at the engine's next step.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections import defaultdict
from collections.abc import AsyncIterator, Callable

from qwen3.engine.detokenizer import ChatOptions
from qwen3.engine.llm_engine import LLMEngine
from qwen3.engine.outputs import CompletionDelta
from qwen3.engine.sampling_params import SamplingParams

logger = logging.getLogger("qwen3.serve")

StepObserver = Callable[[list[CompletionDelta], int, int], None]  # (deltas, running, waiting)


class EngineError(RuntimeError):
    """The engine failed this request (status 500: alone, or a whole step), or is not running / shutting down (503)."""

    def __init__(self, message: str, status: int = 500):
        super().__init__(message)
        self.status = status


class RequestStream:
    def __init__(self, owner: AsyncEngine, loop: asyncio.AbstractEventLoop):
        self._owner = owner
        self.loop = loop
        self.queue: asyncio.Queue[list[CompletionDelta] | BaseException] = asyncio.Queue()
        self.request_ids: list[str] = []
        self._unfinished = 0

    def add(
        self,
        request_id: str,
        prompt: str | list[int],
        params: SamplingParams,
        chat: ChatOptions | None = None,
    ) -> list[int]:
        """Queue one engine request; returns its prompt token ids. ValueError for a bad request."""
        prompt_ids = self._owner.submit(self, request_id, prompt, params, chat)
        self.request_ids.append(request_id)
        self._unfinished += params.n
        return prompt_ids

    async def deltas(self) -> AsyncIterator[CompletionDelta]:
        """Every delta of every completion, until all have finished. Raises EngineError if the engine failed."""
        while self._unfinished:
            item = await self.queue.get()
            if isinstance(item, BaseException):
                raise item
            for delta in item:
                if delta.finished:
                    self._unfinished -= 1
                if delta.error is not None:  # the engine failed this request alone; the others go on
                    raise EngineError(f"the engine failed this request: {delta.error}")
                yield delta

    @property
    def unfinished(self) -> int:
        """Completions that have not finished yet."""
        return self._unfinished

    @property
    def finished(self) -> bool:
        return self._unfinished == 0

    def abort(self) -> None:
        """Cancel what has not finished (a no-op for finished requests)."""
        if not self.finished:
            self._owner.abort(self.request_ids)


def _put_all(batch: list[tuple[RequestStream, list[CompletionDelta] | BaseException]]) -> None:
    for stream, item in batch:
        stream.queue.put_nowait(item)


class AsyncEngine:
    def __init__(self, engine: LLMEngine, on_step: StepObserver | None = None):
        self.engine = engine
        self.on_step = on_step
        self._streams: dict[str, RequestStream] = {}
        self._remaining: dict[str, int] = {}  # unfinished completions per engine request
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._ids = itertools.count()
        self.last_error: BaseException | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="qwen3-engine", daemon=True)
            self._thread.start()

    def shutdown(self, timeout: float = 30.0) -> None:
        """Fail the requests still open, stop the thread and wait for it (at most ``timeout`` seconds)."""
        self._fail_all(EngineError("the server is shutting down", status=503))
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # -- requests (event loop side) ----------------------------------------------------------------------------
    def open(self) -> RequestStream:
        return RequestStream(self, asyncio.get_running_loop())

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def submit(
        self,
        stream: RequestStream,
        request_id: str,
        prompt: str | list[int],
        params: SamplingParams,
        chat: ChatOptions | None,
    ) -> list[int]:
        if not self.alive:
            raise EngineError("the engine is not running", status=503)
        with self._lock:  # registered before the engine can produce a delta for it
            self._streams[request_id] = stream
            self._remaining[request_id] = params.n
        try:
            prompt_ids = self.engine.add_request(request_id, prompt, params, chat=chat)
        except BaseException:
            with self._lock:
                self._streams.pop(request_id, None)
                self._remaining.pop(request_id, None)
            raise
        self._wake.set()
        return prompt_ids

    def abort(self, request_ids: list[str]) -> None:
        for request_id in request_ids:
            self.engine.abort(request_id)
        self._wake.set()

    @property
    def num_open_requests(self) -> int:
        with self._lock:
            return len(self._streams)

    # -- the engine thread -------------------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            if not self.engine.has_unfinished():
                self._wake.wait(timeout=1.0)
                continue
            try:
                deltas = self.engine.step()
            except Exception as err:  # a bug or out of memory: fail the requests in flight, keep serving
                logger.exception("engine step failed")
                self.last_error = err
                self._fail_all(EngineError(f"the engine failed: {type(err).__name__}: {err}"))
                self._stop.wait(
                    0.1
                )  # the next step frees the aborted requests; do not spin if it fails again
                continue
            self.last_error = None
            self._dispatch(deltas)
            if self.on_step is not None:
                scheduler = self.engine.scheduler
                self.on_step(deltas, len(scheduler.running), len(scheduler.waiting))

    def _dispatch(self, deltas: list[CompletionDelta]) -> None:
        by_stream: dict[RequestStream, list[CompletionDelta]] = defaultdict(list)
        with self._lock:
            for delta in deltas:
                stream = self._streams.get(delta.request_id)
                if stream is None:
                    continue
                by_stream[stream].append(delta)
                if delta.finished:
                    self._remaining[delta.request_id] -= 1
                    if not self._remaining[delta.request_id]:
                        del self._remaining[delta.request_id], self._streams[delta.request_id]
        self._deliver(list(by_stream.items()))

    def _fail_all(self, error: BaseException) -> None:
        with self._lock:
            streams = set(self._streams.values())
            request_ids = list(self._streams)
            self._streams.clear()
            self._remaining.clear()
        for request_id in request_ids:
            self.engine.abort(request_id)
        self._deliver([(stream, error) for stream in streams])

    @staticmethod
    def _deliver(items: list[tuple[RequestStream, list[CompletionDelta] | BaseException]]) -> None:
        """One ``call_soon_threadsafe`` per event loop and step (each call wakes the loop), not one per request."""
        by_loop: dict[asyncio.AbstractEventLoop, list] = defaultdict(list)
        for stream, item in items:
            by_loop[stream.loop].append((stream, item))
        for loop, batch in by_loop.items():
            with contextlib.suppress(RuntimeError):  # a closed event loop: nobody is listening any more
                loop.call_soon_threadsafe(_put_all, batch)
