"""`tokenfleet-worker`: load a local model (or its tokenizer, for --backend sim) and serve it.

On SIGTERM or SIGINT the worker turns unready at once, answers new requests with 503, lets in-flight
requests finish for up to --drain-timeout seconds (aborting what is left), then exits 0. A second
signal exits at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn

from tokenfleet_worker.admission import POLICIES
from tokenfleet_worker.async_engine import AsyncEngine
from tokenfleet_worker.batch import Runner
from tokenfleet_worker.config import (
    BACKENDS,
    DTYPES,
    ENV_PREFIX,
    WorkerConfig,
    build_engine_config,
    build_worker_config,
)
from tokenfleet_worker.engine import Engine
from tokenfleet_worker.logs import log_event, setup_logging
from tokenfleet_worker.metrics import WorkerMetrics
from tokenfleet_worker.server import create_app
from tokenfleet_worker.sim import SimProfile, SimRunner, printable_token_ids
from tokenfleet_worker.tokenizer import TokenizerBundle, load_tokenizer_bundle

log = logging.getLogger("tokenfleet_worker")
DEFAULT_MODEL_LEN = 4096


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenfleet-worker",
        description="Serve a local Hugging Face model with an OpenAI-compatible API and Prometheus metrics. "
        f"Every option can also be set with {ENV_PREFIX}<OPTION> (e.g. {ENV_PREFIX}MAX_NUM_SEQS=32).",
    )
    add = p.add_argument
    add("--model", help="local Hugging Face model directory (never downloaded)")
    add("--served-model-name", nargs="+", help="model names clients use (default: the directory name)")
    add("--backend", choices=BACKENDS, help="torch runs the model; sim emulates its timing (default torch)")
    add("--host", help="address to listen on (default 0.0.0.0)")
    add("--port", type=int, help="port to listen on (default 8000)")
    add("--device", help="torch device, e.g. cpu or cuda:0 (default cpu)")
    add("--dtype", choices=DTYPES, help="weights and KV-cache dtype (default float32)")
    add("--max-num-seqs", type=int, help="sequences in the running batch (default 64)")
    add("--max-batched-tokens", type=int, help="token budget of one engine step (default 2048)")
    add(
        "--decode-step-target-ms",
        type=float,
        help="target milliseconds of a step that carries decodes: prefill chunks are cut to keep it, "
        "learning step time from the engine's own steps (default: off, chunks fill the budget)",
    )
    add(
        "--scheduling-policy",
        choices=POLICIES,
        help="admission order of waiting requests: fcfs, or shortest-prompt-first with aging, which "
        "keeps short requests within a TTFT target through bursts (default fcfs)",
    )
    add("--max-model-len", type=int, help="context length cap (default: the model's)")
    add("--block-size", type=int, help="tokens per KV-cache block (default 16)")
    add("--kv-cache-bytes", help="KV-cache size on CPU, e.g. 512MiB (torch backend)")
    add(
        "--gpu-memory-utilization",
        type=float,
        help="fraction of GPU memory for weights and cache (default 0.9)",
    )
    add(
        "--decode-graphs",
        action="store_const",
        const=True,
        help="CUDA graphs for decode steps (torch; default on with --device cuda)",
    )
    add("--no-decode-graphs", dest="decode_graphs", action="store_const", const=False)
    add(
        "--paged-attention",
        action="store_const",
        const=True,
        help="with --decode-graphs: attend with the Triton paged-attention kernel (default on CUDA "
        "where triton imports)",
    )
    add("--no-paged-attention", dest="paged_attention", action="store_const", const=False)
    add(
        "--fused-kernels",
        action="store_const",
        const=True,
        help="with --paged-attention: fused Triton kernels for norms, rotary embedding and activation",
    )
    add(
        "--lookahead-decode",
        action="store_const",
        const=True,
        help="with --decode-graphs: launch each greedy decode step before the engine asks for it, "
        "so the GPU works while the host schedules (a wrong guess costs one step of GPU time)",
    )
    add(
        "--cpu-kernels",
        action="store_const",
        const=True,
        help="on CPU (float32): run decode's products, attention and elementwise ops on the C kernels "
        "(default on wherever they compile; an error where they cannot run)",
    )
    add("--no-cpu-kernels", dest="cpu_kernels", action="store_const", const=False)
    add("--max-waiting", type=int, help="queued requests before new ones get 429 (default 256)")
    add("--no-prefix-caching", dest="enable_prefix_caching", action="store_const", const=False)
    add("--drain-timeout", dest="drain_timeout_s", type=float, help="seconds to finish requests on SIGTERM")
    add("--sim-profile", help="JSON performance model for --backend sim (base_s, per_token_s, ...)")
    add("--sim-num-blocks", type=int, help="KV-cache blocks of the sim backend (default 2048)")
    add("--max-body-bytes", help="largest request body accepted (default 4MiB)")
    add("--log-level", choices=("debug", "info", "warning", "error"), help="default info")
    return p


@dataclass
class Worker:
    config: WorkerConfig
    engine: AsyncEngine
    metrics: WorkerMetrics


def _model_max_len(model_dir: Path) -> int:
    for name, key in (
        ("config.json", "max_position_embeddings"),
        ("tokenizer_config.json", "model_max_length"),
    ):
        path = model_dir / name
        if path.is_file():
            value = json.loads(path.read_text(encoding="utf-8")).get(key)
            if isinstance(value, int) and 0 < value < 10_000_000:
                return value
    return DEFAULT_MODEL_LEN


def make_runner(config: WorkerConfig, tokenizer: TokenizerBundle) -> tuple[Runner, int]:
    """The runner for the configured backend, and the model's context limit."""
    if config.backend == "sim":
        profile = SimProfile.load(config.sim_profile) if config.sim_profile else SimProfile()
        vocab = printable_token_ids(tokenizer.tokenizer)
        runner = SimRunner(
            num_blocks=config.sim_num_blocks, block_size=config.block_size, vocab=vocab, profile=profile
        )
        return runner, _model_max_len(config.model)
    from tokenfleet_worker.paged_attention import triton_importable
    from tokenfleet_worker.runner import TorchRunner  # imports torch: only for this backend

    decode_graphs, paged_attention = config.decode_path(triton_importable())
    torch_runner = TorchRunner(
        config.model,
        device=config.device,
        dtype=config.dtype,
        block_size=config.block_size,
        kv_cache_bytes=config.kv_cache_bytes,
        gpu_memory_utilization=config.gpu_memory_utilization,
        decode_graphs=decode_graphs,
        paged_attention=paged_attention,
        fused_kernels=config.fused_kernels,
        lookahead_decode=config.lookahead_decode,
        cpu_kernels=config.cpu_kernels,
    )
    return torch_runner, int(torch_runner.max_model_len)


def load_worker(config: WorkerConfig) -> Worker:
    if not config.model.is_dir():
        raise FileNotFoundError(
            f"--model {config.model} is not a local directory; tokenfleet loads local Hugging Face "
            "directories only and never downloads models"
        )
    tokenizer = load_tokenizer_bundle(config.model)
    runner, model_max_len = make_runner(config, tokenizer)
    engine_config = build_engine_config(
        config, model_max_len=model_max_len, num_blocks=runner.num_blocks, block_size=runner.block_size
    )
    engine = Engine(engine_config, runner, tokenizer)
    async_engine = AsyncEngine(engine)
    metrics = WorkerMetrics(
        stats=async_engine.current_stats,
        draining=lambda: async_engine.is_draining,
        model_name=config.served_model_names[0],
    )
    engine.observer = metrics
    return Worker(config, async_engine, metrics)


class _DrainingServer(uvicorn.Server):
    """Turns the first SIGTERM/SIGINT into a drain instead of an immediate listener shutdown."""

    def __init__(self, config: uvicorn.Config, worker: Worker) -> None:
        super().__init__(config)
        self.worker = worker
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining = False

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if self._draining or self._loop is None:
            self.force_exit = self.should_exit  # a second signal: stop now
            self.should_exit = True
            return
        self._draining = True
        self._loop.call_soon_threadsafe(lambda: asyncio.ensure_future(self._drain(sig)))

    async def _drain(self, sig: int) -> None:
        engine = self.worker.engine
        timeout = self.worker.config.drain_timeout_s
        log_event(
            log,
            "drain_started",
            signal=signal.Signals(sig).name,
            in_flight=engine.num_in_flight,
            timeout_s=timeout,
        )
        num_aborted = await engine.drain(timeout)
        log_event(log, "drain_finished", aborted=num_aborted)
        await asyncio.sleep(0.1)  # let the last responses flush before the listener closes
        self.should_exit = True

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        self.worker.engine.start()
        try:
            await super().serve(sockets)
        finally:
            self.worker.engine.stop()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        config = build_worker_config(vars(args), os.environ)
    except ValueError as err:
        parser.error(str(err))
    setup_logging(config.log_level)
    try:
        worker = load_worker(config)
    except (OSError, ValueError, ImportError, RuntimeError) as err:
        log_event(log, "startup_failed", level=logging.ERROR, error=str(err))
        print(f"tokenfleet-worker: error: {err}", file=sys.stderr)
        return 1
    engine_config = worker.engine.config
    log_event(
        log,
        "worker_starting",
        backend=config.backend,
        model=config.served_model_names[0],
        host=config.host,
        port=config.port,
        num_blocks=worker.engine.stats.num_total_blocks,
        block_size=engine_config.block_size,
        max_model_len=engine_config.max_model_len,
        max_num_seqs=engine_config.max_num_seqs,
    )
    app = create_app(
        worker.engine,
        served_model_names=config.served_model_names,
        metrics=worker.metrics,
        max_body_bytes=config.max_body_bytes,
    )
    uv_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        log_config=None,
        access_log=False,
        timeout_graceful_shutdown=5,
        lifespan="off",
    )
    _DrainingServer(uv_config, worker).run()
    log_event(log, "worker_stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
