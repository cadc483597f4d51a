"""Forwarding one request to one worker over an aiohttp client session (plus the small GETs of
load reports and model lists, over the same session).

Nothing reaches the client until the worker has produced a complete answer (non-streaming) or a
first complete SSE event (streaming), so every failure before that point is reported as
`UpstreamFailed` and may be retried elsewhere. After it, `relay` passes events through
unchanged, whole events only, and turns a failure into one clean SSE error event that ends the
stream, so the client never sees half an event, a hang or a repeated answer.

Why aiohttp rather than httpx for this hop: it is the router's hot path, and aiohttp's client
(C HTTP parser) spent about a third of the CPU a request that httpx/httpcore did against a sim
worker here; on a busy node that CPU is latency. The session is made lazily on first use, since
aiohttp wants one made inside the running event loop.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

RETRYABLE_STATUS = frozenset({429, 503})  # the worker is full or draining: try another
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n")
# What a broken or silent worker raises: connection errors, truncated bodies, read timeouts.
_UPSTREAM_ERRORS = (aiohttp.ClientError, TimeoutError)


@dataclass(frozen=True)
class BufferedReply:
    status: int
    body: bytes
    content_type: str
    retry_after: str | None = None


class UpstreamFailed(Exception):
    """The worker failed before any byte reached the client; `reply` is its answer, if it sent one."""

    def __init__(self, reason: str, reply: BufferedReply | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.reply = reply


@dataclass
class OpenStream:
    response: aiohttp.ClientResponse
    first_events: bytes  # at least one whole SSE event, already read
    rest: bytes  # bytes after them, not yet a whole event
    chunks: AsyncIterator[bytes]

    @property
    def content_type(self) -> str:
        return self.response.headers.get("content-type", "text/event-stream")

    async def aclose(self) -> None:
        # Closing (not releasing) drops the connection when the body was not read to the end, so a
        # half-read stream is never reused for the next request.
        self.response.close()


def split_events(buffer: bytes) -> tuple[bytes, bytes]:
    """(whole SSE events, the incomplete rest)."""
    end = max((buffer.rfind(sep) + len(sep) if sep in buffer else 0) for sep in _EVENT_ENDS)
    return buffer[:end], buffer[end:]


def error_event(message: str, code: str = "upstream_failed") -> bytes:
    body = {"error": {"message": message, "type": "api_error", "param": None, "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _buffered(response: aiohttp.ClientResponse, body: bytes) -> BufferedReply:
    return BufferedReply(
        status=response.status,
        body=body,
        content_type=response.headers.get("content-type", "application/json"),
        retry_after=response.headers.get("retry-after"),
    )


class Proxy:
    def __init__(
        self, connect_timeout_s: float = 2.0, read_timeout_s: float = 300.0, max_connections: int = 4096
    ) -> None:
        # No total timeout: a long answer may stream for minutes; only silence is an error.
        self.timeout = aiohttp.ClientTimeout(total=None, connect=connect_timeout_s, sock_read=read_timeout_s)
        self.max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self.max_connections, limit_per_host=0),
                timeout=self.timeout,
                auto_decompress=False,  # bytes pass through as the worker sent them
                cookie_jar=aiohttp.DummyCookieJar(),  # workers set no cookies; skip the jar's work
                skip_auto_headers=("User-Agent", "Accept-Encoding"),
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, url: str, timeout_s: float) -> tuple[int, Any]:
        """(status, parsed JSON body or None) of a small GET (load reports, model lists)."""
        try:
            async with self._client().get(url, timeout=aiohttp.ClientTimeout(total=timeout_s)) as response:
                body = await response.read()
        except _UPSTREAM_ERRORS as e:
            raise UpstreamFailed(type(e).__name__) from e
        try:
            return response.status, json.loads(body)
        except ValueError:  # not JSON (or not UTF-8): the caller sees only the status
            return response.status, None

    async def call(self, url: str, body: bytes, headers: Mapping[str, str]) -> BufferedReply:
        """A whole non-streaming answer; UpstreamFailed if the worker fails or is full/draining."""
        try:
            async with self._client().post(url, data=body, headers=headers) as response:
                reply = _buffered(response, await response.read())
        except _UPSTREAM_ERRORS as e:
            raise UpstreamFailed(type(e).__name__) from e
        if reply.status in RETRYABLE_STATUS:
            raise UpstreamFailed(f"status {reply.status}", reply)
        return reply

    async def open_stream(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> OpenStream | BufferedReply:
        """The stream with its first whole event read, or the worker's error reply when not 200."""
        try:
            response = await self._client().post(url, data=body, headers=headers)
        except _UPSTREAM_ERRORS as e:
            raise UpstreamFailed(type(e).__name__) from e
        try:
            if response.status != 200:
                reply = _buffered(response, await response.read())
                response.release()
                if reply.status in RETRYABLE_STATUS:
                    raise UpstreamFailed(f"status {reply.status}", reply)
                return reply
            chunks = response.content.iter_any()
            buffer = b""
            async for chunk in chunks:
                buffer += chunk
                events, rest = split_events(buffer)
                if events:
                    return OpenStream(response, events, rest, chunks)
            if buffer:  # a short answer without a trailing blank line
                return OpenStream(response, buffer, b"", chunks)
            raise UpstreamFailed("empty stream")
        except _UPSTREAM_ERRORS as e:
            response.close()
            raise UpstreamFailed(type(e).__name__) from e
        except BaseException:
            response.close()
            raise

    @staticmethod
    async def relay(stream: OpenStream) -> AsyncIterator[bytes]:
        """Whole events of an opened stream; one error event and the end if the worker fails."""
        try:
            yield stream.first_events
            buffer = stream.rest
            try:
                async for chunk in stream.chunks:
                    buffer += chunk
                    events, buffer = split_events(buffer)
                    if events:
                        yield events
            except _UPSTREAM_ERRORS as e:
                yield error_event(
                    f"the worker failed mid-stream ({type(e).__name__}); the answer is incomplete"
                )
                return
            if buffer:
                yield buffer
        finally:
            await stream.aclose()
