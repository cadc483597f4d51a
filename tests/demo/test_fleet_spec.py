"""The demo's InferenceDeployments are valid specs for the real operator and say what the demo needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from tokenfleet_devkit.demo.fleet_spec import FleetNames, ScalingKnobs, hourly_costs, sim_fleet, torch_fleet
from tokenfleet_devkit.demo.workload import SIM_FLEET, TORCH_FLEET
from tokenfleet_operator.children import worker_args
from tokenfleet_operator.resource import parse_spec

pytestmark = pytest.mark.unit

MODEL = Path("/models/tiny")


def test_the_autoscaled_fleet_runs_sim_workers_on_two_priced_variants_from_zero() -> None:
    doc = sim_fleet(FleetNames(), "ns", MODEL, "prefix-affinity", ScalingKnobs(max_replicas=5))
    spec = parse_spec(doc["spec"])
    assert doc["metadata"] == {
        "name": "code",
        "namespace": "ns",
        "labels": {"app.kubernetes.io/part-of": "tokenfleet-demo"},
    }
    assert spec.engine.backend == "sim"
    assert {a.name: a.hourly_cost for a in spec.accelerators} == hourly_costs(SIM_FLEET)
    assert len(set(hourly_costs(SIM_FLEET).values())) == 2
    assert all(a.device == "cpu" for a in spec.accelerators)
    auto = spec.autoscaling
    assert (auto.mode, auto.min_replicas, auto.max_replicas) == ("builtin", 0, 5)
    assert auto.scale_to_zero_after_seconds == ScalingKnobs().scale_to_zero_after_s
    assert spec.routing.strategy == "prefix-affinity"


def test_the_torch_fleet_serves_the_tiny_model_with_the_real_engine() -> None:
    names = FleetNames()
    doc = torch_fleet(names, "ns", MODEL, "least-load")
    spec = parse_spec(doc["spec"])
    assert spec.engine.backend == "torch"
    assert (spec.autoscaling.min_replicas, spec.autoscaling.max_replicas) == (1, 1)
    args = worker_args(spec, spec.accelerators[0])
    assert args[args.index("--model") + 1] == str(MODEL)  # file:// reaches the local process as a path
    assert args[args.index("--backend") + 1] == "torch"
    assert args[args.index("--device") + 1] == "cpu"
    assert args[args.index("--served-model-name") + 1] == names.model(TORCH_FLEET)


def test_fleet_names_map_both_ways() -> None:
    names = FleetNames(sim="a", torch="b")
    assert (names.resource(SIM_FLEET), names.resource(TORCH_FLEET)) == ("a", "b")
    assert names.model(SIM_FLEET) != names.model(TORCH_FLEET)
    with pytest.raises(KeyError):
        names.resource("other")
