"""`tokenfleet-worker` as a real process: --help, clear startup errors, SIGTERM drain then exit 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tokenfleet_worker.__main__ import main

from .model_dir_helpers import write_sim_model_dir
from .server_harness import free_port, wait_until

MODEL = "drain-model"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sim_model_dir(tmp_path_factory.mktemp("main-model"))


def test_help_lists_the_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--model",
        "--served-model-name",
        "--backend",
        "--max-num-seqs",
        "--max-batched-tokens",
        "--block-size",
        "--kv-cache-bytes",
        "--gpu-memory-utilization",
        "--max-waiting",
        "--drain-timeout",
        "--sim-profile",
        "--sim-num-blocks",
        "--device",
        "--dtype",
        "--cpu-kernels",
        "--no-cpu-kernels",
    ):
        assert option in text


def test_unresolvable_model_is_a_clear_startup_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--model", "hf://meta-llama/Llama-3-8B", "--backend", "sim"]) == 1
    assert "never downloads" in capsys.readouterr().err
    assert main(["--model", str(tmp_path), "--backend", "sim"]) == 1
    assert "tokenizer.json" in capsys.readouterr().err


def test_bad_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--model", "x", "--max-num-seqs", "0"])
    assert caught.value.code == 2
    assert "--max-num-seqs" in capsys.readouterr().err


@pytest.fixture
def worker_process(
    model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    drain_timeout = getattr(request, "param", 10.0)
    profile = tmp_path / "slow.json"
    profile.write_text(json.dumps({"base_s": 0.03, "per_token_s": 0.0, "per_context_token_s": 0.0}))
    port = free_port()
    cmd = [
        sys.executable,
        "-m",
        "tokenfleet_worker",
        "--model",
        str(model_dir),
        "--backend",
        "sim",
        "--served-model-name",
        MODEL,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--sim-profile",
        str(profile),
        "--drain-timeout",
        str(drain_timeout),
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, env=env)
    base = f"http://127.0.0.1:{port}"
    try:

        def ready() -> bool:
            if proc.poll() is not None:
                raise AssertionError(f"worker exited early: {proc.stderr.read() if proc.stderr else ''}")
            try:
                return httpx.get(base + "/ready", timeout=1).status_code == 200
            except httpx.TransportError:
                return False

        wait_until(ready, timeout=30)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def test_sigterm_drains_in_flight_stream_then_exits_0(
    worker_process: tuple[subprocess.Popen[str], str],
) -> None:
    proc, base = worker_process
    client = openai.OpenAI(base_url=base + "/v1", api_key="x", max_retries=0, timeout=30)
    stream = iter(client.completions.create(model=MODEL, prompt="keep going", max_tokens=40, stream=True))
    first = next(stream)
    assert first.choices
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: httpx.get(base + "/ready", timeout=2).status_code == 503, timeout=2)
    late = httpx.post(
        base + "/v1/completions", json={"model": MODEL, "prompt": "late", "max_tokens": 2}, timeout=5
    )
    assert late.status_code == 503
    assert late.json()["error"]["type"] == "service_unavailable"
    rest = list(stream)
    assert rest[-1].choices[0].finish_reason == "length"
    assert proc.wait(timeout=15) == 0
    log = proc.stderr.read() if proc.stderr else ""
    assert "event=drain_started" in log and "signal=SIGTERM" in log
    assert "event=drain_finished aborted=0" in log
    assert "keep going" not in log  # prompts are never logged


@pytest.mark.parametrize("worker_process", [0.3], indirect=True)
def test_drain_timeout_aborts_what_is_left(worker_process: tuple[subprocess.Popen[str], str]) -> None:
    proc, base = worker_process
    body = {"model": MODEL, "prompt": "too long", "max_tokens": 200, "stream": True}
    started = time.monotonic()
    with httpx.stream("POST", base + "/v1/completions", json=body, timeout=30) as response:
        lines = response.iter_lines()
        next(lines)
        proc.send_signal(signal.SIGTERM)
        events = [line for line in lines if line.startswith("data: ")]
    assert events[-1] == "data: [DONE]"
    assert json.loads(events[-2].removeprefix("data: "))["choices"][0]["finish_reason"] == "abort"
    assert proc.wait(timeout=15) == 0
    assert time.monotonic() - started < 5
