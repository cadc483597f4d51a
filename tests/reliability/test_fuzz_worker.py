"""Hostile input against a real worker on 127.0.0.1 (sim backend, and the torch backend on a tiny
model): every reply is a success or a 4xx with an OpenAI error body, never a 5xx, and the worker
stays healthy. Cases come from hypothesis strategies and from schemathesis, which generates
requests (valid and invalid) from the worker's own OpenAPI schema."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.reliability.fuzz_harness import (
    BODY_TIMEOUT_S,
    FUZZ_SETTINGS,
    MAX_BODY_BYTES,
    REPLY_TIMEOUT_S,
    FuzzTally,
    InProcessWorker,
    examples,
    open_partial_headers,
    open_partial_request,
    post,
    read_reply,
    running_worker,
)
from tests.reliability.fuzz_requests import hostile_bodies
from tests.worker.model_dir_helpers import write_sim_model_dir

MODEL = "fuzz-model"
PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
FUZZ = FUZZ_SETTINGS


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessWorker]:
    tmp = tmp_path_factory.mktemp("fuzz-worker")
    model = write_sim_model_dir(tmp / "model", max_len=256)
    with running_worker(model, tmp) as running:
        yield running


@pytest.fixture(scope="module")
def tally(worker: InProcessWorker) -> Iterator[FuzzTally]:
    figures = FuzzTally("worker-sim")
    yield figures
    figures.report()


@pytest.fixture(scope="module")
def client(worker: InProcessWorker) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=worker.url, timeout=REPLY_TIMEOUT_S) as http:
        yield http


@pytest.mark.parametrize("kind", sorted(PATHS))
def test_hostile_bodies_get_answers_or_openai_errors(
    kind: str, client: httpx.Client, tally: FuzzTally
) -> None:
    @FUZZ
    @given(body=hostile_bodies(kind, MODEL))
    def fuzz(body: bytes) -> None:
        problem = tally.check(kind, post(client, PATHS[kind], body))
        assert problem is None, f"{problem}\nbody: {body[:300]!r}"

    fuzz()


@pytest.mark.parametrize(("mode", "count"), [(GenerationMode.POSITIVE, 20), (GenerationMode.NEGATIVE, 30)])
def test_schemathesis_cases_from_the_openapi_schema(
    mode: GenerationMode, count: int, worker: InProcessWorker, tally: FuzzTally
) -> None:
    schema = schemathesis.openapi.from_dict(worker.app.openapi())
    operations = [schema[path]["POST"] for path in PATHS.values()]
    cases = st.one_of(*(op.as_strategy(generation_mode=mode) for op in operations))

    @settings(FUZZ, max_examples=examples(count))
    @given(case=cases)
    def fuzz(case: schemathesis.Case) -> None:
        reply = case.call(base_url=worker.url, timeout=REPLY_TIMEOUT_S)
        content_type = (reply.headers.get("content-type") or [""])[0]
        problem = tally.check_reply(
            f"schemathesis {mode.value}", reply.status_code, content_type, reply.content
        )
        assert problem is None, f"{problem}\n{case.as_curl_command()}"

    fuzz()


# Bodies that once made the worker answer 500 (lone surrogates reached the tokenizer or the encoder).
FOUND_BY_FUZZING = [
    ("completions", b'{"model": "fuzz-model", "prompt": "\\ud800 hi"}'),
    ("chat", b'{"model": "fuzz-model", "messages": [{"role": "user", "content": "\\udfff"}]}'),
    ("completions", b'{"model": "\\ud800", "prompt": "hi"}'),
    ("completions", b'{"model": "fuzz-model", "prompt": "hi", "\\ud800": {"\\udc00": 1}}'),
    ("completions", b'{"model": "fuzz-model", "prompt": "\xed\xa0\x80"}'),
]


@pytest.mark.parametrize(("kind", "body"), FOUND_BY_FUZZING)
def test_what_fuzzing_found_is_refused_with_400(
    kind: str, body: bytes, client: httpx.Client, tally: FuzzTally
) -> None:
    response = post(client, PATHS[kind], body)
    assert tally.check(f"regression {kind}", response) is None
    assert response.status_code == 400, response.text
    assert "Unicode" in response.json()["error"]["message"]


def test_oversized_bodies_get_413_announced_or_streamed(client: httpx.Client, tally: FuzzTally) -> None:
    big = b'{"model": "fuzz-model", "prompt": "' + b"x" * MAX_BODY_BYTES + b'"}'

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit must hold while reading
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    for label, content in (("announced", big), ("chunked", chunks())):
        response = client.post("/v1/completions", content=content)
        assert response.status_code == 413, label
        assert tally.check(f"oversized {label}", response) is None


def test_slow_clients_time_out_while_others_are_served(worker: InProcessWorker, tally: FuzzTally) -> None:
    # A body that never finishes, and headers that never finish, held open while others are served.
    slow_body = open_partial_request(worker.url, "/v1/completions", body_sent=b'{"model":', body_length=500)
    slow_headers = [open_partial_headers(worker.url) for _ in range(20)]
    try:
        with httpx.Client(base_url=worker.url, timeout=REPLY_TIMEOUT_S) as other:
            body = b'{"model": "fuzz-model", "prompt": "still serving", "max_tokens": 4}'
            for _ in range(3):
                assert tally.check("beside slow clients", post(other, "/v1/completions", body)) is None
        status, reply = read_reply(slow_body, timeout_s=BODY_TIMEOUT_S + 10)
        tally.statuses[status] += 1
        assert status == 408, reply
        assert b"request_timeout" in reply
    finally:
        for sock in slow_headers:
            sock.close()


def test_worker_is_healthy_after_the_fuzzing(client: httpx.Client, tally: FuzzTally) -> None:
    assert client.get("/health").json()["status"] == "ok"
    assert client.get("/ready").status_code == 200
    assert tally.cases >= examples(200) and not tally.failures, tally.failures[:5]


# Sampling values that reach torch itself: seeds beyond 64 bits, top-k beyond the vocabulary, the most
# logprobs, vanishing temperatures and top-p, stop ids outside the vocabulary.
TORCH_EDGES: list[dict[str, Any]] = [
    {"seed": -1},
    {"seed": 2**64 + 1},
    {"seed": -(2**70)},
    {"top_k": 10**9},
    {"logprobs": 20, "temperature": 0},
    {"n": 16, "max_tokens": 2},
    {"stop_token_ids": [-1, 10**20]},
    {"temperature": 1e-300},
    {"top_p": 5e-324},
    {"prompt": [[0], [1]]},
    {"stream": True, "stream_options": {"include_usage": True}, "ignore_eos": True},
]


def test_torch_backend_survives_hostile_bodies(
    tiny_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    tmp = tmp_path_factory.mktemp("fuzz-torch")
    figures = FuzzTally("worker-torch")
    # A short context keeps every generation short on a CPU.
    options = {"backend": "torch", "kv_cache_bytes": "2MiB", "max_batched_tokens": 64, "max_model_len": 48}
    with (
        running_worker(tiny_model, tmp, **options) as running,
        httpx.Client(base_url=running.url, timeout=REPLY_TIMEOUT_S * 3) as http,
    ):
        for edit in TORCH_EDGES:
            body = json.dumps({"model": MODEL, "prompt": "hello there", "max_tokens": 3, **edit}).encode()
            problem = figures.check(f"torch {edit}", post(http, PATHS["completions"], body))
            assert problem is None and figures.statuses[200] >= 1, problem

        @settings(FUZZ, max_examples=examples(10))
        @given(kind=st.sampled_from(sorted(PATHS)), data=st.data())
        def fuzz(kind: str, data: st.DataObject) -> None:
            body = data.draw(hostile_bodies(kind, MODEL))
            problem = figures.check(f"torch {kind}", post(http, PATHS[kind], body))
            assert problem is None, f"{problem}\nbody: {body[:300]!r}"

        fuzz()
        assert http.get("/health").json()["status"] == "ok"
    assert figures.statuses[200] >= len(TORCH_EDGES)
    figures.report()
