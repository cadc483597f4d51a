"""Run a real worker app (sim backend unless told otherwise) under uvicorn on 127.0.0.1 in a thread."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import uvicorn
from fastapi import FastAPI

from tokenfleet_worker.__main__ import Worker, load_worker
from tokenfleet_worker.config import build_worker_config
from tokenfleet_worker.server import create_app

T = TypeVar("T")
FAST_PROFILE = {"base_s": 0.002, "per_token_s": 0.00005, "per_context_token_s": 0.0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class RunningServer:
    base_url: str
    worker: Worker
    loop: asyncio.AbstractEventLoop
    app: FastAPI

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run a coroutine on the server's event loop (where the engine's queues live)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@contextmanager
def running_server(
    model_dir: Path,
    tmp_path: Path,
    *,
    max_body_bytes: int = 64 * 1024,
    body_timeout_s: float = 30.0,
    start_timeout_s: float = 20.0,
    **settings: Any,
) -> Iterator[RunningServer]:
    """A worker app under uvicorn in a thread of this process, so a test can reach into its engine."""
    profile = settings.pop("profile", FAST_PROFILE)
    args: dict[str, Any] = {"model": str(model_dir), "backend": "sim", "served_model_name": ["sim-model"]}
    if settings.get("backend", "sim") == "sim":
        profile_path = tmp_path / f"profile-{time.monotonic_ns()}.json"
        profile_path.write_text(json.dumps(profile))
        args["sim_profile"] = str(profile_path)
    args.update(settings)
    config = build_worker_config(args, {})
    worker = load_worker(config)
    app = create_app(
        worker.engine,
        served_model_names=config.served_model_names,
        metrics=worker.metrics,
        max_body_bytes=max_body_bytes,
        body_timeout_s=body_timeout_s,
    )
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False, lifespan="off")
    )
    loop_box: list[asyncio.AbstractEventLoop] = []

    async def serve() -> None:
        loop_box.append(asyncio.get_running_loop())
        worker.engine.start()
        try:
            await server.serve()
        finally:
            worker.engine.stop()

    thread = threading.Thread(target=lambda: asyncio.run(serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("worker server did not start")
        time.sleep(0.02)
    try:
        yield RunningServer(f"http://127.0.0.1:{port}", worker, loop_box[0], app)
    finally:
        server.should_exit = True
        thread.join(timeout=15)


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


def get_json(url: str) -> Any:
    return httpx.get(url, timeout=10).json()
