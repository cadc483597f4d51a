"""OpenAI-style error bodies and the router's own request errors."""

from __future__ import annotations

import logging
from typing import Any

from fastapi.responses import JSONResponse

from tokenfleet_router.logs import log_event

logger = logging.getLogger("tokenfleet.router")

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    408: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


class RouterError(Exception):
    """A request the router answers itself, with an HTTP status and an OpenAI error body."""

    def __init__(
        self,
        status: int,
        message: str,
        code: str,
        param: str | None = None,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param
        self.retry_after_s = retry_after_s


def error_body(status: int, message: str, code: str, param: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "message": message,
            "type": ERROR_TYPES.get(status, "api_error"),
            "param": param,
            "code": code,
        }
    }


def error_response(error: RouterError) -> JSONResponse:
    headers = {"Retry-After": str(error.retry_after_s)} if error.retry_after_s is not None else None
    return JSONResponse(
        error_body(error.status, error.message, error.code, error.param),
        status_code=error.status,
        headers=headers,
    )


def internal_error_response(error: Exception) -> JSONResponse:
    """A bug, not the client's fault: logged, and answered in the OpenAI shape, both naming only the
    exception's type (its message could quote the request)."""
    log_event(logger, "internal_error", level=logging.ERROR, error=type(error).__name__)
    return JSONResponse(
        error_body(500, f"internal error: {type(error).__name__}", "internal_error"), status_code=500
    )
