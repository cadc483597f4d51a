from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from tokenfleet_router.discovery import FileDiscovery, StaticDiscovery, endpoints_from_urls
from tokenfleet_router.types import Endpoint


@pytest.mark.unit
def test_endpoints_from_urls_cleans_and_dedupes() -> None:
    assert endpoints_from_urls([" http://a:1/ ", "", "http://a:1", "https://b:2"]) == [
        Endpoint("http://a:1", "http://a:1"),
        Endpoint("https://b:2", "https://b:2"),
    ]
    with pytest.raises(ValueError):
        endpoints_from_urls(["a:1"])


async def test_static_discovery_reports_once() -> None:
    seen: list[list[Endpoint]] = []
    task = asyncio.create_task(StaticDiscovery(["http://a:1"]).run(seen.append))
    await asyncio.sleep(0.01)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    assert seen == [[Endpoint("http://a:1", "http://a:1")]]


async def test_file_discovery_follows_the_file(tmp_path: Path) -> None:
    path = tmp_path / "workers"
    seen: list[list[str]] = []
    task = asyncio.create_task(
        FileDiscovery(path, interval_s=0.02).run(lambda e: seen.append([x.url for x in e]))
    )
    try:
        await asyncio.sleep(0.05)
        path.write_text("http://a:1\nhttp://b:1\n")
        await asyncio.sleep(0.1)
        path.write_text("http://b:1")
        await asyncio.sleep(0.1)
        path.write_text("not a url")  # a broken edit keeps the last good list
        await asyncio.sleep(0.1)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert seen == [[], ["http://a:1", "http://b:1"], ["http://b:1"]]
