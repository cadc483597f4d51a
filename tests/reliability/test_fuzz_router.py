"""Hostile input against a real router process (API keys on) in front of a real sim worker: every reply
is a success or a 4xx with an OpenAI error body, never a 5xx, and the router stays up and keeps
routing. The router parses bodies itself (to route them), so it must refuse what it cannot read
rather than fail on it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from tests.router.processes import Server, running, start_router
from tests.worker.model_dir_helpers import write_sim_model_dir

MODEL = "fuzz-model"
KEY = "sk-fuzz-router-key"
PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}
FUZZ = FUZZ_SETTINGS


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessWorker]:
    tmp = tmp_path_factory.mktemp("fuzz-router-worker")
    model = write_sim_model_dir(tmp / "model", max_len=256)
    with running_worker(model, tmp) as started:
        yield started


@pytest.fixture(scope="module")
def router(worker: InProcessWorker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fuzz-router")
    keys = tmp / "keys"
    keys.write_text(f"{KEY}\n")
    server = start_router(
        tmp,
        *("--workers", worker.url, "--api-keys-file", str(keys)),
        *("--max-body-bytes", str(MAX_BODY_BYTES), "--body-timeout", str(BODY_TIMEOUT_S)),
        *("--queue-timeout", "2", "--log-level", "warning"),
    )
    with running(server):
        server.wait_ready()
        yield server


@pytest.fixture(scope="module")
def tally(router: Server) -> Iterator[FuzzTally]:
    figures = FuzzTally("router")
    yield figures
    figures.report()


@pytest.fixture(scope="module")
def client(router: Server) -> Iterator[httpx.Client]:
    auth = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=router.url, headers=auth, timeout=REPLY_TIMEOUT_S) as http:
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


# Bodies that once made the router answer 500: its own parse of the body failed on them.
FOUND_BY_FUZZING = [
    ("completions", b'{"model": "fuzz-model", "prompt": "\\ud800 hi"}'),
    ("chat", b'{"model": "fuzz-model", "messages": [{"role": "user", "content": "\\udfff"}]}'),
    ("completions", b'{"model": "fuzz-model", "prompt": [99999999999]}'),
    ("completions", b"[" * 20_000),
    ("completions", b'{"model": "fuzz-model", "prompt": "hi", "max_tokens": ' + b"1" * 5000 + b"}"),
]


@pytest.mark.parametrize(("kind", "body"), FOUND_BY_FUZZING)
def test_what_fuzzing_found_is_refused_with_400(
    kind: str, body: bytes, client: httpx.Client, tally: FuzzTally
) -> None:
    response = post(client, PATHS[kind], body)
    assert tally.check(f"regression {kind}", response) is None
    assert response.status_code == 400, response.text


AUTHORIZATIONS = st.one_of(
    st.none(),
    st.sampled_from(["", "Bearer", "Bearer ", f"bearer {KEY}x", f"Basic {KEY}", f"Bearer {KEY[:-1]}"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=60),
    st.binary(max_size=40).map(lambda b: b.decode("latin-1")),  # bytes no key is made of
)


def test_wrong_credentials_get_401_with_an_openai_body(router: Server, tally: FuzzTally) -> None:
    body = b'{"model": "fuzz-model", "prompt": "hi", "max_tokens": 2}'
    with httpx.Client(base_url=router.url, timeout=REPLY_TIMEOUT_S) as anonymous:

        @settings(FUZZ, max_examples=examples(30))
        @given(authorization=AUTHORIZATIONS)
        def fuzz(authorization: str | None) -> None:
            headers: dict[bytes, bytes] = {b"content-type": b"application/json"}
            if authorization is not None:
                value = authorization.strip("\r\n\t ").encode("latin-1")
                if any(c < 0x20 or c == 0x7F for c in value):
                    return  # control characters: not a header value an HTTP client can send
                headers[b"authorization"] = value
            response = anonymous.post(PATHS["completions"], content=body, headers=headers)
            assert tally.check("auth", response) is None
            assert response.status_code == 401, response.text
            assert response.json()["error"]["code"] == "invalid_api_key"

        fuzz()


def test_oversized_bodies_get_413_announced_or_streamed(client: httpx.Client, tally: FuzzTally) -> None:
    big = b'{"model": "fuzz-model", "prompt": "' + b"x" * MAX_BODY_BYTES + b'"}'

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(big), 4096):
            yield big[i : i + 4096]

    for label, content in (("announced", big), ("chunked", chunks())):
        response = client.post("/v1/completions", content=content)
        assert response.status_code == 413, label
        assert tally.check(f"oversized {label}", response) is None


def test_slow_clients_time_out_while_others_are_served(router: Server, tally: FuzzTally) -> None:
    auth = {"Authorization": f"Bearer {KEY}"}
    slow_body = open_partial_request(
        router.url, "/v1/completions", body_sent=b'{"model":', body_length=500, headers=auth
    )
    slow_headers = [open_partial_headers(router.url) for _ in range(20)]
    try:
        with httpx.Client(base_url=router.url, headers=auth, timeout=REPLY_TIMEOUT_S) as other:
            body = b'{"model": "fuzz-model", "prompt": "still serving", "max_tokens": 4}'
            for _ in range(3):
                response = post(other, "/v1/completions", body)
                assert tally.check("beside slow clients", response) is None
                assert response.status_code == 200
        status, reply = read_reply(slow_body, timeout_s=BODY_TIMEOUT_S + 10)
        tally.statuses[status] += 1
        assert status == 408, reply
        assert b"request_timeout" in reply
    finally:
        for sock in slow_headers:
            sock.close()


def test_router_is_up_and_routing_after_the_fuzzing(
    router: Server, client: httpx.Client, tally: FuzzTally, worker: InProcessWorker
) -> None:
    assert router.process.poll() is None, router.log()
    assert client.get("/health").json() == {"status": "ok"}
    body = b'{"model": "fuzz-model", "prompt": "after", "max_tokens": 3}'
    assert post(client, "/v1/completions", body).status_code == 200
    assert httpx.get(worker.url + "/health").json()["status"] == "ok"
    assert "Traceback" not in Path(router.log_path).read_text(errors="replace")
    assert tally.cases >= examples(150) and not tally.failures, tally.failures[:5]
