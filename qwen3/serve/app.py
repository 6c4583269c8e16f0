"""``create_app(engine, config)``: the FastAPI application.

Routes: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models`` (and ``/v1/models/{name}``),
``GET /health``, ``GET /metrics``. The engine thread starts with the app's lifespan and stops with it.
"""

from __future__ import annotations

import logging
import time
import uuid
from contextlib import asynccontextmanager
from typing import TypeVar

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from qwen3.engine.llm_engine import LLMEngine
from qwen3.serve.async_engine import AsyncEngine, RequestStream
from qwen3.serve.chat import ChatResponder, plan_chat
from qwen3.serve.completions import CompletionResponder, plan_completion
from qwen3.serve.config import ServerConfig
from qwen3.serve.errors import APIError, from_validation_error, from_value_error, install_error_handlers
from qwen3.serve.limits import Admission, BodyLimitMiddleware, check_api_key
from qwen3.serve.metrics import HTTPMetricsMiddleware, Metrics
from qwen3.serve.protocol import ChatCompletionRequest, CompletionRequest, OpenAIModel
from qwen3.serve.responses import Driver

logger = logging.getLogger("qwen3.serve")
RequestModel = TypeVar("RequestModel", bound=OpenAIModel)


class Server:
    """What the route handlers share (``app.state.server``)."""

    def __init__(self, engine: LLMEngine, config: ServerConfig):
        self.engine = engine
        self.config = config
        self.tokenizer = engine.tokenizer
        self.max_model_len = engine.max_model_len
        self.metrics = Metrics()
        self.async_engine = AsyncEngine(engine, on_step=self.metrics.observe_step)
        self.admission = Admission(config.max_concurrent_requests, config.max_queue)
        self.driver = Driver(self.async_engine, self.admission, self.metrics)
        self.created = int(time.time())

    def model_name(self, requested: str | None) -> str:
        if requested is None:
            return self.config.model_name
        if requested not in self.config.served_model_names:
            raise APIError(
                404,
                f"the model {requested!r} does not exist; this server serves "
                f"{', '.join(map(repr, self.config.served_model_names))}",
                "model",
                "model_not_found",
            )
        return requested

    def model_card(self, name: str) -> dict:
        return {
            "id": name,
            "object": "model",
            "created": self.created,
            "owned_by": "qwen3",
            "root": self.config.model_path or name,
            "max_model_len": self.max_model_len,
        }


async def read_body(request: Request, model: type[RequestModel]) -> RequestModel:
    body = await request.body()
    try:
        return model.model_validate_json(body)
    except ValidationError as err:
        raise from_validation_error(err, body) from None


def create_app(engine: LLMEngine, config: ServerConfig | None = None) -> FastAPI:
    config = config or ServerConfig()
    server = Server(engine, config)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        server.async_engine.start()
        try:
            yield
        finally:
            server.async_engine.shutdown()

    app = FastAPI(title="qwen3", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.server = server
    app.add_middleware(BodyLimitMiddleware, max_bytes=config.max_body_bytes)
    app.add_middleware(HTTPMetricsMiddleware, metrics=server.metrics)
    install_error_handlers(app)

    async def authorize(request: Request) -> None:
        check_api_key(request.headers.get("authorization"), config.api_key)

    v1 = APIRouter(prefix="/v1", dependencies=[Depends(authorize)])

    @v1.get("/models")
    async def list_models() -> dict:
        return {"object": "list", "data": [server.model_card(name) for name in config.served_model_names]}

    @v1.get("/models/{name:path}")
    async def get_model(name: str) -> dict:
        return server.model_card(server.model_name(name))

    @v1.post("/chat/completions")
    async def chat_completions(request: Request):
        body = await read_body(request, ChatCompletionRequest)
        model = server.model_name(body.model)
        # Rendering and tokenising a long conversation takes a while: off the event loop, which serves the streams.
        plan = await run_in_threadpool(plan_chat, body, config, server.tokenizer, server.max_model_len)
        response_id = f"chatcmpl-{uuid.uuid4().hex}"
        responder = ChatResponder(
            response_id,
            model,
            body.n,
            plan.params.logprobs,
            body.include_usage,
            server.tokenizer,
            len(plan.prompt_ids),
        )

        def submit(stream: RequestStream) -> None:
            stream.add(response_id, plan.prompt_ids, plan.params, plan.options)

        return await server.driver.run(request, body.stream, submit, responder)

    @v1.post("/completions")
    async def completions(request: Request):
        body = await read_body(request, CompletionRequest)
        model = server.model_name(body.model)
        plan = await run_in_threadpool(
            plan_completion, body, config, server.tokenizer, server.max_model_len, engine.default_params
        )
        response_id = f"cmpl-{uuid.uuid4().hex}"
        request_ids = [f"{response_id}-{i}" for i in range(len(plan.prompts))]
        responder = CompletionResponder(
            response_id, model, plan, request_ids, body.echo, body.include_usage, server.tokenizer
        )

        def submit(stream: RequestStream) -> None:
            for index, (request_id, prompt) in enumerate(zip(request_ids, plan.prompts)):
                try:
                    stream.add(request_id, prompt, plan.params)
                except ValueError as err:
                    raise from_value_error(
                        err, "prompt" if len(plan.prompts) == 1 else f"prompt[{index}]"
                    ) from None

        return await server.driver.run(request, body.stream, submit, responder)

    app.include_router(v1)

    @app.get("/health")
    async def health() -> Response:
        if not server.async_engine.alive:
            return JSONResponse({"status": "engine not running"}, status_code=503)
        if server.async_engine.last_error is not None:
            return JSONResponse(
                {"status": f"engine failing: {server.async_engine.last_error}"}, status_code=503
            )
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        server.metrics.queued.set(server.admission.queued)
        return Response(server.metrics.exposition(), media_type=server.metrics.content_type)

    return app
