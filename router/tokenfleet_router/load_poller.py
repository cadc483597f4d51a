"""Polls every worker's `/load` report a few times per second into the load view."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tokenfleet_common.load_report import LOAD_PATH, LoadReport
from tokenfleet_router.load_view import LoadView
from tokenfleet_router.proxy import Proxy, UpstreamFailed
from tokenfleet_router.types import Endpoint


class LoadPoller:
    def __init__(
        self,
        view: LoadView,
        proxy: Proxy,
        interval_s: float = 0.25,
        on_update: Callable[[], None] = lambda: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.view = view
        self.proxy = proxy
        self.interval_s = interval_s
        self.on_update = on_update
        self.clock = clock

    async def poll_one(self, endpoint: Endpoint) -> None:
        polled_at = self.clock()
        try:
            status, data = await self.proxy.get_json(endpoint.url + LOAD_PATH, max(1.0, 4 * self.interval_s))
        except UpstreamFailed:
            return  # the report goes stale, and a stale worker counts as saturated
        if status == 404:
            self.view.record_no_reports(endpoint.name)
            return
        if status != 200:
            return
        try:
            report = LoadReport.from_dict(data)
        except (ValueError, TypeError, AttributeError):
            return
        self.view.record_report(endpoint.name, report, self.clock(), polled_at)

    async def poll_all(self) -> None:
        endpoints = self.view.endpoints
        if endpoints:
            await asyncio.gather(*(self.poll_one(e) for e in endpoints))
            self.on_update()

    async def run(self) -> None:
        while True:
            started = self.clock()
            await self.poll_all()
            await asyncio.sleep(max(0.0, self.interval_s - (self.clock() - started)))
