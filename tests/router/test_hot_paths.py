"""The ASGI entry that sends completion POSTs past FastAPI: what it hands on and how it fails."""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tokenfleet_router.errors import RouterError
from tokenfleet_router.hot_paths import HotPaths


def _app() -> HotPaths:
    inner = FastAPI()

    @inner.get("/v1/completions")
    async def listed() -> dict[str, str]:
        return {"served_by": "fastapi"}

    async def echo(request: Request) -> Response:
        return JSONResponse({"served_by": "hot path", "body": (await request.body()).decode()})

    async def refuse(request: Request) -> Response:
        raise RouterError(429, "busy", "overloaded", retry_after_s=3)

    async def crash(request: Request) -> Response:
        raise KeyError("secret prompt text")

    return HotPaths(inner, {"/v1/completions": echo, "/refuse": refuse, "/crash": crash})


def _call(method: str, path: str, body: bytes = b"") -> httpx.Response:
    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=_app())
        async with httpx.AsyncClient(transport=transport, base_url="http://router") as client:
            return await client.request(method, path, content=body)

    return asyncio.run(go())


def test_post_goes_to_the_handler_with_its_body() -> None:
    response = _call("POST", "/v1/completions", b'{"prompt": "hi"}')
    assert response.json() == {"served_by": "hot path", "body": '{"prompt": "hi"}'}


def test_other_methods_and_paths_go_to_the_inner_app() -> None:
    assert _call("GET", "/v1/completions").json() == {"served_by": "fastapi"}
    assert _call("POST", "/nowhere").status_code == 404


def test_router_error_becomes_its_openai_answer() -> None:
    response = _call("POST", "/refuse")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert response.json()["error"]["code"] == "overloaded"


def test_unexpected_error_is_a_500_that_does_not_quote_the_request() -> None:
    response = _call("POST", "/crash")
    assert response.status_code == 500
    assert response.json()["error"]["code"] == "internal_error"
    assert "secret" not in response.text
