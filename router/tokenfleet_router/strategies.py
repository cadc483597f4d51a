"""The routing strategies, each a profile of small filters and scorers, plus the state they learn.

- round-robin: available, unsaturated workers in turn (the baseline).
- least-load: weighted prefill queued, queue depth, KV usage and in-flight work; power-of-two
  choices above eight candidates.
- prefix-affinity: least prefill work before the first token (the prefill queued there plus the
  part of the prompt the worker has not served recently, a miss counting extra), among workers
  within a bounded-load limit; the prompt's consistent-hashing home breaks near-ties.
- session-affinity: the session's previous worker while it is available, not saturated and
  within a generous load bound; otherwise least-load, and the session follows.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from tokenfleet_router.profile import PluginContext, Profile, ProfileConfig
from tokenfleet_router.scorers.prefill_work import uncached_tokens
from tokenfleet_router.types import RequestInfo, WorkerLoad

_HEALTHY = ("available", "not-saturated")
_LOAD_SCORES = (("queue-depth", 1.0), ("kv-usage", 1.0), ("tokens-in-flight", 1.0), ("in-flight", 1.0))

STRATEGIES: dict[str, ProfileConfig] = {
    "round-robin": ProfileConfig(filters=_HEALTHY, scorers=(), picker="round-robin"),
    "least-load": ProfileConfig(
        filters=(*_HEALTHY, "sample"), scorers=(("prefill-queue", 4.0), *_LOAD_SCORES)
    ),
    "prefix-affinity": ProfileConfig(
        filters=(*_HEALTHY, "load-bound"),
        # Tuned on the Mooncake trace (`tokenfleet bench router`). Prefill work (queued plus
        # uncached tokens, a miss weighing 2x) carries load and cache hits in one unit: at 80%
        # load it cut p95 TTFT ~1.8x against the former prefix bonus plus min-max load scores,
        # which counted decoding requests as load. The bound is loose (2x the mean in flight):
        # at 1.25 it turned away ~10% of the cache hits for worse latency; it is only the guard
        # against a hot prefix when no prefill is seen (non-streaming requests).
        # The miss weight trades hits for latency. Once the prefix index forgot what each
        # worker's cache had evicted (it used to count ~11% of the ideal's hits that were gone),
        # weight 3.5 beat the former 2 on both at 80% load: p95 TTFT 2.28 -> 2.20 s, hit rate 81%
        # -> 86% of the ideal (with the new index: 2: 81% at 2.15 s, 3: 85% at 2.16 s, 4: 86.5%
        # at 2.24 s, 5: 87% at 2.29 s).
        scorers=(("prefill-work", 1.0), ("ring-affinity", 0.1)),
        balance_factor=2.0,
        cache_miss_weight=3.5,
    ),
    "session-affinity": ProfileConfig(
        filters=(*_HEALTHY, "load-bound"),
        scorers=(("session-affinity", 5.0), *_LOAD_SCORES),
        balance_factor=2.0,
    ),
}


@dataclass(frozen=True)
class Route:
    """A chosen worker and the prefill this request is expected to cost there.

    `prefill_tokens` is what the load view counts as queued prefill until the first token: the
    prompt past the prefix the worker is known to hold (the whole prompt without a prefix
    index). Counting whole prompts would make a worker busy with cheap cache hits look as
    loaded as one computing long new prompts."""

    worker: WorkerLoad
    prefill_tokens: int


class Strategy:
    """A named profile that also records what it learns from each pick (prefixes, sessions)."""

    def __init__(self, name: str, config: ProfileConfig, rng: random.Random | None = None) -> None:
        self.name = name
        self.context = PluginContext(config=config, rng=rng or random.Random())
        self.profile = Profile.from_config(self.context)
        scorer_names = {scorer for scorer, _ in config.scorers}
        self._learns_prefixes = bool(scorer_names & {"prefix-match", "prefill-work"})
        self._learns_sessions = "session-affinity" in scorer_names

    def route(self, request: RequestInfo, candidates: list[WorkerLoad]) -> Route | None:
        picked = self.profile.pick(request, candidates)
        if picked is None:
            return None
        prefill = request.num_prompt_tokens
        if self._learns_prefixes and request.block_hashes:
            index = self.context.prefix_index
            matched = index.match_lengths(request.block_hashes).get(picked.name, 0)
            prefill = min(prefill, math.ceil(uncached_tokens(request, matched)))
            tokens_per_block = max(1.0, request.num_prompt_tokens / len(request.block_hashes))
            index.record(request.block_hashes, picked.name, tokens_per_block, picked.prefix_cache_tokens)
        if self._learns_sessions and request.session_id:
            self.context.sessions.record(request.session_id, picked.name)
        return Route(picked, prefill)

    def choose(self, request: RequestInfo, candidates: list[WorkerLoad]) -> WorkerLoad | None:
        route = self.route(request, candidates)
        return None if route is None else route.worker

    def forget_worker(self, name: str) -> None:
        if self._learns_prefixes:
            self.context.prefix_index.forget_worker(name)


def build_strategy(
    name: str, weights: dict[str, float] | None = None, rng: random.Random | None = None
) -> Strategy:
    try:
        config = STRATEGIES[name]
    except KeyError:
        raise ValueError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES)}") from None
    if weights:
        config = config.with_weights(weights)
    return Strategy(name, config, rng)
