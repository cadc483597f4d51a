"""One table test per filter."""

from __future__ import annotations

import random

import pytest

from tests.router.loads import load, names
from tokenfleet_router.filters.available import AvailableFilter
from tokenfleet_router.filters.load_bound import LoadBoundFilter
from tokenfleet_router.filters.not_saturated import NotSaturatedFilter
from tokenfleet_router.filters.sample import SampleFilter
from tokenfleet_router.types import RequestInfo

pytestmark = pytest.mark.unit
REQUEST = RequestInfo(model="m")


def test_available_filter() -> None:
    loads = [load("a"), load("b", is_available=False), load("c", is_saturated=True)]
    assert names(AvailableFilter().filter(REQUEST, loads)) == ["a", "c"]


def test_not_saturated_filter() -> None:
    loads = [load("a"), load("b", is_available=False), load("c", is_saturated=True)]
    assert names(NotSaturatedFilter().filter(REQUEST, loads)) == ["a", "b"]


@pytest.mark.parametrize(
    ("in_flight", "factor", "kept"),
    [
        ((0, 0, 0), 1.25, ["w0", "w1", "w2"]),
        ((5, 0, 0), 1.25, ["w1", "w2"]),  # bound ceil(1.25*6/3)-1 = 2
        ((3, 3, 0), 1.25, ["w2"]),  # bound ceil(1.25*7/3)-1 = 2
        ((3, 3, 0), 2.0, ["w0", "w1", "w2"]),  # bound ceil(2*7/3)-1 = 4
        ((4, 4, 4), 1.0, ["w0", "w1", "w2"]),  # equal loads always pass
    ],
)
def test_load_bound_filter(in_flight: tuple[int, ...], factor: float, kept: list[str]) -> None:
    loads = [load(f"w{i}", num_in_flight=n) for i, n in enumerate(in_flight)]
    assert names(LoadBoundFilter(factor, min_bound=0).filter(REQUEST, loads)) == kept


def test_load_bound_floor_lets_a_lightly_loaded_worker_keep_its_affinity() -> None:
    loads = [load("a", num_in_flight=2), load("b"), load("c")]
    assert names(LoadBoundFilter(1.25, min_bound=0).filter(REQUEST, loads)) == ["b", "c"]
    assert names(LoadBoundFilter(1.25, min_bound=2).filter(REQUEST, loads)) == ["a", "b", "c"]


def test_load_bound_filter_rejects_factor_below_one() -> None:
    with pytest.raises(ValueError):
        LoadBoundFilter(0.9)


def test_sample_filter_keeps_all_of_a_small_fleet_and_k_of_a_large_one() -> None:
    sample = SampleFilter(k=2, min_candidates=8, rng=random.Random(1))
    small = [load(f"w{i}") for i in range(7)]
    assert len(sample.filter(REQUEST, small)) == 7
    large = [load(f"w{i}") for i in range(20)]
    seen: set[str] = set()
    for _ in range(50):
        picked = sample.filter(REQUEST, large)
        assert len(picked) == 2 and picked[0].name != picked[1].name
        seen.update(names(picked))
    assert len(seen) > 10  # random, not always the same pair


def test_sample_filter_rejects_k_below_one() -> None:
    with pytest.raises(ValueError):
        SampleFilter(k=0)
