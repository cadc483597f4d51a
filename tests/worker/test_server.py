"""The worker's HTTP API with the real openai client against a real uvicorn server (sim backend)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam
from prometheus_client.parser import text_string_to_metric_families

from tokenfleet_common import metric_names as m
from tokenfleet_common.load_report import LoadReport

from .model_dir_helpers import write_sim_model_dir
from .server_harness import RunningServer, running_server, wait_until

MODEL = "sim-model"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sim_model_dir(tmp_path_factory.mktemp("server-model"), max_len=256)


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with running_server(model_dir, tmp_path_factory.mktemp("srv"), max_waiting=64) as running:
        yield running


@pytest.fixture(scope="module")
def client(server: RunningServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url + "/v1", api_key="unused", max_retries=0, timeout=30) as c:
        yield c


def error_of(response: httpx.Response) -> dict[str, object]:
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "code"} <= set(body["error"])
    return dict(body["error"])


# -- completions and chat -------------------------------------------------------------------------


def test_completion_non_streaming(client: openai.OpenAI) -> None:
    result = client.completions.create(model=MODEL, prompt="Hello there", max_tokens=7, seed=1)
    assert result.id.startswith("cmpl-")
    assert result.object == "text_completion"
    (choice,) = result.choices
    assert choice.finish_reason == "length"
    assert choice.text
    assert result.usage is not None
    assert result.usage.completion_tokens == 7
    assert result.usage.total_tokens == result.usage.prompt_tokens + 7


def test_completion_streaming_matches_non_streaming_with_usage(client: openai.OpenAI) -> None:
    whole = client.completions.create(model=MODEL, prompt="Stream me", max_tokens=9, seed=5)
    chunks = list(
        client.completions.create(
            model=MODEL,
            prompt="Stream me",
            max_tokens=9,
            seed=5,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == whole.choices[0].text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9
    assert all(c.usage is None for c in chunks[:-1])


def test_sse_framing_is_exactly_openai(server: RunningServer) -> None:
    body = {"model": MODEL, "prompt": "raw", "max_tokens": 3, "stream": True}
    with httpx.stream("POST", server.base_url + "/v1/completions", json=body, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = raw.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    for event in events[:-2]:
        assert event.startswith("data: ")
        assert json.loads(event.removeprefix("data: "))["object"] == "text_completion"


def test_chat_non_streaming_and_streaming(client: openai.OpenAI) -> None:
    messages: list[ChatCompletionMessageParam] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Say something"},
    ]
    whole = client.chat.completions.create(model=MODEL, messages=messages, max_tokens=6, seed=11)
    assert whole.object == "chat.completion"
    assert whole.choices[0].message.role == "assistant"
    assert whole.choices[0].finish_reason == "length"
    assert whole.usage is not None and whole.usage.completion_tokens == 6
    stream = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=6,
        seed=11,
        stream=True,
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == whole.choices[0].message.content
    assert chunks[-1].choices[0].finish_reason == "length"


def test_n_choices_and_list_prompts(client: openai.OpenAI) -> None:
    result = client.completions.create(model=MODEL, prompt=["one", "two"], n=2, max_tokens=4, seed=3)
    assert sorted(c.index for c in result.choices) == [0, 1, 2, 3]
    assert len({c.text for c in result.choices}) > 1
    assert result.usage is not None and result.usage.completion_tokens == 16


def test_logprobs(client: openai.OpenAI) -> None:
    result = client.completions.create(model=MODEL, prompt="x", max_tokens=3, logprobs=2)
    logprobs = result.choices[0].logprobs
    assert logprobs is not None and logprobs.tokens is not None and len(logprobs.tokens) == 3
    assert logprobs.top_logprobs is not None and all(len(t) >= 1 for t in logprobs.top_logprobs)
    chat = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "x"}], max_tokens=2, logprobs=True, top_logprobs=2
    )
    content = chat.choices[0].logprobs
    assert content is not None and content.content is not None and len(content.content) == 2
    assert content.content[0].logprob < 0


def test_token_id_prompt_and_deadline(client: openai.OpenAI) -> None:
    result = client.completions.create(model=MODEL, prompt=[5, 6, 7], max_tokens=2)
    assert result.usage is not None and result.usage.prompt_tokens == 3
    slow = client.completions.create(model=MODEL, prompt="x", max_tokens=200, extra_body={"timeout_s": 0.05})
    assert slow.choices[0].finish_reason == "deadline"
    assert slow.usage is not None and slow.usage.completion_tokens < 200


def test_models_health_ready_load(server: RunningServer, client: openai.OpenAI) -> None:
    assert [model.id for model in client.models.list()] == [MODEL]
    assert httpx.get(server.base_url + "/health").status_code == 200
    assert httpx.get(server.base_url + "/ready").status_code == 200
    report = LoadReport.from_dict(httpx.get(server.base_url + "/load").json())
    assert report.total_blocks == 2048
    assert report.prefix_cache_tokens == 2048 * 16  # the size the router's prefix index keeps to
    assert report.ready and not report.draining
    assert report.waiting == 0


def test_metrics_expose_tokenfleet_and_vllm_names(server: RunningServer, client: openai.OpenAI) -> None:
    client.completions.create(model=MODEL, prompt="count me", max_tokens=4)
    text = httpx.get(server.base_url + "/metrics").text
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = {s.name: s for f in families.values() for s in f.samples}
    for name in (
        m.REQUESTS_WAITING,
        m.REQUESTS_RUNNING,
        m.KV_CACHE_USAGE,
        m.KV_BLOCKS_TOTAL,
        m.KV_BLOCKS_FREE,
        m.TOKENS_IN_FLIGHT,
        m.DRAINING,
        m.PROMPT_TOKENS,
        m.GENERATION_TOKENS,
        m.PREFIX_CACHE_QUERIES,
        m.PREFIX_CACHE_HITS,
        m.PREEMPTIONS,
        "vllm:num_requests_waiting",
        "vllm:num_requests_running",
        "vllm:kv_cache_usage_perc",
        "vllm:cache_config_info",
    ):
        assert name in samples, name
    for histogram in (m.TTFT, m.ITL, m.TPOT, m.E2E_LATENCY, m.QUEUE_TIME, m.BATCH_SIZE):
        assert histogram + "_count" in samples, histogram
    assert samples[m.GENERATION_TOKENS].value >= 4
    assert samples[m.TTFT + "_count"].value >= 1
    assert samples["vllm:cache_config_info"].labels["block_size"] == "16"
    assert samples["vllm:cache_config_info"].labels["num_gpu_blocks"] == "2048"
    finished = [
        s for s in families[m.REQUESTS_FINISHED.removesuffix("_total")].samples if s.name.endswith("_total")
    ]
    assert any(s.labels["finish_reason"] == "length" and s.value >= 1 for s in finished)


# -- errors ---------------------------------------------------------------------------------------


def test_unknown_model_is_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model="nope", prompt="x")
    assert caught.value.status_code == 404
    assert caught.value.code == "model_not_found"


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        pytest.param(
            {"model": MODEL, "prompt": "x", "max_tokens": 10_000}, "maximum context length", id="context"
        ),
        pytest.param({"model": MODEL, "prompt": "x", "temperature": 9}, "temperature", id="temperature"),
        pytest.param({"model": MODEL, "prompt": "x", "max_tokens": 0}, "max_tokens", id="max-tokens"),
        pytest.param({"model": MODEL}, "prompt", id="missing-prompt"),
        pytest.param({"model": MODEL, "prompt": [999_999]}, "token ids", id="bad-token-id"),
        pytest.param({"model": MODEL, "prompt": "x", "echo": True}, "echo", id="echo"),
        pytest.param({"model": MODEL, "prompt": "x", "n": 0}, "n", id="n"),
        pytest.param(
            {"model": MODEL, "prompt": "x", "stream_options": {"include_usage": True}}, "stream", id="opts"
        ),
    ],
)
def test_bad_completion_input_is_400(server: RunningServer, body: dict[str, object], needle: str) -> None:
    response = httpx.post(server.base_url + "/v1/completions", json=body, timeout=10)
    assert response.status_code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert needle in str(error["message"])


def test_bad_chat_input_is_400(server: RunningServer) -> None:
    url = server.base_url + "/v1/chat/completions"
    for body in (
        {"model": MODEL, "messages": []},
        {"model": MODEL, "messages": [{"role": "wizard", "content": "x"}]},
    ):
        response = httpx.post(url, json=body, timeout=10)
        assert response.status_code == 400, body
        error_of(response)


@pytest.mark.parametrize(
    "content", [b"{not json", b'{"model": "sim-model", "prompt": "\xff\xfe"}', b"[]", b""], ids=str
)
def test_undecodable_bodies_are_400(server: RunningServer, content: bytes) -> None:
    response = httpx.post(
        server.base_url + "/v1/completions", content=content, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    error_of(response)


def test_oversized_body_is_413(server: RunningServer) -> None:
    body = {"model": MODEL, "prompt": "x" * (128 * 1024)}
    response = httpx.post(server.base_url + "/v1/completions", json=body, timeout=10)
    assert response.status_code == 413
    error_of(response)

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit must hold while streaming in
        yield b'{"model": "sim-model", "prompt": "'
        for _ in range(40):
            yield b"y" * 4096
        yield b'"}'

    streamed = httpx.post(
        server.base_url + "/v1/completions", content=chunked(), headers={"content-type": "application/json"}
    )
    assert streamed.status_code == 413
    error_of(streamed)


def test_unknown_path_is_404_openai_shaped(server: RunningServer) -> None:
    response = httpx.get(server.base_url + "/v1/nothing")
    assert response.status_code == 404
    error_of(response)


def test_client_disconnect_aborts_the_request(server: RunningServer) -> None:
    body = {"model": MODEL, "prompt": "long one", "max_tokens": 240, "stream": True}
    with httpx.stream("POST", server.base_url + "/v1/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        next(lines)
    wait_until(lambda: server.worker.engine.num_in_flight == 0)
    wait_until(lambda: server.worker.engine.stats.num_running == 0)
    text = httpx.get(server.base_url + "/metrics").text
    assert 'tokenfleet_requests_finished_total{finish_reason="abort"}' in text


# -- overload and draining (servers of their own) -------------------------------------------------

SLOW = {"base_s": 0.02, "per_token_s": 0.0, "per_context_token_s": 0.0}


def test_full_queue_is_429_with_retry_after(model_dir: Path, tmp_path: Path) -> None:
    with running_server(model_dir, tmp_path, profile=SLOW, max_num_seqs=1, max_waiting=1) as srv:

        async def scenario() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=srv.base_url, timeout=30) as http:
                body = {"model": MODEL, "prompt": "x", "max_tokens": 30}
                first = asyncio.create_task(http.post("/v1/completions", json=body))
                await asyncio.sleep(0.2)  # running
                second = asyncio.create_task(http.post("/v1/completions", json=body))
                await asyncio.sleep(0.2)  # waiting: the queue is at its bound
                third = await http.post("/v1/completions", json=body)
                return [third, await first, await second]

        third, first, second = asyncio.run(scenario())
        assert third.status_code == 429
        assert third.headers["retry-after"] == "1"
        assert error_of(third)["type"] == "rate_limit_error"
        assert first.status_code == 200 and second.status_code == 200
        rejected = httpx.get(srv.base_url + "/metrics").text
        assert 'tokenfleet_requests_rejected_total{reason="queue_full"} 1.0' in rejected


def test_draining_turns_unready_refuses_new_and_finishes_in_flight(model_dir: Path, tmp_path: Path) -> None:
    with running_server(model_dir, tmp_path, profile=SLOW) as srv:
        client = openai.OpenAI(base_url=srv.base_url + "/v1", api_key="x", max_retries=0)
        stream = client.completions.create(model=MODEL, prompt="in flight", max_tokens=25, stream=True)
        first = next(iter(stream))
        drain = asyncio.run_coroutine_threadsafe(srv.worker.engine.drain(10.0), srv.loop)
        wait_until(lambda: srv.worker.engine.is_draining)
        assert httpx.get(srv.base_url + "/ready").status_code == 503
        with pytest.raises(openai.APIStatusError) as caught:
            client.completions.create(model=MODEL, prompt="late", max_tokens=2)
        assert caught.value.status_code == 503
        assert LoadReport.from_dict(httpx.get(srv.base_url + "/load").json()).draining
        rest = list(stream)
        assert rest[-1].choices[0].finish_reason == "length"
        assert drain.result(10) == 0  # nothing had to be aborted
        assert first.choices
