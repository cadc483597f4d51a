"""Spec parsing: defaults applied, typed values, errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from tokenfleet_operator.resource import DEFAULT_SCALE_TO_ZERO_AFTER, InvalidSpec, parse_spec

pytestmark = pytest.mark.unit


def spec(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": {"name": "chat", "uri": "pvc://models/llama-3-8b"},
        "accelerators": [{"name": "h100", "hourlyCost": 4}],
    }
    base.update(overrides)
    return base


def test_minimal_spec_gets_the_defaults() -> None:
    parsed = parse_spec(spec())
    assert parsed.model.dtype == "bfloat16" and parsed.model.max_model_len is None
    assert parsed.engine.block_size == 16 and parsed.engine.prefix_caching
    acc = parsed.accelerators[0]
    assert (acc.resource_name, acc.count, acc.hourly_cost, acc.device) == ("nvidia.com/gpu", 1, 4.0, "cuda")
    auto = parsed.autoscaling
    assert (auto.mode, auto.min_replicas, auto.max_replicas) == ("builtin", 1, 8)
    assert (auto.scale_up.stabilization_seconds, auto.scale_down.stabilization_seconds) == (0, 300)
    assert auto.metrics.source == "direct" and auto.metrics.stale_after_seconds == 15
    assert auto.scale_to_zero_after_seconds is None
    assert parsed.routing.strategy == "least-load" and parsed.replicas == 1


def test_design_sketch_parses() -> None:
    parsed = parse_spec(
        spec(
            accelerators=[
                {
                    "name": "h100",
                    "resourceName": "nvidia.com/gpu",
                    "count": 1,
                    "hourlyCost": 4.0,
                    "maxReplicas": 16,
                    "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                }
            ],
            autoscaling={
                "mode": "builtin",
                "minReplicas": 0,
                "maxReplicas": 32,
                "targets": {"queueDepthPerReplica": 8, "kvCacheUtilization": 0.8, "ttftP95Seconds": 1.0},
                "budget": {"maxHourlyCost": 100},
                "scaleToZeroAfterSeconds": 600,
                "metrics": {"source": "prometheus", "url": "http://prom:9090", "profile": "vllm"},
            },
        )
    )
    assert parsed.accelerators[0].node_selector == (("nvidia.com/gpu.product", "NVIDIA-H100-80GB-HBM3"),)
    assert parsed.autoscaling.max_hourly_cost == 100.0
    assert parsed.autoscaling.targets.ttft_p95_seconds == 1.0
    assert parsed.autoscaling.metrics.profile == "vllm"
    assert parsed.autoscaling.scale_to_zero_after_seconds == 600


def test_min_zero_without_idle_period_gets_the_default() -> None:
    parsed = parse_spec(spec(autoscaling={"minReplicas": 0}))
    assert parsed.autoscaling.scale_to_zero_after_seconds == DEFAULT_SCALE_TO_ZERO_AFTER


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"accelerators": []}, "spec.accelerators"),
        (
            {"accelerators": [{"name": "a", "hourlyCost": 1}, {"name": "a", "hourlyCost": 2}]},
            "spec.accelerators",
        ),
        ({"model": {"name": "chat"}}, "spec.model.uri"),
        ({"autoscaling": {"minReplicas": 5, "maxReplicas": 2}}, "spec.autoscaling.minReplicas"),
        ({"autoscaling": {"mode": "auto"}}, "spec.autoscaling.mode"),
        ({"autoscaling": {"metrics": {"source": "prometheus"}}}, "spec.autoscaling.metrics.url"),
        ({"routing": {"strategy": "fastest"}}, "spec.routing.strategy"),
        ({"autoscaling": {"minReplicas": "many"}}, "wrong type"),
    ],
)
def test_unusable_specs_name_the_field(overrides: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidSpec, match=field.replace(".", r"\.")):
        parse_spec(spec(**overrides))
