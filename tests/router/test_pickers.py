from __future__ import annotations

import random
from collections import Counter

import pytest

from tests.router.loads import load
from tokenfleet_router.pickers import MaxScorePicker, RoundRobinPicker
from tokenfleet_router.types import RequestInfo

pytestmark = pytest.mark.unit
REQUEST = RequestInfo()


def test_max_score_picks_the_best() -> None:
    picker = MaxScorePicker(random.Random(0))
    assert picker.pick(REQUEST, [(load("a"), 0.2), (load("b"), 1.7), (load("c"), 1.1)]).name == "b"


def test_max_score_breaks_ties_at_random() -> None:
    picker = MaxScorePicker(random.Random(0))
    scored = [(load("a"), 1.0), (load("b"), 1.0), (load("c"), 0.5)]
    counts = Counter(picker.pick(REQUEST, scored).name for _ in range(200))
    assert set(counts) == {"a", "b"}
    assert min(counts.values()) > 50


def test_round_robin_cycles_by_name_and_survives_fleet_changes() -> None:
    picker = RoundRobinPicker()
    fleet = [(load(n), 0.0) for n in ("c", "a", "b")]
    assert [picker.pick(REQUEST, fleet).name for _ in range(4)] == ["a", "b", "c", "a"]
    # "b" left: the next after "a" is now "c", with no skipped or repeated turn.
    assert picker.pick(REQUEST, [(load("a"), 0.0), (load("c"), 0.0)]).name == "c"
    assert picker.pick(REQUEST, [(load("a"), 0.0), (load("c"), 0.0)]).name == "a"
