"""One request's life in the router: admit, pick a worker, forward, retry once, account.

It ties the load view, strategy, admission and proxy together; the pieces each stay simple.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

from fastapi import Response
from fastapi.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from tokenfleet_router.admission import Admission, AdmissionRejected, Verdict
from tokenfleet_router.errors import RouterError
from tokenfleet_router.load_view import LoadView
from tokenfleet_router.logs import log_event
from tokenfleet_router.metrics import RouterMetrics
from tokenfleet_router.proxy import BufferedReply, OpenStream, Proxy, UpstreamFailed
from tokenfleet_router.strategies import Route, Strategy
from tokenfleet_router.types import RequestInfo

MAX_ATTEMPTS = 2  # the first try and one retry on another worker
logger = logging.getLogger("tokenfleet.router.dispatch")


class Dispatcher:
    def __init__(
        self,
        view: LoadView,
        strategy: Strategy,
        admission: Admission,
        proxy: Proxy,
        metrics: RouterMetrics,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.view = view
        self.strategy = strategy
        self.admission = admission
        self.proxy = proxy
        self.metrics = metrics
        self.clock = clock

    def try_pick(self, info: RequestInfo, excluded: set[str]) -> Route | None:
        candidates = [w for w in self.view.snapshot(self.clock()) if w.name not in excluded]
        return self.strategy.route(info, candidates)

    async def _acquire(self, info: RequestInfo, excluded: set[str]) -> Route:
        if excluded:  # a retry never waits: the client has waited once already
            picked = self.try_pick(info, excluded)
            if picked is not None:
                return picked
            others = [w for w in self.view.snapshot(self.clock()) if w.name not in excluded]
            if others:  # other workers exist but are full: overload, not an outage
                raise RouterError(
                    429, "all other workers are busy; retry later", "overloaded", retry_after_s=1
                )
            raise RouterError(503, "no other worker could take the request", "no_capacity", retry_after_s=1)
        try:
            return await self.admission.acquire(
                lambda: self.try_pick(info, excluded), lambda: self.view.num_workers
            )
        except AdmissionRejected as e:
            if e.verdict is Verdict.NO_CAPACITY:
                raise RouterError(
                    503, "no workers became ready in time", "no_capacity", retry_after_s=e.retry_after_s
                ) from None
            raise RouterError(
                429, "all workers are busy; retry later", "overloaded", retry_after_s=e.retry_after_s
            ) from None
        finally:
            self.metrics.held.set(self.admission.num_held)  # also refreshed at every scrape

    def _finish(
        self, route: Route, info: RequestInfo, status: int, started: float, is_prefilled: bool = False
    ) -> None:
        worker = route.worker.name
        self.view.end(worker, info.num_tokens, 0 if is_prefilled else route.prefill_tokens)
        self.admission.notify()
        self.metrics.requests.labels(status=str(status), worker=worker).inc()
        self.metrics.latency.observe(self.clock() - started)

    async def dispatch(
        self, path: str, body: bytes, headers: Mapping[str, str], info: RequestInfo, is_stream: bool
    ) -> Response:
        started = self.clock()
        excluded: set[str] = set()
        last_reply: BufferedReply | None = None
        for attempt in range(MAX_ATTEMPTS):
            try:
                route = await self._acquire(info, excluded)
            except RouterError as e:
                if last_reply is not None:
                    break  # pass the worker's own 429/503 through rather than a vaguer one
                self.metrics.requests.labels(status=str(e.status), worker="none").inc()
                raise
            self.metrics.decisions.labels(strategy=self.strategy.name).inc()
            worker = route.worker
            self.view.begin(worker.name, info.num_tokens, route.prefill_tokens, self.clock())
            url = worker.endpoint.url + path
            try:
                if is_stream:
                    opened = await self.proxy.open_stream(url, body, headers)
                    if isinstance(opened, OpenStream):
                        self.metrics.ttft.observe(self.clock() - started)
                        # The first event carries the first token: the prompt is prefilled.
                        self.view.first_token(worker.name, route.prefill_tokens)
                        return self._stream_response(opened, route, info, started)
                    reply = opened
                else:
                    reply = await self.proxy.call(url, body, headers)
                self.metrics.ttft.observe(self.clock() - started)
                self._finish(route, info, reply.status, started)
                return _response(reply)
            except UpstreamFailed as e:
                self._finish(route, info, e.reply.status if e.reply else 502, started)
                self.view.mark_failed(worker.name, self.clock())
                excluded.add(worker.name)
                last_reply = e.reply or last_reply
                log_event(logger, "upstream_failed", worker=worker.name, reason=e.reason, attempt=attempt + 1)
                if attempt + 1 < MAX_ATTEMPTS:
                    self.metrics.retries.inc()
            except BaseException:
                # Cancelled (client gone, shutdown) or a bug: the worker's count must still come down.
                self._finish(route, info, 499, started)
                raise
        if last_reply is not None:
            return _response(last_reply)
        self.metrics.requests.labels(status="503", worker="none").inc()
        raise RouterError(
            503, "the workers failed to answer; retry later", "upstream_failed", retry_after_s=1
        )

    def _stream_response(
        self, opened: OpenStream, route: Route, info: RequestInfo, started: float
    ) -> Response:
        is_finished = False

        async def close() -> None:
            nonlocal is_finished
            if not is_finished:
                is_finished = True
                self._finish(route, info, 200, started, is_prefilled=True)
                await opened.aclose()  # also when the client left before the body started

        return _RelayResponse(
            self.proxy.relay(opened),
            close,
            status_code=200,
            media_type=opened.content_type,
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )


class _RelayResponse(StreamingResponse):
    """A streaming response that always runs `on_close`, however the stream ends."""

    def __init__(self, content: AsyncIterator[bytes], on_close: Callable[[], Awaitable[None]], **kwargs: Any):
        super().__init__(content, **kwargs)
        self.on_close = on_close

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.on_close()


def _response(reply: BufferedReply) -> Response:
    headers = {"Retry-After": reply.retry_after} if reply.retry_after else None
    return Response(reply.body, status_code=reply.status, media_type=reply.content_type, headers=headers)
