"""The proxy: its pure parts, and its I/O against a real server on loopback (and real workers in
test_app.py and test_dispatch.py)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from tokenfleet_router.proxy import OpenStream, Proxy, UpstreamFailed, error_event, split_events


@pytest.mark.unit
@pytest.mark.parametrize(
    ("buffer", "events", "rest"),
    [
        (b"", b"", b""),
        (b"data: {", b"", b"data: {"),
        (b"data: 1\n\n", b"data: 1\n\n", b""),
        (b"data: 1\n\ndata: 2\n\ndata: 3", b"data: 1\n\ndata: 2\n\n", b"data: 3"),
        (b"data: 1\r\n\r\ndata: 2", b"data: 1\r\n\r\n", b"data: 2"),
        (b"data: 1\n", b"", b"data: 1\n"),
    ],
)
def test_split_events(buffer: bytes, events: bytes, rest: bytes) -> None:
    assert split_events(buffer) == (events, rest)


@pytest.mark.unit
def test_error_event_is_one_openai_shaped_sse_event() -> None:
    event = error_event("worker died")
    assert event.startswith(b"data: ") and event.endswith(b"\n\n") and event.count(b"\n\n") == 1
    body = json.loads(event[len(b"data: ") :])
    assert body["error"]["message"] == "worker died"
    assert set(body["error"]) >= {"message", "type", "code"}


# The proxy's own I/O against a real HTTP server on a loopback port (no mocks): the retry
# boundary (before the first byte) and the clean end of a stream that breaks mid-way.


@contextlib.asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def fake_worker() -> web.Application:
    async def ok(request: web.Request) -> web.Response:
        return web.json_response({"echo": (await request.read()).decode()})

    async def draining(request: web.Request) -> web.Response:
        return web.json_response({"error": "draining"}, status=503, headers={"Retry-After": "2"})

    async def stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: 1\n\ndata: 2")
        await response.write(b"\n\ndata: [DONE]\n\n")
        await response.write_eof()
        return response

    async def broken_stream(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b"data: 1\n\ndata: half")
        assert request.transport is not None
        request.transport.close()  # the worker dies mid-stream: the chunked body never ends
        return response

    app = web.Application()
    app.add_routes(
        [
            web.post("/ok", ok),
            web.post("/draining", draining),
            web.post("/stream", stream),
            web.post("/broken", broken_stream),
        ]
    )
    return app


async def test_call_returns_the_whole_answer_byte_for_byte() -> None:
    proxy = Proxy(connect_timeout_s=10.0)  # generous: the test machine may be busy
    try:
        async with serving(fake_worker()) as url:
            reply = await proxy.call(url + "/ok", b'{"a": 1}', {"content-type": "application/json"})
    finally:
        await proxy.aclose()
    assert reply.status == 200 and json.loads(reply.body) == {"echo": '{"a": 1}'}
    assert reply.content_type.startswith("application/json")


async def test_a_draining_worker_or_a_refused_connection_is_retryable() -> None:
    proxy = Proxy(connect_timeout_s=1.0)
    try:
        async with serving(fake_worker()) as url:
            with pytest.raises(UpstreamFailed) as draining:
                await proxy.call(url + "/draining", b"{}", {})
        with pytest.raises(UpstreamFailed) as refused:  # the server is gone now
            await proxy.call(url + "/ok", b"{}", {})
    finally:
        await proxy.aclose()
    assert draining.value.reply is not None and draining.value.reply.status == 503
    assert draining.value.reply.retry_after == "2"
    assert refused.value.reply is None


async def test_stream_passes_whole_events_through() -> None:
    proxy = Proxy(connect_timeout_s=10.0)  # generous: the test machine may be busy
    try:
        async with serving(fake_worker()) as url:
            opened = await proxy.open_stream(url + "/stream", b"{}", {})
            assert isinstance(opened, OpenStream)
            assert opened.first_events.startswith(b"data: 1\n\n")  # whole events only
            assert opened.content_type == "text/event-stream"
            relayed = b"".join([chunk async for chunk in proxy.relay(opened)])
    finally:
        await proxy.aclose()
    assert relayed == b"data: 1\n\ndata: 2\n\ndata: [DONE]\n\n"


async def test_a_stream_broken_mid_way_ends_with_one_error_event() -> None:
    proxy = Proxy(connect_timeout_s=10.0)  # generous: the test machine may be busy
    try:
        async with serving(fake_worker()) as url:
            opened = await proxy.open_stream(url + "/broken", b"{}", {})
            assert isinstance(opened, OpenStream)
            chunks = [chunk async for chunk in proxy.relay(opened)]
    finally:
        await proxy.aclose()
    assert chunks[0] == b"data: 1\n\n"
    assert b"data: half" not in b"".join(chunks)  # never half an event
    assert json.loads(chunks[-1][len(b"data: ") :])["error"]["code"] == "upstream_failed"
