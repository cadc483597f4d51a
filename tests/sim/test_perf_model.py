import json
from pathlib import Path

import pytest

from tokenfleet_devkit.sim.perf_model import (
    CPU_DEFAULTS,
    H100,
    LLAMA_3_8B,
    Hardware,
    RooflineModel,
    StepSample,
    cpu_model,
    fit_linear,
    gpu_model,
)

pytestmark = pytest.mark.unit


def test_kv_capacity_follows_the_documented_formula() -> None:
    model = gpu_model("h100")
    kv_per_token = 2 * 32 * 8 * 128 * 2  # K and V, layers, kv heads, head dim, bf16
    assert LLAMA_3_8B.kv_bytes_per_token == kv_per_token
    assert model.kv_capacity_tokens == int((80e9 * 0.9 - 16e9) / kv_per_token)


def test_decode_is_memory_bound_and_grows_with_context() -> None:
    model = gpu_model("h100")
    small = model.step_seconds(64, 64 * 512)
    large = model.step_seconds(64, 64 * 4096)
    weights_only = 16e9 / (3.35e12 * 0.8) + 0.002
    assert small == pytest.approx(weights_only + 64 * 512 * LLAMA_3_8B.kv_bytes_per_token / (3.35e12 * 0.8))
    assert large > small


def test_prefill_is_compute_bound_and_scales_with_tokens() -> None:
    model = gpu_model("h100")
    one = model.step_seconds(4096, 4096) - model.overhead_s
    two = model.step_seconds(8192, 8192) - model.overhead_s
    assert two == pytest.approx(2 * one, rel=0.05)
    assert one > 16e9 / (3.35e12 * 0.8)  # more than the weight read: compute dominates


@pytest.mark.parametrize(("tokens", "context"), [(1, 1000), (64, 100_000), (2048, 2048)])
def test_l40s_is_slower_than_h100_and_holds_less_kv(tokens: int, context: int) -> None:
    h100, l40s = gpu_model("h100"), gpu_model("l40s")
    assert l40s.step_seconds(tokens, context) > h100.step_seconds(tokens, context)
    assert l40s.kv_capacity_tokens < h100.kv_capacity_tokens


def test_a_model_that_does_not_fit_is_refused() -> None:
    tiny = Hardware("tiny", 8e9, 1e12, 1e14, 1.0)
    with pytest.raises(ValueError, match="does not fit"):
        RooflineModel(tiny, LLAMA_3_8B)
    with pytest.raises(ValueError, match="unknown accelerator"):
        gpu_model("tpu")
    assert H100.memory_bytes == 80e9


def test_fit_recovers_a_linear_step_time() -> None:
    base, per_token, per_context = 0.02, 0.001, 3e-6
    samples = [
        StepSample(t, c, base + per_token * t + per_context * c)
        for t in (1, 8, 32, 128)
        for c in (100, 2000, 9000)
    ]
    fitted = fit_linear(samples)
    assert fitted == pytest.approx((base, per_token, per_context), rel=1e-6)
    with pytest.raises(ValueError):
        fit_linear(samples[:2])


def test_cpu_model_uses_defaults_without_results_and_fits_with_them(tmp_path: Path) -> None:
    model, source = cpu_model(tmp_path / "missing.json")
    assert (model.base_s, model.per_token_s, model.per_context_token_s) == CPU_DEFAULTS
    assert "defaults" in source
    results = tmp_path / "engine.json"
    steps = [
        {"batch_tokens": t, "context_tokens": c, "step_s": 0.01 + 0.002 * t + 1e-6 * c}
        for t in (1, 16, 64)
        for c in (10, 500, 4000)
    ]
    results.write_text(json.dumps({"steps": steps}))
    model, source = cpu_model(results)
    assert source == str(results)
    assert model.per_token_s == pytest.approx(0.002, rel=1e-6)
    results.write_text(json.dumps({"steps": []}))
    model, source = cpu_model(results)
    assert "unusable" in source


def test_decode_measurements_nested_anywhere_are_found(tmp_path: Path) -> None:
    results = tmp_path / "engine.json"
    decode = [
        {"batch_size": b, "context": c, "step_s": 0.02 + 0.001 * b + 1e-6 * b * c}
        for b in (1, 8, 32)
        for c in (128, 1024)
    ]
    results.write_text(json.dumps({"cpu": {"decode_roofline": decode}, "other": [1, "x"]}))
    model, source = cpu_model(results)
    assert source == str(results)
    assert (model.base_s, model.per_token_s, model.per_context_token_s) == pytest.approx((0.02, 0.001, 1e-6))
