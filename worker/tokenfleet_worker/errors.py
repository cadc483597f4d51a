"""OpenAI-shaped error bodies and the HTTP status each kind of failure maps to.

Every error the API returns has the body {"error": {"message", "type", "param", "code"}}: 400 bad
input (including FastAPI's 422 validation errors and undecodable JSON), 404 unknown model or path,
408 body not received in time, 413 oversized body, 429 queue full (with Retry-After), 503 draining
or not ready.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import JSONResponse

_TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    405: "invalid_request_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "internal_server_error",
    503: "service_unavailable",
}

_HTTP_CODES = {404: "not_found", 405: "method_not_allowed"}


class OpenAIError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}


def bad_request(message: str, *, param: str | None = None, code: str = "invalid_request") -> OpenAIError:
    return OpenAIError(400, message, code=code, param=param)


def model_not_found(model: str) -> OpenAIError:
    return OpenAIError(404, f"The model `{model}` does not exist.", code="model_not_found", param="model")


def overloaded(message: str, retry_after_s: int) -> OpenAIError:
    return OpenAIError(429, message, code="queue_full", headers={"Retry-After": str(retry_after_s)})


def unavailable(message: str) -> OpenAIError:
    return OpenAIError(503, message, code="unavailable", headers={"Retry-After": "1"})


def error_body(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    return {"error": {"message": message, "type": _TYPES.get(status, "error"), "param": param, "code": code}}


def error_response(err: OpenAIError) -> JSONResponse:
    body = error_body(err.status, err.message, code=err.code, param=err.param)
    return JSONResponse(body, status_code=err.status, headers=err.headers)


def _describe_validation(err: RequestValidationError) -> tuple[str, str | None]:
    problems = []
    param = None
    for item in err.errors():
        location = [str(p) for p in item.get("loc", ()) if p != "body"]
        if item.get("type") == "json_invalid":
            return "the request body is not valid JSON", None
        param = param or (location[0] if location else None)
        where = ".".join(location)
        message = str(item.get("msg", "invalid value")).removeprefix("Value error, ")
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems) or "invalid request", param


def install_error_handlers(app: FastAPI) -> None:
    async def on_openai_error(_: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, OpenAIError)
        return error_response(err)

    async def on_validation_error(_: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, RequestValidationError)
        message, param = _describe_validation(err)
        return error_response(bad_request(message, param=param))

    async def on_http_error(_: Request, err: Exception) -> JSONResponse:
        assert isinstance(err, StarletteHTTPException)
        status = err.status_code if err.status_code in _TYPES else 400
        code = _HTTP_CODES.get(status, "invalid_request")
        return error_response(
            OpenAIError(status, str(err.detail), code=code, headers=dict(err.headers or {}))
        )

    async def on_unexpected(_: Request, err: Exception) -> JSONResponse:
        return error_response(
            OpenAIError(500, f"internal error: {type(err).__name__}", code="internal_error")
        )

    app.add_exception_handler(OpenAIError, on_openai_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)
