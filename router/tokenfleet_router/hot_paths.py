"""The router's ASGI entry point: the two completion endpoints go straight to their handler,
everything else (models, health, metrics, lifespan) to the FastAPI app.

Why: the completion endpoints are the router's whole job, and FastAPI/Starlette wrap every
request in six middleware layers and a route search before it reaches a handler. In the overhead
benchmark that wrapping was about a sixth of the router's CPU a request, and on a busy node CPU
is latency. The handlers keep the same contract: RouterError becomes its OpenAI-style answer, any
other exception a logged 500 in the same shape.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tokenfleet_router.errors import RouterError, error_response, internal_error_response

Handler = Callable[[Request], Awaitable[Response]]


class HotPaths:
    def __init__(self, app: ASGIApp, posts: Mapping[str, Handler]) -> None:
        self.app = app
        self.posts = dict(posts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.posts.get(scope["path"]) if scope["type"] == "http" else None
        if handler is None or scope["method"] != "POST":
            await self.app(scope, receive, send)  # other methods get FastAPI's 405
            return
        response = await self._answer(handler, Request(scope, receive))
        await response(scope, receive, send)

    @staticmethod
    async def _answer(handler: Handler, request: Request) -> Response:
        try:
            return await handler(request)
        except RouterError as e:
            return error_response(e)
        except Exception as e:
            return internal_error_response(e)
