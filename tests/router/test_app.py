"""The router as a real process in front of real sim workers, driven by the real `openai` client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.router.conftest import MODEL
from tests.router.processes import Server, metric_value, running, start_router, start_worker

KEY = "sk-router-test"


@pytest.fixture(scope="module")
def workers(model_dir: Path, log_dir: Path) -> Iterator[list[Server]]:
    started = [start_worker(model_dir, log_dir) for _ in range(2)]
    with running(*started):
        for worker in started:
            worker.wait_ready()
        yield started


@pytest.fixture(scope="module")
def router(workers: list[Server], log_dir: Path) -> Iterator[Server]:
    keys = log_dir / "keys"
    keys.write_text(f"# test\n{KEY}\n")
    server = start_router(
        log_dir,
        "--workers",
        ",".join(w.url for w in workers),
        "--api-keys-file",
        str(keys),
        "--log-level",
        "warning",
    )
    with running(server):
        server.wait_ready()
        yield server


def client_for(server: Server, api_key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=api_key, max_retries=0, timeout=30.0)


def test_models_is_the_union_of_the_workers(router: Server) -> None:
    assert [m.id for m in client_for(router).models.list()] == [MODEL]


def test_streams_and_answers_pass_through_unchanged(router: Server, workers: list[Server]) -> None:
    via_router, direct = client_for(router), client_for(workers[0], api_key="unused")
    request = dict(model=MODEL, prompt="The fleet", max_tokens=12, temperature=0.0, seed=1)
    chunks = list(via_router.completions.create(stream=True, **request))  # type: ignore[call-overload]
    direct_chunks = list(direct.completions.create(stream=True, **request))  # type: ignore[call-overload]
    assert "".join(c.choices[0].text for c in chunks) == "".join(c.choices[0].text for c in direct_chunks)
    assert len(chunks) == len(direct_chunks)
    assert chunks[-1].choices[0].finish_reason == "length"

    whole = via_router.completions.create(
        model=MODEL, prompt="The fleet", max_tokens=12, temperature=0.0, seed=1
    )
    assert whole.choices[0].text == "".join(c.choices[0].text for c in chunks)

    messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]
    chat = via_router.chat.completions.create(model=MODEL, messages=messages, max_tokens=6)
    assert chat.choices[0].message.role == "assistant" and chat.choices[0].finish_reason in ("length", "stop")
    deltas = list(
        via_router.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, stream=True)
    )
    assert deltas and deltas[-1].choices[0].finish_reason in ("length", "stop")


def test_api_keys_are_required_on_the_api_only(router: Server) -> None:
    with pytest.raises(openai.AuthenticationError) as info:
        client_for(router, api_key="sk-wrong").models.list()
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key"  # type: ignore[index]
    for path in ("/health", "/ready", "/metrics", "/fleet"):
        assert httpx.get(router.url + path).status_code == 200


@pytest.mark.parametrize(
    ("path", "body", "status", "param"),
    [
        ("/v1/completions", b"{broken", 400, None),
        ("/v1/completions", b'"a string"', 400, None),
        ("/v1/completions", json.dumps({"prompt": "hi"}).encode(), 400, "model"),
        ("/v1/completions", json.dumps({"model": MODEL, "prompt": {"a": 1}}).encode(), 400, "prompt"),
        (
            "/v1/completions",
            json.dumps({"model": MODEL, "prompt": "hi", "max_tokens": "lots"}).encode(),
            400,
            "max_tokens",
        ),
        ("/v1/chat/completions", json.dumps({"model": MODEL, "messages": "hi"}).encode(), 400, "messages"),
        (
            "/v1/chat/completions",
            json.dumps({"model": "no-such-model", "messages": [{"role": "user", "content": "x"}]}).encode(),
            404,
            "model",
        ),
        ("/v1/embeddings", b"{}", 404, None),
    ],
)
def test_malformed_requests_get_openai_errors_never_500(
    router: Server, path: str, body: bytes, status: int, param: str | None
) -> None:
    response = httpx.post(
        router.url + path,
        content=body,
        headers={"authorization": f"Bearer {KEY}", "content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["message"] and error["type"] and error["code"]
    if param:
        assert error["param"] == param


def test_oversized_body_is_413(router: Server) -> None:
    huge = json.dumps({"model": MODEL, "prompt": "x" * (17 * 1024 * 1024)}).encode()
    response = httpx.post(
        router.url + "/v1/completions", content=huge, headers={"authorization": f"Bearer {KEY}"}, timeout=30
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_wrong_method_is_an_openai_405(router: Server) -> None:
    response = httpx.get(router.url + "/v1/completions", headers={"authorization": f"Bearer {KEY}"})
    assert response.status_code == 405
    assert response.json()["error"]["type"]


def test_metrics_and_fleet_report_what_happened(router: Server) -> None:
    client_for(router).completions.create(model=MODEL, prompt="count me", max_tokens=2)
    metrics = httpx.get(router.url + "/metrics").text
    assert metric_value(metrics, "tokenfleet_router_requests_total", status="200") >= 1
    assert metric_value(metrics, "tokenfleet_router_routing_decisions_total", strategy="least-load") >= 1
    assert metric_value(metrics, "tokenfleet_router_workers") == 2
    assert metric_value(metrics, "tokenfleet_router_requests_held") == 0
    assert metric_value(metrics, "tokenfleet_router_request_latency_seconds_count") >= 1
    fleet = httpx.get(router.url + "/fleet").json()
    assert fleet["workers"] == 2 and fleet["held"] == 0 and fleet["available_workers"] == 2
    assert all(e["in_flight"] == 0 for e in fleet["endpoints"])


def test_prefix_affinity_keeps_a_shared_prefix_on_one_worker(workers: list[Server], log_dir: Path) -> None:
    server = start_router(
        log_dir, "--workers", ",".join(w.url for w in workers), "--strategy", "prefix-affinity"
    )
    with running(server):
        server.wait_ready()
        client = client_for(server)
        system = "You are a careful assistant for the tokenfleet project. " * 8
        for turn in range(6):
            client.completions.create(model=MODEL, prompt=f"{system}\nturn {turn}", max_tokens=2)
        metrics = httpx.get(server.url + "/metrics").text
        per_worker = [
            metric_value(metrics, "tokenfleet_router_requests_total", worker=w.url) for w in workers
        ]
        assert sorted(per_worker) == [0, 6]


def test_session_header_keeps_a_conversation_on_one_worker(workers: list[Server], log_dir: Path) -> None:
    server = start_router(
        log_dir, "--workers", ",".join(w.url for w in workers), "--strategy", "session-affinity"
    )
    with running(server):
        server.wait_ready()
        client = client_for(server)
        for turn in range(5):
            client.chat.completions.create(
                model=MODEL,
                messages=[{"role": "user", "content": f"turn {turn}"}],
                max_tokens=2,
                extra_headers={"x-session-id": "conversation-42"},
            )
        metrics = httpx.get(server.url + "/metrics").text
        per_worker = [
            metric_value(metrics, "tokenfleet_router_requests_total", worker=w.url) for w in workers
        ]
        assert sorted(per_worker) == [0, 5]


@pytest.mark.slow
def test_a_torch_worker_streams_through_the_router(model_dir: Path, log_dir: Path) -> None:
    worker = start_worker(
        model_dir, log_dir, "--kv-cache-bytes", "8MiB", "--max-num-seqs", "4", backend="torch"
    )
    server = start_router(log_dir, "--workers", worker.url)
    with running(worker, server):
        worker.wait_ready()
        server.wait_ready()
        request = dict(model=MODEL, prompt="Hello there", max_tokens=8, temperature=0.0)
        via_router = list(client_for(server).completions.create(stream=True, **request))  # type: ignore[call-overload]
        direct = list(client_for(worker, "unused").completions.create(stream=True, **request))  # type: ignore[call-overload]
        assert "".join(c.choices[0].text for c in via_router) == "".join(c.choices[0].text for c in direct)
        assert via_router[-1].choices[0].finish_reason in ("length", "stop")
