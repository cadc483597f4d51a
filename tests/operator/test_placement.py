"""Cost per token, variant ranking and placement under limits and budget."""

from __future__ import annotations

import pytest

from tokenfleet_operator.placement import (
    BUDGET_CAP,
    NO_ROOM,
    fleet_cost_per_million_tokens,
    place,
    rank_by_cost,
    variant_cost_per_million_tokens,
)
from tokenfleet_operator.resource import InferenceDeploymentSpec, InvalidSpec, parse_spec
from tokenfleet_operator.snapshot import FleetSnapshot, VariantSnapshot

pytestmark = pytest.mark.unit


def spec(budget: float | None = None, a100_max: int | None = None) -> InferenceDeploymentSpec:
    autoscaling = {"budget": {"maxHourlyCost": budget}} if budget else {}
    a100 = {"name": "a100", "hourlyCost": 2.0} | ({"maxReplicas": a100_max} if a100_max is not None else {})
    return parse_spec(
        {
            "model": {"name": "chat", "uri": "pvc://m/x"},
            "engine": {"maxNumSeqs": 100},
            "accelerators": [{"name": "h100", "hourlyCost": 4.0}, a100],
            "autoscaling": autoscaling,
        }
    )


def test_cost_per_million_tokens() -> None:
    s = spec()
    snap = FleetSnapshot(
        time=0,
        variants=(
            VariantSnapshot(name="h100", ready=1, kv_usage=1.0, generation_tokens_per_second=4000),
            VariantSnapshot(name="a100", ready=2, kv_usage=0.5, generation_tokens_per_second=1000),
        ),
    )
    assert fleet_cost_per_million_tokens(s, snap) == pytest.approx((4.0 + 4.0) / (5000 * 3600) * 1e6)
    # h100 at full load: 4000 tok/s per replica; a100 at half load: 500 -> 1000 tok/s when full.
    assert variant_cost_per_million_tokens(s, snap, "h100") == pytest.approx(4.0 / (4000 * 3600) * 1e6)
    assert variant_cost_per_million_tokens(s, snap, "a100") == pytest.approx(2.0 / (1000 * 3600) * 1e6)
    assert rank_by_cost(s, [snap]) == ("h100", "a100")
    assert fleet_cost_per_million_tokens(s, FleetSnapshot(time=0)) is None


def test_unmeasured_variants_rank_by_hourly_cost() -> None:
    assert rank_by_cost(spec(), [FleetSnapshot(time=0)]) == ("a100", "h100")
    assert rank_by_cost(spec(), []) == ("a100", "h100")


def _busy(name: str, ready: int, tokens_per_second: float) -> VariantSnapshot:
    return VariantSnapshot(
        name=name, ready=ready, kv_usage=1.0, generation_tokens_per_second=tokens_per_second
    )


def test_a_variant_keeps_its_newest_measurement_after_its_replicas_are_gone() -> None:
    # h100: 4000 tok/s for $4 (1000 per $); a100: 500 tok/s for $2 (250 per $). Once the h100s are
    # removed, the latest snapshot measures only the a100, which must still rank second.
    measured_both = FleetSnapshot(time=0, variants=(_busy("h100", 1, 4000), _busy("a100", 1, 500)))
    only_a100 = FleetSnapshot(time=5, variants=(_busy("a100", 2, 1000),))
    assert rank_by_cost(spec(), [only_a100]) == ("a100", "h100")  # h100 unmeasured: assumed as fast
    assert rank_by_cost(spec(), [measured_both, only_a100]) == ("h100", "a100")
    # The newest measurement wins: the a100 got faster per replica later.
    faster = FleetSnapshot(time=10, variants=(_busy("a100", 1, 3000),))
    assert rank_by_cost(spec(), [measured_both, only_a100, faster]) == ("a100", "h100")


def test_declared_throughput_ranks_a_variant_measured_or_not() -> None:
    declared = parse_spec(
        {
            "model": {"name": "chat", "uri": "pvc://m/x"},
            "accelerators": [
                {"name": "h100", "hourlyCost": 4.0, "tokensPerSecond": 4000},
                {"name": "a100", "hourlyCost": 2.0, "tokensPerSecond": 500},
            ],
        }
    )
    assert rank_by_cost(declared, []) == ("h100", "a100")
    # The declaration holds against an extrapolated measurement (an a100 a quarter busy "would" do 4000).
    measured = FleetSnapshot(
        time=0, variants=(VariantSnapshot("a100", ready=1, kv_usage=0.25, generation_tokens_per_second=1000),)
    )
    assert rank_by_cost(declared, [measured]) == ("h100", "a100")


@pytest.mark.parametrize("value", [0, -5])
def test_declared_throughput_must_be_positive(value: float) -> None:
    with pytest.raises(InvalidSpec, match=r"spec.accelerators\[0\].tokensPerSecond must be positive"):
        parse_spec(
            {
                "model": {"name": "chat", "uri": "pvc://m/x"},
                "accelerators": [{"name": "h100", "hourlyCost": 4.0, "tokensPerSecond": value}],
            }
        )


def test_place_adds_cheapest_first_and_removes_most_expensive_first() -> None:
    s = spec(a100_max=2)
    ranking = ("a100", "h100")
    grown = place(s, {"h100": 0, "a100": 1}, 4, ranking, frozenset(), floor=1)
    assert grown.replicas == {"a100": 2, "h100": 2} and grown.limits == ()
    shrunk = place(s, {"h100": 2, "a100": 2}, 3, ranking, frozenset(), floor=1)
    assert shrunk.replicas == {"a100": 2, "h100": 1}


def test_place_skips_blocked_variants_and_reports_no_room() -> None:
    s = spec(a100_max=1)
    placed = place(s, {"h100": 0, "a100": 1}, 3, ("a100", "h100"), frozenset({"h100"}), floor=1)
    assert placed.replicas == {"a100": 1, "h100": 0}
    assert [limit.reason for limit in placed.limits] == [NO_ROOM]


def test_budget_caps_growth_and_trims_an_over_budget_fleet() -> None:
    s = spec(budget=10)
    grown = place(s, {"h100": 0, "a100": 0}, 10, ("a100", "h100"), frozenset(), floor=1)
    assert grown.replicas == {"a100": 5, "h100": 0} and grown.is_budget_capped
    trimmed = place(s, {"h100": 3, "a100": 0}, 3, ("a100", "h100"), frozenset(), floor=1)
    assert trimmed.replicas == {"a100": 0, "h100": 2} and trimmed.limits[0].reason == BUDGET_CAP
