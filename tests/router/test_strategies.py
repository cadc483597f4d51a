from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import pytest

from tests.router.loads import load
from tokenfleet_router.bounded_load import load_bound
from tokenfleet_router.prefix_hash import block_hashes
from tokenfleet_router.strategies import STRATEGIES, Strategy, build_strategy
from tokenfleet_router.types import RequestInfo, WorkerLoad

pytestmark = pytest.mark.unit


def chosen(strategy: Strategy, request: RequestInfo, loads: list[WorkerLoad]) -> str:
    picked = strategy.choose(request, loads)
    assert picked is not None
    return picked.name


def fleet(n: int, **fields: object) -> list[WorkerLoad]:
    return [load(f"w{i}", **fields) for i in range(n)]


def test_every_strategy_builds_and_skips_unavailable_and_saturated_workers() -> None:
    loads = [load("down", is_available=False), load("busy", is_saturated=True), load("ok")]
    for name in STRATEGIES:
        strategy = build_strategy(name, rng=random.Random(0))
        assert chosen(strategy, RequestInfo(session_id="s", block_hashes=(1, 2)), loads) == "ok"
        assert strategy.choose(RequestInfo(), loads[:2]) is None


def test_unknown_strategy() -> None:
    with pytest.raises(ValueError, match="unknown strategy 'fastest'"):
        build_strategy("fastest")


def test_round_robin_spreads_evenly() -> None:
    strategy = build_strategy("round-robin")
    counts = Counter(chosen(strategy, RequestInfo(), fleet(3)) for _ in range(30))
    assert counts == {"w0": 10, "w1": 10, "w2": 10}


def test_least_load_prefers_short_queue_free_kv_and_few_tokens() -> None:
    strategy = build_strategy("least-load", rng=random.Random(0))
    loads = [
        load("queued", num_waiting=6, kv_cache_usage=0.5),
        load("full", num_waiting=0, kv_cache_usage=0.9, tokens_in_flight=5000, num_in_flight=3),
        load("light", num_waiting=0, kv_cache_usage=0.1, tokens_in_flight=100, num_in_flight=1),
    ]
    assert chosen(strategy, RequestInfo(), loads) == "light"


def test_least_load_samples_two_in_a_large_fleet() -> None:
    strategy = build_strategy("least-load", rng=random.Random(0))
    # One idle worker among 19 busy ones: full least-load would always pick it; two random
    # choices see it only about one time in ten.
    loads = [load("idle")] + [load(f"busy{i}", num_waiting=5, num_in_flight=5) for i in range(19)]
    picks = Counter(chosen(strategy, RequestInfo(), loads) for _ in range(200))
    assert 5 < picks["idle"] < 60  # ~ 2/20 of the time
    assert len(picks) > 10


def test_weights_can_be_overridden() -> None:
    loads = [load("a", num_waiting=5, kv_cache_usage=0.0), load("b", num_waiting=0, kv_cache_usage=0.6)]
    only_kv = build_strategy("least-load", {"queue-depth": 0.0, "tokens-in-flight": 0.0, "in-flight": 0.0})
    only_queue = build_strategy("least-load", {"kv-usage": 0.0})
    assert chosen(only_kv, RequestInfo(), loads) == "a"
    assert chosen(only_queue, RequestInfo(), loads) == "b"


def prompt(system: str, user: str) -> RequestInfo:
    return RequestInfo(block_hashes=block_hashes((system * 200 + user * 100).encode()))


def test_prefix_affinity_returns_to_the_worker_holding_the_prefix() -> None:
    strategy = build_strategy("prefix-affinity", rng=random.Random(0))
    first = strategy.choose(prompt("A", "1"), fleet(4))
    assert first is not None
    # Same system prompt, different user turn: the same worker, as long as it is within the bound.
    for user in "2345":
        assert chosen(strategy, prompt("A", user), fleet(4)) == first.name


def test_a_route_counts_only_the_prefill_the_worker_is_expected_to_miss() -> None:
    strategy = build_strategy("prefix-affinity", rng=random.Random(0))
    first = prompt("A", "1")
    tokens = 4 * len(first.block_hashes) * 16  # 16 tokens a block, evenly
    route = strategy.route(replace(first, num_prompt_tokens=tokens), fleet(4))
    assert route is not None and route.prefill_tokens == tokens  # nothing cached anywhere yet
    again = strategy.route(replace(prompt("A", "2"), num_prompt_tokens=tokens), fleet(4))
    assert again is not None and again.worker.name == route.worker.name
    shared = sum(a == b for a, b in zip(first.block_hashes, prompt("A", "2").block_hashes, strict=True))
    assert 0 < again.prefill_tokens == tokens - shared * tokens // len(first.block_hashes)
    plain = build_strategy("round-robin").route(replace(first, num_prompt_tokens=tokens), fleet(2))
    assert plain is not None and plain.prefill_tokens == tokens  # no prefix index: the whole prompt


def test_prefix_affinity_spreads_distinct_prefixes() -> None:
    strategy = build_strategy("prefix-affinity", rng=random.Random(0))
    homes = Counter(chosen(strategy, prompt(chr(65 + i % 26) + str(i), "u"), fleet(4)) for i in range(200))
    assert len(homes) == 4
    assert max(homes.values()) < 2.5 * min(homes.values())


def test_prefix_affinity_bounds_a_hot_prefix() -> None:
    strategy = build_strategy("prefix-affinity", rng=random.Random(0))
    in_flight = {f"w{i}": 0 for i in range(4)}
    for _ in range(40):  # one hot prefix, nothing finishes, no load reports (non-streaming)
        loads = [load(n, num_in_flight=k) for n, k in in_flight.items()]
        picked = strategy.choose(prompt("HOT", "x"), loads)
        assert picked is not None
        in_flight[picked.name] += 1
    # The bounded-load filter alone caps any worker at 2x the mean: the prefix spilled.
    assert max(in_flight.values()) <= load_bound(39, 4, 2.0) + 1 == 20
    assert sum(1 for k in in_flight.values() if k > 0) >= 2


def test_prefix_affinity_spreads_a_hot_prefix_by_its_queued_prefill() -> None:
    strategy = build_strategy("prefix-affinity", rng=random.Random(0))
    hot = replace(prompt("HOT", "x"), num_prompt_tokens=1000)
    queued = {f"w{i}": 0 for i in range(4)}
    for _ in range(40):  # streaming requests still in prefill: the router counts their prompts
        loads = [load(n, num_in_flight=k, prefill_tokens_in_flight=1000 * k) for n, k in queued.items()]
        queued[chosen(strategy, hot, loads)] += 1
    # Once the prefill queued at the prefix's worker outweighs the cache hit, it spills, long
    # before the load bound would act.
    assert min(queued.values()) >= 5
    assert max(queued.values()) <= 15


def test_prefix_affinity_weighs_a_cache_hit_against_queued_prefill() -> None:
    strategy = build_strategy("prefix-affinity", rng=random.Random(0))
    first = replace(prompt("C", "1"), num_prompt_tokens=10_000)
    home = chosen(strategy, first, fleet(2))
    other = next(w.name for w in fleet(2) if w.name != home)
    follow_up = replace(prompt("C", "2"), num_prompt_tokens=10_000)
    # A short queue at the home worker is worth the ~2/3 of the prompt it has cached...
    loads = [load(home, prefill_tokens_in_flight=2_000), load(other)]
    assert chosen(strategy, follow_up, loads) == home
    # ...a queue longer than the whole prompt is not.
    loads = [load(home, prefill_tokens_in_flight=40_000), load(other)]
    assert chosen(strategy, follow_up, loads) == other


def test_least_load_prefers_the_shortest_queued_prefill() -> None:
    strategy = build_strategy("least-load", rng=random.Random(0))
    loads = [
        load("prefilling", num_in_flight=1, tokens_in_flight=9_000, prefill_tokens_in_flight=8_000),
        load("decoding", num_in_flight=2, tokens_in_flight=9_000, prefill_tokens_in_flight=0),
    ]
    assert chosen(strategy, RequestInfo(num_prompt_tokens=1_000), loads) == "decoding"


def test_prefix_affinity_forgets_what_a_worker_cache_could_not_keep() -> None:
    strategy = build_strategy("prefix-affinity", rng=random.Random(0))
    first = replace(prompt("K", "1"), num_prompt_tokens=1_000)
    # The worker reports room for ~1.5 prompts: after a second, different prompt the router no
    # longer counts the first as cached there, so it does not follow a cache that is gone.
    small = [load("w0", prefix_cache_tokens=1_500)]
    assert chosen(strategy, first, small) == "w0"
    assert strategy.context.prefix_index.match_lengths(first.block_hashes) == {"w0": len(first.block_hashes)}
    chosen(strategy, replace(prompt("L", "1"), num_prompt_tokens=1_000), small)
    assert strategy.context.prefix_index.match_lengths(first.block_hashes).get("w0", 0) < len(
        first.block_hashes
    )


def test_prefix_affinity_forgets_departed_workers() -> None:
    strategy = build_strategy("prefix-affinity", rng=random.Random(0))
    picked = strategy.choose(prompt("F", "1"), fleet(2))
    assert picked is not None
    strategy.forget_worker(picked.name)
    assert strategy.context.prefix_index.match_lengths(prompt("F", "1").block_hashes) == {}


def test_session_affinity_sticks_until_its_worker_is_saturated_then_follows() -> None:
    strategy = build_strategy("session-affinity", rng=random.Random(0))
    home = strategy.choose(RequestInfo(session_id="chat-1"), fleet(3))
    assert home is not None
    for _ in range(5):
        # Even when another worker looks slightly lighter, the conversation stays.
        loads = [load(w.name, num_in_flight=1 if w.name == home.name else 0) for w in fleet(3)]
        assert chosen(strategy, RequestInfo(session_id="chat-1"), loads) == home.name
    loads = [load(w.name, is_saturated=w.name == home.name) for w in fleet(3)]
    moved = strategy.choose(RequestInfo(session_id="chat-1"), loads)
    assert moved is not None and moved.name != home.name
    assert chosen(strategy, RequestInfo(session_id="chat-1"), fleet(3)) == moved.name
