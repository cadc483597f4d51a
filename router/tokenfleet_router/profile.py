"""A scheduling profile: filters narrow the candidates, weighted scorers rate them, a picker chooses.

Every plugin is registered by name in `PLUGINS` below (the one explicit list), and a profile is
described by a `ProfileConfig` naming its plugins and weights, so strategies and weights come
from configuration rather than code.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from tokenfleet_router.bounded_load import DEFAULT_BALANCE_FACTOR
from tokenfleet_router.filters.available import AvailableFilter
from tokenfleet_router.filters.load_bound import LoadBoundFilter
from tokenfleet_router.filters.not_saturated import NotSaturatedFilter
from tokenfleet_router.filters.sample import SampleFilter
from tokenfleet_router.pickers import MaxScorePicker, RoundRobinPicker
from tokenfleet_router.prefix_hash import PrefixIndex
from tokenfleet_router.scorers.in_flight import InFlightScorer
from tokenfleet_router.scorers.kv_usage import KvUsageScorer
from tokenfleet_router.scorers.prefill_work import PrefillWorkScorer
from tokenfleet_router.scorers.prefix_match import PrefixMatchScorer
from tokenfleet_router.scorers.queue_depth import QueueDepthScorer
from tokenfleet_router.scorers.ring_affinity import RingAffinityScorer
from tokenfleet_router.scorers.session_affinity import SessionAffinityScorer, SessionTable
from tokenfleet_router.scorers.tokens_in_flight import TokensInFlightScorer
from tokenfleet_router.types import Filter, Picker, RequestInfo, Scorer, WorkerLoad


@dataclass(frozen=True)
class ProfileConfig:
    filters: tuple[str, ...]
    scorers: tuple[tuple[str, float], ...]  # (scorer name, weight)
    picker: str = "max-score"
    balance_factor: float = DEFAULT_BALANCE_FACTOR  # for the load-bound filter
    min_bound: int = 4  # in-flight requests the load-bound filter always allows
    cache_miss_weight: float = 4.0  # for the prefill-work scorer: a missed token costs this many queued
    sample_k: int = 2  # for the sample filter
    sample_min_candidates: int = 8

    def with_weights(self, weights: dict[str, float]) -> ProfileConfig:
        """Override weights of scorers by name; naming a scorer not in the profile adds it."""
        merged = dict(self.scorers)
        merged.update(weights)
        return replace(self, scorers=tuple(merged.items()))


@dataclass
class PluginContext:
    """Shared state the stateful plugins read; one per router."""

    config: ProfileConfig
    prefix_index: PrefixIndex = field(default_factory=PrefixIndex)
    sessions: SessionTable = field(default_factory=SessionTable)
    rng: random.Random = field(default_factory=random.Random)


@dataclass(frozen=True)
class Plugin:
    name: str
    kind: str  # "filter", "scorer" or "picker"
    build: Callable[[PluginContext], object]


PLUGINS: tuple[Plugin, ...] = (
    Plugin("available", "filter", lambda ctx: AvailableFilter()),
    Plugin("not-saturated", "filter", lambda ctx: NotSaturatedFilter()),
    Plugin(
        "load-bound", "filter", lambda ctx: LoadBoundFilter(ctx.config.balance_factor, ctx.config.min_bound)
    ),
    Plugin(
        "sample",
        "filter",
        lambda ctx: SampleFilter(ctx.config.sample_k, ctx.config.sample_min_candidates, ctx.rng),
    ),
    Plugin("queue-depth", "scorer", lambda ctx: QueueDepthScorer()),
    Plugin("kv-usage", "scorer", lambda ctx: KvUsageScorer()),
    Plugin("in-flight", "scorer", lambda ctx: InFlightScorer()),
    Plugin("tokens-in-flight", "scorer", lambda ctx: TokensInFlightScorer()),
    Plugin("prefix-match", "scorer", lambda ctx: PrefixMatchScorer(ctx.prefix_index)),
    Plugin(
        "prefill-work",
        "scorer",
        lambda ctx: PrefillWorkScorer(ctx.prefix_index, ctx.config.cache_miss_weight),
    ),
    Plugin("prefill-queue", "scorer", lambda ctx: PrefillWorkScorer(None, name="prefill-queue")),
    Plugin("ring-affinity", "scorer", lambda ctx: RingAffinityScorer()),
    Plugin("session-affinity", "scorer", lambda ctx: SessionAffinityScorer(ctx.sessions)),
    Plugin("max-score", "picker", lambda ctx: MaxScorePicker(ctx.rng)),
    Plugin("round-robin", "picker", lambda ctx: RoundRobinPicker()),
)


def _build(name: str, kind: str, ctx: PluginContext) -> object:
    for plugin in PLUGINS:
        if plugin.name == name and plugin.kind == kind:
            return plugin.build(ctx)
    known = ", ".join(p.name for p in PLUGINS if p.kind == kind)
    raise ValueError(f"unknown {kind} {name!r}; known: {known}")


class Profile:
    def __init__(self, filters: Sequence[Filter], scorers: Sequence[tuple[Scorer, float]], picker: Picker):
        self.filters = list(filters)
        self.scorers = list(scorers)
        self.picker = picker

    @classmethod
    def from_config(cls, ctx: PluginContext) -> Profile:
        config = ctx.config
        for name, weight in config.scorers:
            if weight < 0:
                raise ValueError(f"weight of scorer {name!r} must be >= 0, got {weight}")
        filters = [_build(name, "filter", ctx) for name in config.filters]
        scorers = [(_build(name, "scorer", ctx), weight) for name, weight in config.scorers]
        picker = _build(config.picker, "picker", ctx)
        return cls(filters, scorers, picker)  # type: ignore[arg-type]

    def filter(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> list[WorkerLoad]:
        remaining = list(candidates)
        for f in self.filters:
            if not remaining:
                break
            remaining = f.filter(request, remaining)
        return remaining

    def pick(self, request: RequestInfo, candidates: Sequence[WorkerLoad]) -> WorkerLoad | None:
        """The chosen worker, or None when the filters leave no candidate."""
        remaining = self.filter(request, candidates)
        if not remaining:
            return None
        totals = dict.fromkeys((c.name for c in remaining), 0.0)
        for scorer, weight in self.scorers:
            for name, value in scorer.score(request, remaining).items():
                if name in totals:
                    totals[name] += weight * min(1.0, max(0.0, value))  # clamp misbehaving scorers
        return self.picker.pick(request, [(c, totals[c.name]) for c in remaining])
