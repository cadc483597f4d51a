"""The worker's HTTP API: OpenAI completions and chat completions, models, health, readiness,
Prometheus metrics and the JSON load report for the router."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tokenfleet_common.load_report import LOAD_PATH
from tokenfleet_worker import serving
from tokenfleet_worker.async_engine import (
    AsyncEngine,
    EngineDraining,
    EngineOverloaded,
    RequestStream,
    SubRequest,
)
from tokenfleet_worker.errors import (
    OpenAIError,
    error_body,
    install_error_handlers,
    model_not_found,
    overloaded,
    unavailable,
)
from tokenfleet_worker.logs import log_event
from tokenfleet_worker.metrics import WorkerMetrics
from tokenfleet_worker.protocol import ChatCompletionRequest, CompletionRequest, ModelCard, ModelList

log = logging.getLogger("tokenfleet_worker.server")
T = TypeVar("T")
DISCONNECT_POLL_S = 0.25


class BodyLimits:
    """Refuse request bodies over `max_bytes` (413) or still arriving after `timeout_s` (408).

    The body is read up front (it is small: JSON requests) and replayed to the app, so both limits
    hold for chunked uploads too. The deadline stops a client that trickles its body in (slowloris)
    from holding a connection and its buffers for ever.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, timeout_s: float) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._reject(scope, send, 413, f"request body over {self.max_bytes} bytes")
            return
        try:
            async with asyncio.timeout(self.timeout_s):
                first = await self._read_body(receive)
        except TimeoutError:
            await self._reject(scope, send, 408, f"request body not received within {self.timeout_s:g} s")
            return
        if first is None:
            await self._reject(scope, send, 413, f"request body over {self.max_bytes} bytes")
            return
        await self.app(scope, _replay([first], receive), send)

    async def _read_body(self, receive: Receive) -> Message | None:
        """The whole body as one message (or the disconnect that cut it short); None when too large."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return None
            if not message.get("more_body", False):
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

    async def _reject(self, scope: Scope, send: Send, status: int, message: str) -> None:
        response = JSONResponse(
            error_body(status, message, code="request_too_large" if status == 413 else "request_timeout"),
            status_code=status,
            headers={"Connection": "close"},  # the rest of the body is never read
        )
        await response(scope, _replay([], _never_receive), send)


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replaying_receive() -> Message:
        return pending.pop(0) if pending else await receive()

    return replaying_receive


async def _never_receive() -> Message:
    return {"type": "http.disconnect"}


async def _until_done_or_disconnected(request: Request, work: Awaitable[T]) -> T:
    """Await `work`, cancelling it if the client goes away (non-streaming requests)."""
    task = asyncio.ensure_future(work)
    while True:
        done, _ = await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if done:
            return task.result()
        if await request.is_disconnected():
            task.cancel()
            raise OpenAIError(400, "client disconnected", code="client_disconnected")


def create_app(
    engine: AsyncEngine,
    *,
    served_model_names: tuple[str, ...],
    metrics: WorkerMetrics | None = None,
    max_body_bytes: int = 4 * 1024 * 1024,
    body_timeout_s: float = 30.0,
) -> FastAPI:
    app = FastAPI(title="tokenfleet worker", docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.add_middleware(BodyLimits, max_bytes=max_body_bytes, timeout_s=body_timeout_s)
    created = int(time.time())

    def reject(reason: str, err: OpenAIError) -> OpenAIError:
        if metrics is not None:
            metrics.reject(reason)
        return err

    def check_model(model: str) -> str:
        if model not in served_model_names:
            raise reject("unknown_model", model_not_found(model))
        return model

    def submit(prefix: str, subs: list[SubRequest], timeout_s: float | None) -> RequestStream:
        try:
            return engine.submit(f"{prefix}-{uuid.uuid4().hex}", subs, timeout_s=timeout_s)
        except EngineDraining as err:
            raise reject("draining", unavailable(str(err))) from None
        except EngineOverloaded as err:
            raise reject("queue_full", overloaded(str(err), err.retry_after_s)) from None

    def refuse_if_draining() -> None:
        if engine.is_draining or not engine.is_running:
            raise reject("draining", unavailable("the worker is draining or not ready"))

    async def respond(
        request: Request,
        stream: RequestStream,
        streamed: Callable[[], AsyncIterator[str]] | None,
        whole: Callable[[], Awaitable[Any]],
    ) -> Response:
        started = time.monotonic()

        def finished(status: int) -> None:
            log_event(
                log,
                "request_finished",
                request_id=stream.request_id,
                status=status,
                duration_s=round(time.monotonic() - started, 4),
                stream=streamed is not None,
            )

        if streamed is not None:

            async def body() -> AsyncIterator[str]:
                try:
                    async for event in streamed():
                        yield event
                finally:
                    engine.release(stream)
                    finished(200)

            return StreamingResponse(
                body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
            )
        try:
            result = await _until_done_or_disconnected(request, whole())
        except OpenAIError as err:
            finished(err.status)
            raise
        finally:
            engine.release(stream)
        finished(200)
        return JSONResponse(result.model_dump(mode="json"))

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        model = check_model(body.model)
        refuse_if_draining()
        # Tokenizing a large prompt takes a while: keep it off the event loop.
        subs = await run_in_threadpool(serving.completion_subrequests, body, engine.tokenizer, engine.config)
        stream = submit("cmpl", subs, body.timeout_s)
        streamed = (lambda: serving.stream_completion(stream, body, model)) if body.stream else None
        return await respond(
            request, stream, streamed, lambda: serving.completion_response(stream, body, model)
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
        model = check_model(body.model)
        refuse_if_draining()
        subs = await run_in_threadpool(serving.chat_subrequests, body, engine.tokenizer, engine.config)
        stream = submit("chatcmpl", subs, body.timeout_s)
        streamed = (lambda: serving.stream_chat(stream, body, model)) if body.stream else None
        return await respond(request, stream, streamed, lambda: serving.chat_response(stream, body, model))

    @app.get("/v1/models")
    async def models() -> dict[str, Any]:
        cards = [
            ModelCard(id=n, created=created, max_model_len=engine.config.max_model_len)
            for n in served_model_names
        ]
        return ModelList(data=cards).model_dump()

    @app.get("/health")
    async def health() -> Response:
        if not engine.is_running:
            return JSONResponse({"status": "engine stopped"}, status_code=503)
        return JSONResponse({"status": "ok", "last_error": engine.last_error})

    @app.get("/ready")
    async def ready() -> Response:
        if engine.is_draining:
            return JSONResponse({"ready": False, "reason": "draining"}, status_code=503)
        if not engine.is_running:
            return JSONResponse({"ready": False, "reason": "engine not running"}, status_code=503)
        return JSONResponse({"ready": True})

    @app.get(LOAD_PATH)
    async def load() -> dict[str, Any]:
        ready_now = engine.is_running and not engine.is_draining
        return engine.current_stats().load_report(draining=engine.is_draining, ready=ready_now).to_dict()

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        if metrics is None:
            return Response("", media_type=CONTENT_TYPE_LATEST)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app
