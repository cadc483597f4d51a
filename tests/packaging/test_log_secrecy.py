"""Keys and prompts never reach the logs: a real router (API keys on) and a real worker, both at debug
level, serve requests carrying a key and a distinctive prompt (answers, streams, refusals, errors, a
wrong key), then both logs are searched for either."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.router.processes import Server, running, start_router, start_worker
from tests.worker.model_dir_helpers import write_sim_model_dir

KEY = "sk-secret-7f3a9c1e5b2d"
PROMPT = "zebra quartz mango violet"  # distinctive words, found nowhere else
MODEL = "secret-model"


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[Server, Server]]:
    model = write_sim_model_dir(tmp_path / "model", max_len=128)
    # start_worker passes --log-level warning; the later flag wins.
    worker = start_worker(model, tmp_path, "--served-model-name", MODEL, "--log-level", "debug")
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    router = start_router(
        tmp_path, "--workers", worker.url, "--api-keys-file", str(keys), "--log-level", "debug"
    )
    with running(worker, router):
        worker.wait_ready()
        router.wait_ready()
        yield worker, router


def test_keys_and_prompts_never_appear_in_router_or_worker_logs(servers: tuple[Server, Server]) -> None:
    worker, router = servers
    client = openai.OpenAI(base_url=router.url + "/v1", api_key=KEY, max_retries=0, timeout=30)
    answer = client.completions.create(model=MODEL, prompt=PROMPT, max_tokens=4)
    assert answer.choices[0].text is not None
    stream = client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=4, stream=True
    )
    assert list(stream)
    auth = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    refused = [
        {"model": MODEL, "prompt": PROMPT * 200, "max_tokens": 4},  # beyond the context window
        {"model": "no-such-model", "prompt": PROMPT},
        {"model": MODEL, "prompt": PROMPT, "max_tokens": -1},
        {"model": MODEL, "prompt": PROMPT, "logit_bias": {"1": 1}},
    ]
    for body in refused:
        response = httpx.post(router.url + "/v1/completions", content=json.dumps(body), headers=auth)
        assert 400 <= response.status_code < 500, response.text
    wrong = httpx.post(
        router.url + "/v1/completions",
        json={"model": MODEL, "prompt": PROMPT},
        headers={"authorization": f"Bearer {KEY}-wrong"},
    )
    assert wrong.status_code == 401
    logs = {"router": router.log_path.read_text(), "worker": worker.log_path.read_text()}
    # Both logged the requests, so the search below proves something.
    assert "event=" in logs["router"] and "request_finished" in logs["worker"], logs
    for name, text in logs.items():
        for secret in (KEY, PROMPT, "zebra"):
            assert secret not in text, f"{secret!r} found in the {name} log"
