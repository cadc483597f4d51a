"""The router's HTTP app: OpenAI endpoints in front, fleet state for people and the operator."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from tokenfleet_router.admission import Admission
from tokenfleet_router.auth import is_authorized
from tokenfleet_router.discovery import Discovery
from tokenfleet_router.dispatch import Dispatcher
from tokenfleet_router.errors import RouterError, error_body, error_response, internal_error_response
from tokenfleet_router.hot_paths import HotPaths
from tokenfleet_router.load_poller import LoadPoller
from tokenfleet_router.load_view import LoadView
from tokenfleet_router.logs import log_event
from tokenfleet_router.metrics import RouterMetrics
from tokenfleet_router.proxy import Proxy, UpstreamFailed
from tokenfleet_router.request_parse import CHAT, COMPLETIONS, ParsedRequest, parse_request
from tokenfleet_router.settings import RouterSettings
from tokenfleet_router.strategies import build_strategy
from tokenfleet_router.types import Endpoint

logger = logging.getLogger("tokenfleet.router")
FORWARDED_HEADERS = ("content-type", "accept", "x-request-id")
BODY_TIMEOUT_S = 30.0  # a client still sending its body after this long is dropped (slowloris)


class RouterState:
    """Everything one router instance owns, built from settings and wired together."""

    def __init__(
        self,
        settings: RouterSettings,
        discovery: Discovery,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.discovery = discovery
        self.clock = clock
        self.metrics = RouterMetrics()
        self.view = LoadView(settings.limits)
        self.strategy = build_strategy(settings.strategy, settings.scorer_weights)
        self.admission = Admission(settings.admission, clock)
        # One aiohttp session carries requests, load polls and model lists alike.
        self.proxy = Proxy(settings.connect_timeout_s, settings.read_timeout_s)
        self.poller = LoadPoller(
            self.view, self.proxy, settings.load_poll_interval_s, self.admission.notify, clock
        )
        self.dispatcher = Dispatcher(
            self.view, self.strategy, self.admission, self.proxy, self.metrics, clock
        )
        self.is_synced = False
        self._tasks: set[asyncio.Task[Any]] = set()

    def on_endpoints(self, endpoints: list[Endpoint]) -> None:
        removed = self.view.set_endpoints(endpoints)
        for name in removed:
            self.strategy.forget_worker(name)
        self.is_synced = True
        self.metrics.workers.set(self.view.num_workers)
        log_event(logger, "workers_changed", workers=self.view.num_workers, removed=len(removed))
        self._spawn(self.poller.poll_all())  # new workers count as saturated until their first report
        self.admission.notify()

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task: asyncio.Task[Any] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        self._spawn(self.discovery.run(self.on_endpoints))
        self._spawn(self.poller.run())
        try:
            yield
        finally:
            for task in list(self._tasks):
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await self.proxy.aclose()

    def fleet(self) -> dict[str, Any]:
        loads = self.view.snapshot(self.clock())
        return {
            "strategy": self.strategy.name,
            "held": self.admission.num_held,
            "workers": len(loads),
            "available_workers": sum(1 for w in loads if w.is_available and not w.is_saturated),
            "in_flight": sum(w.num_in_flight for w in loads),
            "endpoints": [
                {
                    "name": w.name,
                    "url": w.endpoint.url,
                    "in_flight": w.num_in_flight,
                    "tokens_in_flight": w.tokens_in_flight,
                    "waiting": w.num_waiting,
                    "running": w.num_running,
                    "kv_cache_usage": w.kv_cache_usage,
                    "available": w.is_available,
                    "saturated": w.is_saturated,
                }
                for w in loads
            ],
        }

    async def models(self) -> dict[str, Any]:
        """The union of the workers' `/v1/models`, first seen first."""

        async def fetch(endpoint: Endpoint) -> list[dict[str, Any]]:
            try:
                status, body = await self.proxy.get_json(endpoint.url + "/v1/models", 2.0)
                data = body.get("data") if status == 200 else None
            except (UpstreamFailed, AttributeError):
                return []
            return [m for m in data or [] if isinstance(m, dict) and isinstance(m.get("id"), str)]

        models: dict[str, dict[str, Any]] = {}
        for listed in await asyncio.gather(*(fetch(e) for e in self.view.endpoints)):
            for model in listed:
                models.setdefault(model["id"], model)
        return {"object": "list", "data": list(models.values())}


def create_app(
    settings: RouterSettings,
    discovery: Discovery,
    clock: Callable[[], float] = time.monotonic,
    body_timeout_s: float = BODY_TIMEOUT_S,
) -> HotPaths:
    state = RouterState(settings, discovery, clock)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with state.running():
            log_event(logger, "router_started", strategy=settings.strategy)
            yield

    app = FastAPI(title="tokenfleet router", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.router = state

    def authenticate(request: Request) -> None:
        # A plain check in the API routes rather than an HTTP middleware, which costs every request.
        if not is_authorized(request.headers.get("authorization"), settings.api_keys):
            raise RouterError(401, "invalid or missing API key", "invalid_api_key")

    @app.exception_handler(RouterError)
    async def on_router_error(request: Request, exc: RouterError) -> Response:
        return error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def on_http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = "not_found" if exc.status_code == 404 else "method_not_allowed"
        return JSONResponse(error_body(exc.status_code, str(exc.detail), code), status_code=exc.status_code)

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> Response:
        return internal_error_response(exc)

    async def read_body(request: Request) -> bytes:
        too_large = RouterError(
            413, f"request body over {settings.max_body_bytes} bytes", "request_too_large"
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout(body_timeout_s):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > settings.max_body_bytes:  # chunked uploads announce no length
                        raise too_large
                    chunks.append(chunk)
        except ClientDisconnect:
            raise RouterError(
                400, "client disconnected while sending the body", "client_disconnected"
            ) from None
        except TimeoutError:
            raise RouterError(
                408, f"request body not received within {body_timeout_s:g} s", "request_timeout"
            ) from None
        return b"".join(chunks)

    def parse(kind: str, body: bytes, request: Request) -> ParsedRequest:
        try:
            return parse_request(
                kind, body, request.headers.get(settings.session_header), settings.prefix_block_bytes
            )
        except (ValueError, OverflowError, RecursionError) as e:
            # What the parser could not even inspect (lone surrogates, token ids beyond 32 bits,
            # absurd nesting or digits) no worker can serve either.
            raise RouterError(
                400, f"the request body cannot be processed ({type(e).__name__})", "invalid_request_error"
            ) from None

    async def forward(request: Request, kind: str, path: str) -> Response:
        authenticate(request)
        body = await read_body(request)
        parsed = parse(kind, body, request)
        headers = {k: v for k in FORWARDED_HEADERS if (v := request.headers.get(k)) is not None}
        if parsed.info.session_id:
            headers[settings.session_header] = parsed.info.session_id
        return await state.dispatcher.dispatch(path, body, headers, parsed.info, parsed.is_stream)

    async def completions(request: Request) -> Response:
        return await forward(request, COMPLETIONS, "/v1/completions")

    async def chat_completions(request: Request) -> Response:
        return await forward(request, CHAT, "/v1/chat/completions")

    # POSTs to the completion endpoints bypass FastAPI entirely (see hot_paths.py); these routes
    # only make FastAPI answer other methods on them with 405.
    app.add_route("/v1/completions", completions, methods=["POST"])
    app.add_route("/v1/chat/completions", chat_completions, methods=["POST"])

    @app.get("/v1/models")
    async def models(request: Request) -> dict[str, Any]:
        authenticate(request)
        return await state.models()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready() -> Response:
        # Ready with zero workers too: the router must take requests to hold them while scaling from zero.
        if not state.is_synced:
            return JSONResponse({"status": "discovering"}, status_code=503)
        return JSONResponse({"status": "ready", "workers": state.view.num_workers})

    @app.get("/fleet")
    async def fleet() -> dict[str, Any]:
        return state.fleet()

    @app.get("/metrics")
    async def metrics() -> Response:
        state.metrics.held.set(state.admission.num_held)
        return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return HotPaths(app, {"/v1/completions": completions, "/v1/chat/completions": chat_completions})
