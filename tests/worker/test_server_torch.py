"""One end-to-end check of the torch backend behind the API: a tiny random Llama, greedy decoding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from .server_harness import RunningServer, running_server

MODEL = "tiny-llama"
make_model = pytest.importorskip(
    "tokenfleet_worker.make_model", reason="the model engineer's make_model"
).make_model
pytest.importorskip("tokenfleet_worker.runner", reason="the model engineer's TorchRunner")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    model_dir = make_model(tmp_path_factory.mktemp("torch-model"), preset="tiny", seed=3)
    settings = {
        "backend": "torch",
        "served_model_name": [MODEL],
        "kv_cache_bytes": "2MiB",
        "max_batched_tokens": 64,
    }
    with running_server(Path(model_dir), tmp_path_factory.mktemp("torch-srv"), **settings) as running:
        yield running


def test_torch_backend_serves_greedy_completions_reproducibly(server: RunningServer) -> None:
    with openai.OpenAI(base_url=server.base_url + "/v1", api_key="x", max_retries=0, timeout=60) as client:
        messages: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Tell me about the fleet."}]
        first = client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=12,
            temperature=0,
            extra_body={"ignore_eos": True},
        )
        assert first.usage is not None and first.usage.completion_tokens == 12
        assert first.choices[0].finish_reason == "length"
        chunks = client.chat.completions.create(
            model=MODEL,
            messages=messages,
            max_tokens=12,
            temperature=0,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        assert streamed == first.choices[0].message.content
        # A shared prompt prefix is served from the prefix cache the second time.
        assert server.worker.engine.stats.num_prefix_hits > 0
        batch = client.completions.create(model=MODEL, prompt=["a b c", "x y z"], max_tokens=5, temperature=0)
        assert len(batch.choices) == 2
        assert batch.usage is not None and batch.usage.completion_tokens <= 10
