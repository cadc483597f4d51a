"""Forwarding one request to one worker over an injected `httpx.AsyncClient`.

Nothing reaches the client until the worker has produced a complete answer (non-streaming) or a
first complete SSE event (streaming), so every failure before that point is reported as
`UpstreamFailed` and may be retried elsewhere. After it, `relay` passes events through
unchanged, whole events only, and turns a failure into one clean SSE error event that ends the
stream, so the client never sees half an event, a hang or a repeated answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

import httpx

RETRYABLE_STATUS = frozenset({429, 503})  # the worker is full or draining: try another
_EVENT_ENDS = (b"\n\n", b"\r\n\r\n")


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
    response: httpx.Response
    first_events: bytes  # at least one whole SSE event, already read
    rest: bytes  # bytes after them, not yet a whole event
    chunks: AsyncIterator[bytes]


def split_events(buffer: bytes) -> tuple[bytes, bytes]:
    """(whole SSE events, the incomplete rest)."""
    end = max((buffer.rfind(sep) + len(sep) if sep in buffer else 0) for sep in _EVENT_ENDS)
    return buffer[:end], buffer[end:]


def error_event(message: str, code: str = "upstream_failed") -> bytes:
    body = {"error": {"message": message, "type": "api_error", "param": None, "code": code}}
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def _buffered(response: httpx.Response, body: bytes) -> BufferedReply:
    return BufferedReply(
        status=response.status_code,
        body=body,
        content_type=response.headers.get("content-type", "application/json"),
        retry_after=response.headers.get("retry-after"),
    )


class Proxy:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client

    async def call(self, url: str, body: bytes, headers: Mapping[str, str]) -> BufferedReply:
        """A whole non-streaming answer; UpstreamFailed if the worker fails or is full/draining."""
        try:
            response = await self.client.post(url, content=body, headers=dict(headers))
        except httpx.HTTPError as e:
            raise UpstreamFailed(type(e).__name__) from e
        reply = _buffered(response, response.content)
        if reply.status in RETRYABLE_STATUS:
            raise UpstreamFailed(f"status {reply.status}", reply)
        return reply

    async def open_stream(
        self, url: str, body: bytes, headers: Mapping[str, str]
    ) -> OpenStream | BufferedReply:
        """The stream with its first whole event read, or the worker's error reply when not 200."""
        request = self.client.build_request("POST", url, content=body, headers=dict(headers))
        try:
            response = await self.client.send(request, stream=True)
        except httpx.HTTPError as e:
            raise UpstreamFailed(type(e).__name__) from e
        try:
            if response.status_code != 200:
                reply = _buffered(response, await response.aread())
                if reply.status in RETRYABLE_STATUS:
                    raise UpstreamFailed(f"status {reply.status}", reply)
                return reply
            chunks = response.aiter_raw()
            buffer = b""
            async for chunk in chunks:
                buffer += chunk
                events, rest = split_events(buffer)
                if events:
                    return OpenStream(response, events, rest, chunks)
            if buffer:  # a short answer without a trailing blank line
                return OpenStream(response, buffer, b"", chunks)
            raise UpstreamFailed("empty stream")
        except httpx.HTTPError as e:
            await response.aclose()
            raise UpstreamFailed(type(e).__name__) from e
        except BaseException:
            await response.aclose()
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
            except httpx.HTTPError as e:
                yield error_event(
                    f"the worker failed mid-stream ({type(e).__name__}); the answer is incomplete"
                )
                return
            if buffer:
                yield buffer
        finally:
            await stream.response.aclose()
