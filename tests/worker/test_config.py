"""Worker and engine settings: CLI over environment over defaults, validation, model-dependent caps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tokenfleet_worker.config import (
    EngineConfig,
    WorkerConfig,
    build_engine_config,
    build_worker_config,
    parse_bytes,
)

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        pytest.param(
            {"model": "/m/llama"}, {}, {"served_model_names": ("llama",), "port": 8000}, id="defaults"
        ),
        pytest.param(
            {"model": "/m/x", "served_model_name": ["a", "b"], "port": 9000},
            {"TOKENFLEET_WORKER_PORT": "7000"},
            {"served_model_names": ("a", "b"), "port": 9000},
            id="cli-beats-env",
        ),
        pytest.param(
            {"model": None},
            {"TOKENFLEET_WORKER_MODEL": "/m/y", "TOKENFLEET_WORKER_MAX_NUM_SEQS": "12"},
            {"model": Path("/m/y"), "max_num_seqs": 12},
            id="env-fills-gaps",
        ),
        pytest.param(
            {"model": "/m/x", "kv_cache_bytes": "512MiB", "backend": "sim"},
            {
                "TOKENFLEET_WORKER_ENABLE_PREFIX_CACHING": "false",
                "TOKENFLEET_WORKER_DECODE_GRAPHS": "on",
                "TOKENFLEET_WORKER_LOOKAHEAD_DECODE": "true",
                "TOKENFLEET_WORKER_CPU_KERNELS": "off",
            },
            {
                "kv_cache_bytes": 512 * 2**20,
                "backend": "sim",
                "enable_prefix_caching": False,
                "decode_graphs": True,
                "paged_attention": None,  # decided at start-up: see test_decode_path_defaults
                "fused_kernels": False,
                "lookahead_decode": True,
                "cpu_kernels": False,
            },
            id="parsed-values",
        ),
        pytest.param(
            {"model": "/m/x", "decode_step_target_ms": 40.0},
            {"TOKENFLEET_WORKER_DECODE_STEP_TARGET_MS": "25"},
            {"decode_step_target_ms": 40.0},
            id="decode-step-target",
        ),
        pytest.param(
            {"model": "/m/x"},
            {"TOKENFLEET_WORKER_SCHEDULING_POLICY": "shortest-prompt-first"},
            {"scheduling_policy": "shortest-prompt-first"},
            id="scheduling-policy-from-env",
        ),
        pytest.param(
            {"model": "/m/x"},
            {"TOKENFLEET_WORKER_SERVED_MODEL_NAME": "chat, chat-v2"},
            {"served_model_names": ("chat", "chat-v2")},
            id="names-from-env",
        ),
    ],
)
def test_build_worker_config(args: dict[str, Any], env: dict[str, str], expected: dict[str, Any]) -> None:
    config = build_worker_config(args, env)
    for key, value in expected.items():
        assert getattr(config, key) == value


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        pytest.param({}, {}, "--model is required", id="no-model"),
        pytest.param({"model": "m", "backend": "tpu"}, {}, "--backend", id="bad-backend"),
        pytest.param({"model": "m", "dtype": "int3"}, {}, "--dtype", id="bad-dtype"),
        pytest.param({"model": "m", "max_num_seqs": 0}, {}, "--max-num-seqs", id="zero-seqs"),
        pytest.param({"model": "m", "gpu_memory_utilization": 1.5}, {}, "gpu-memory", id="bad-fraction"),
        pytest.param(
            {"model": "m"}, {"TOKENFLEET_WORKER_PORT": "eighty"}, "TOKENFLEET_WORKER_PORT", id="env"
        ),
        pytest.param({"model": "m", "kv_cache_bytes": "lots"}, {}, "byte size", id="bad-bytes"),
        pytest.param(
            {"model": "m", "decode_step_target_ms": 0}, {}, "--decode-step-target-ms", id="zero-target"
        ),
        pytest.param({"model": "m", "scheduling_policy": "lifo"}, {}, "--scheduling-policy", id="bad-policy"),
    ],
)
def test_build_worker_config_rejects(args: dict[str, Any], env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_worker_config(args, env)


@pytest.mark.parametrize(
    ("text", "value"), [("1024", 1024), ("2KiB", 2048), ("1.5GB", 1_500_000_000), ("3 mib", 3 * 2**20)]
)
def test_parse_bytes(text: str, value: int) -> None:
    assert parse_bytes(text) == value


@pytest.mark.parametrize(
    ("cli_len", "model_len", "num_blocks", "expected"),
    [
        pytest.param(None, 4096, 1000, 4096, id="model-limit"),
        pytest.param(None, 4096, 100, 1600, id="cache-limit"),
        pytest.param(1024, 4096, 1000, 1024, id="cli-limit"),
    ],
)
def test_build_engine_config_caps_context(
    cli_len: int | None, model_len: int, num_blocks: int, expected: int
) -> None:
    worker = WorkerConfig(model=Path("m"), served_model_names=("m",), max_model_len=cli_len, max_num_seqs=7)
    config = build_engine_config(worker, model_max_len=model_len, num_blocks=num_blocks, block_size=16)
    assert config.max_model_len == expected
    assert config.max_num_seqs == 7
    assert config.block_size == 16
    assert config.decode_step_target_s is None
    timed = WorkerConfig(model=Path("m"), served_model_names=("m",), decode_step_target_ms=50.0)
    assert (
        build_engine_config(timed, model_max_len=4096, num_blocks=100, block_size=16).decode_step_target_s
        == 0.05
    )


def test_build_engine_config_refuses_context_beyond_the_model() -> None:
    worker = WorkerConfig(model=Path("m"), served_model_names=("m",), max_model_len=9000)
    with pytest.raises(ValueError, match="exceeds the model's limit"):
        build_engine_config(worker, model_max_len=4096, num_blocks=1000, block_size=16)


def test_engine_config_is_frozen_and_validated() -> None:
    config = EngineConfig()
    with pytest.raises(AttributeError):
        config.max_num_seqs = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="max_batched_tokens"):
        EngineConfig(max_batched_tokens=0)
    with pytest.raises(ValueError, match="decode_step_target_s"):
        EngineConfig(decode_step_target_s=0.0)


@pytest.mark.parametrize(
    ("args", "triton", "expected"),
    [
        pytest.param({"device": "cuda"}, True, (True, True), id="cuda-defaults-to-graphs-and-kernel"),
        pytest.param({"device": "cuda:1"}, False, (True, False), id="no-triton-no-kernel"),
        pytest.param({"device": "cpu"}, True, (False, False), id="cpu-stays-eager"),
        pytest.param({"device": "cuda", "decode_graphs": False}, True, (False, False), id="graphs-off"),
        pytest.param({"device": "cuda", "paged_attention": False}, True, (True, False), id="kernel-off"),
        pytest.param({"device": "cpu", "decode_graphs": True}, True, (True, False), id="cpu-asks-for-graphs"),
    ],
)
def test_decode_path_defaults(args: dict[str, Any], triton: bool, expected: tuple[bool, bool]) -> None:
    assert build_worker_config({"model": "/m/x", **args}, {}).decode_path(triton) == expected
