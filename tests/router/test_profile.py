from __future__ import annotations

import random
from collections.abc import Sequence

import pytest

from tests.router.loads import load
from tokenfleet_router.pickers import MaxScorePicker
from tokenfleet_router.profile import PLUGINS, PluginContext, Profile, ProfileConfig
from tokenfleet_router.types import RequestInfo, Scores, WorkerLoad

pytestmark = pytest.mark.unit
REQUEST = RequestInfo()


class FixedScorer:
    def __init__(self, name: str, scores: dict[str, float]) -> None:
        self.name = name
        self.scores = scores

    def score(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> Scores:
        return {c.name: self.scores[c.name] for c in candidates}


class DropFilter:
    name = "drop"

    def __init__(self, dropped: str) -> None:
        self.dropped = dropped
        self.calls = 0

    def filter(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> list[WorkerLoad]:
        self.calls += 1
        return [c for c in candidates if c.name != self.dropped]


def test_weighted_scores_decide() -> None:
    speed = FixedScorer("speed", {"a": 1.0, "b": 0.0})
    room = FixedScorer("room", {"a": 0.0, "b": 1.0})
    loads = [load("a"), load("b")]
    assert Profile([], [(speed, 2.0), (room, 1.0)], MaxScorePicker()).pick(REQUEST, loads).name == "a"  # type: ignore[union-attr]
    assert Profile([], [(speed, 1.0), (room, 3.0)], MaxScorePicker()).pick(REQUEST, loads).name == "b"  # type: ignore[union-attr]


def test_out_of_range_scores_are_clamped() -> None:
    wild = FixedScorer("wild", {"a": 50.0, "b": -3.0})
    sane = FixedScorer("sane", {"a": 0.0, "b": 1.0})
    profile = Profile([], [(wild, 1.0), (sane, 1.5)], MaxScorePicker())
    assert profile.pick(REQUEST, [load("a"), load("b")]).name == "b"  # type: ignore[union-attr]


def test_filters_run_in_order_and_none_left_means_none() -> None:
    first, second = DropFilter("a"), DropFilter("b")
    profile = Profile([first, second], [], MaxScorePicker())
    assert profile.pick(REQUEST, [load("a"), load("b"), load("c")]).name == "c"  # type: ignore[union-attr]
    assert profile.pick(REQUEST, [load("a")]) is None
    assert second.calls == 1  # skipped once nothing was left


def test_from_config_builds_registered_plugins() -> None:
    config = ProfileConfig(filters=("available", "not-saturated"), scorers=(("queue-depth", 1.0),))
    profile = Profile.from_config(PluginContext(config, rng=random.Random(0)))
    loads = [load("a", num_waiting=3), load("b", num_waiting=1), load("c", is_saturated=True)]
    assert profile.pick(REQUEST, loads).name == "b"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (ProfileConfig(filters=("nope",), scorers=()), "unknown filter 'nope'"),
        (ProfileConfig(filters=(), scorers=(("nope", 1.0),)), "unknown scorer 'nope'"),
        (ProfileConfig(filters=(), scorers=(), picker="nope"), "unknown picker 'nope'"),
        (ProfileConfig(filters=(), scorers=(("kv-usage", -1.0),)), "must be >= 0"),
        (ProfileConfig(filters=("queue-depth",), scorers=()), "unknown filter"),  # a scorer is not a filter
    ],
)
def test_bad_configs_are_rejected_with_a_clear_message(config: ProfileConfig, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Profile.from_config(PluginContext(config))


def test_with_weights_overrides_and_adds() -> None:
    config = ProfileConfig(filters=(), scorers=(("queue-depth", 1.0), ("kv-usage", 1.0)))
    updated = config.with_weights({"kv-usage": 3.0, "in-flight": 0.5})
    assert dict(updated.scorers) == {"queue-depth": 1.0, "kv-usage": 3.0, "in-flight": 0.5}


def test_registry_names_are_unique_per_kind() -> None:
    keys = [(p.kind, p.name) for p in PLUGINS]
    assert len(keys) == len(set(keys))
    assert {p.kind for p in PLUGINS} == {"filter", "scorer", "picker"}
