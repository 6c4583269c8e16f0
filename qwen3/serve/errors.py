"""OpenAI error objects and the exception handlers that produce them.

Every failure answers ``{"error": {"message", "type", "param", "code"}}`` with the status OpenAI uses: 400 for a bad
request (malformed JSON, a missing or wrong-typed field, a value out of range, a prompt over the context), 401 for
a missing or wrong API key, 404 for an unknown model or path, 413 for a body over the size limit, 429 when the
server is at its concurrency limit, 500 only for a bug (logged with its traceback).
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger("qwen3.serve")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    503: "server_error",
}
# "messages[2].tool_calls[0].function.name: must be a string" -> the part before ": " names the field.
_PARAM_PREFIX = re.compile(r"^([A-Za-z_][\w.\[\]]*): ")
# "SamplingParams.top_k must be ..." (the engine's checks) -> top_k.
_SAMPLING_FIELD = re.compile(r"^SamplingParams\.([A-Za-z_][\w\[\]]*)[ :]")


class APIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code
        self.headers = headers

    def body(self) -> dict[str, Any]:
        return error_body(
            self.message, ERROR_TYPES.get(self.status, "invalid_request_error"), self.param, self.code
        )

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def error_body(message: str, type: str, param: str | None = None, code: str | int | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def bad_request(message: str, param: str | None = None, code: str | None = None) -> APIError:
    return APIError(400, message, param, code)


def from_value_error(err: ValueError, default_param: str | None = None) -> APIError:
    """A ValueError from the chat layer or the engine (they start their messages with the field's path)."""
    message = str(err)
    match = _SAMPLING_FIELD.match(message) or _PARAM_PREFIX.match(message)
    param = match.group(1) if match else default_param
    if param is not None and param.startswith("SamplingParams."):
        param = param.removeprefix("SamplingParams.")
    return bad_request(message, param)


def from_validation_error(err: ValidationError, body: bytes | str) -> APIError:
    """A pydantic error as a 400 whose ``param`` is the path of the bad field in the request body."""
    errors = err.errors(include_url=False)
    if errors and errors[0]["type"] == "json_invalid":
        return bad_request(f"the body is not valid JSON: {errors[0]['msg']}", code="invalid_json")
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    # Unions report one error per alternative; the one that reached deepest into the input is the most telling.
    best = max(errors, key=lambda e: len(_input_path(e, data)[1]))
    text, path = _input_path(best, data)
    message = best["msg"].removeprefix("Value error, ")
    if not path:
        return bad_request(f"the body must be a JSON object with the request's fields: {message}")
    return bad_request(f"{text}: {message}", text)


def _input_path(error: dict, data: Any) -> tuple[str, list]:
    """The part of a pydantic error's ``loc`` that exists in the input (union member names dropped), as text
    (``tools[0].function.name``) and as a list; a missing field ends the path."""
    loc = error["loc"]
    path: list = []
    node = data
    for i, part in enumerate(loc):
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
        elif error["type"] != "missing" or i != len(loc) - 1:
            continue  # a union member's name such as 'list[int]': not in the input
        path.append(part)
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text, path


def install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, err: APIError) -> JSONResponse:
        return err.response()

    async def request_validation(request: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {"loc": (), "msg": "invalid request"}
        param = ".".join(str(part) for part in first["loc"][1:]) or None
        return bad_request(f"{param or 'request'}: {first['msg']}", param).response()

    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = err.detail if isinstance(err.detail, str) else json.dumps(err.detail)
        if err.status_code == 404:
            message = f"no route {request.method} {request.url.path}"
        code = "not_found" if err.status_code == 404 else None
        return APIError(err.status_code, message, code=code, headers=err.headers).response()

    async def unexpected(request: Request, err: Exception) -> JSONResponse:
        logger.exception("unexpected error in %s %s", request.method, request.url.path)
        body = error_body(
            f"internal server error: {type(err).__name__}: {err}", "server_error", code="internal_error"
        )
        return JSONResponse(body, status_code=500)

    app.add_exception_handler(APIError, api_error)
    app.add_exception_handler(RequestValidationError, request_validation)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected)
