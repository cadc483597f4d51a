"""One table test per scorer: inputs, expected scores."""

from __future__ import annotations

import pytest

from tests.router.loads import load
from tokenfleet_router.prefix_hash import PrefixIndex, block_hashes
from tokenfleet_router.scorers import lower_is_better
from tokenfleet_router.scorers.in_flight import InFlightScorer
from tokenfleet_router.scorers.kv_usage import KvUsageScorer
from tokenfleet_router.scorers.prefill_work import PrefillWorkScorer, uncached_tokens
from tokenfleet_router.scorers.prefix_match import PrefixMatchScorer
from tokenfleet_router.scorers.queue_depth import QueueDepthScorer
from tokenfleet_router.scorers.ring_affinity import RingAffinityScorer, request_key
from tokenfleet_router.scorers.session_affinity import SessionAffinityScorer, SessionTable
from tokenfleet_router.scorers.tokens_in_flight import TokensInFlightScorer
from tokenfleet_router.types import RequestInfo

pytestmark = pytest.mark.unit
REQUEST = RequestInfo(model="m")


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, {}),
        ({"a": 3.0}, {"a": 1.0}),
        ({"a": 2.0, "b": 2.0}, {"a": 1.0, "b": 1.0}),
        ({"a": 0.0, "b": 5.0, "c": 10.0}, {"a": 1.0, "b": 0.5, "c": 0.0}),
    ],
)
def test_lower_is_better(values: dict[str, float], expected: dict[str, float]) -> None:
    assert lower_is_better(values) == expected


@pytest.mark.parametrize(
    ("waiting", "expected"),
    [((0, 0), (1.0, 1.0)), ((0, 4), (1.0, 0.0)), ((2, 4, 6), (1.0, 0.5, 0.0))],
)
def test_queue_depth(waiting: tuple[int, ...], expected: tuple[float, ...]) -> None:
    loads = [load(f"w{i}", num_waiting=q) for i, q in enumerate(waiting)]
    scores = QueueDepthScorer().score(REQUEST, loads)
    assert tuple(scores[w.name] for w in loads) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("usage", "expected"), [(0.0, 1.0), (0.25, 0.75), (1.0, 0.0), (1.2, 0.0), (-0.1, 1.0)]
)
def test_kv_usage_is_absolute_and_clamped(usage: float, expected: float) -> None:
    assert KvUsageScorer().score(REQUEST, [load("w", kv_cache_usage=usage)])["w"] == pytest.approx(expected)


def test_in_flight_and_tokens_in_flight_prefer_the_lightest() -> None:
    loads = [
        load("a", num_in_flight=1, tokens_in_flight=9000),
        load("b", num_in_flight=3, tokens_in_flight=300),
    ]
    assert InFlightScorer().score(REQUEST, loads) == {"a": 1.0, "b": 0.0}
    assert TokensInFlightScorer().score(REQUEST, loads) == {"a": 0.0, "b": 1.0}


def test_prefix_match_scores_fraction_of_blocks_served() -> None:
    index = PrefixIndex()
    chain = block_hashes(b"x" * 64 * 4)
    index.record(chain, "full")
    index.record(chain[:1], "quarter")
    scorer = PrefixMatchScorer(index)
    scores = scorer.score(RequestInfo(block_hashes=chain), [load("full"), load("quarter"), load("none")])
    assert scores == {"full": 1.0, "quarter": 0.25, "none": 0.0}
    assert scorer.score(RequestInfo(), [load("full")]) == {"full": 0.0}  # shorter than a block


@pytest.mark.parametrize(
    ("num_prompt_tokens", "matched", "expected"),
    [(1000, 0, 1000.0), (1000, 3, 250.0), (1000, 4, 0.0), (1000, 9, 0.0), (0, 2, 2.0)],
)
def test_uncached_tokens_of_a_four_block_prompt(
    num_prompt_tokens: int, matched: int, expected: float
) -> None:
    request = RequestInfo(block_hashes=(1, 2, 3, 4), num_prompt_tokens=num_prompt_tokens)
    assert uncached_tokens(request, matched) == expected
    assert uncached_tokens(RequestInfo(num_prompt_tokens=70), 0) == 70.0  # shorter than a block


def test_prefill_work_weighs_queued_prefill_against_cache_hits() -> None:
    index = PrefixIndex()
    chain = block_hashes(b"x" * 64 * 4)
    index.record(chain, "cached")
    request = RequestInfo(block_hashes=chain, num_prompt_tokens=999)
    loads = [
        load("cached", prefill_tokens_in_flight=1999),  # cost 1999 + 0
        load("idle"),  # cost 0 + 999 missed, x2
        load("busy", prefill_tokens_in_flight=2000, num_in_flight=9),  # cost 2000 + 999 missed, x2
    ]
    assert PrefillWorkScorer(index, miss_weight=2.0).score(request, loads) == pytest.approx(
        {"cached": 1999 / 2000, "idle": 1.0, "busy": 1999 / 3999}
    )
    # Decoding requests (in flight, nothing left to prefill) cost nothing; no index, no hits.
    queue_only = PrefillWorkScorer(None).score(request, [load("a", num_in_flight=50), load("b")])
    assert queue_only == {"a": 1.0, "b": 1.0}
    with pytest.raises(ValueError, match="miss_weight"):
        PrefillWorkScorer(index, miss_weight=-1.0)


def test_ring_affinity_scores_ring_order_and_is_stable_under_candidate_changes() -> None:
    scorer = RingAffinityScorer()
    request = RequestInfo(block_hashes=(123456789,))
    scores = scorer.score(request, [load("a"), load("b"), load("c"), load("d")])
    assert sorted(scores.values()) == [0.25, 0.5, 0.75, 1.0]
    home = max(scores, key=lambda n: scores[n])
    # Removing a non-home worker keeps the home; removing the home promotes the next on the ring.
    others = [n for n in scores if n != home]
    assert max((s := scorer.score(request, [load(home), load(others[0])])), key=lambda n: s[n]) == home
    runner_up = max(others, key=lambda n: scores[n])
    fewer = scorer.score(request, [load(n) for n in others])
    assert max(fewer, key=lambda n: fewer[n]) == runner_up


def test_ring_affinity_without_key_scores_zero_and_key_falls_back_to_session() -> None:
    scorer = RingAffinityScorer()
    assert scorer.score(RequestInfo(), [load("a"), load("b")]) == {"a": 0.0, "b": 0.0}
    assert request_key(RequestInfo(session_id="s1")) == request_key(RequestInfo(session_id="s1"))
    # The last block stands for the whole prefix; trace ids that are small integers still spread.
    assert request_key(RequestInfo(block_hashes=(5, 6), session_id="s1")) == request_key(
        RequestInfo(block_hashes=(6,))
    )
    keys = {request_key(RequestInfo(block_hashes=(i,))) for i in range(100)}
    assert len(keys) == 100 and max(k for k in keys if k is not None) > 2**62


def test_session_affinity() -> None:
    sessions = SessionTable()
    sessions.record("s1", "b")
    scorer = SessionAffinityScorer(sessions)
    loads = [load("a"), load("b")]
    assert scorer.score(RequestInfo(session_id="s1"), loads) == {"a": 0.0, "b": 1.0}
    assert scorer.score(RequestInfo(session_id="new"), loads) == {"a": 0.0, "b": 0.0}
    assert scorer.score(RequestInfo(), loads) == {"a": 0.0, "b": 0.0}


def test_session_table_is_lru_bounded() -> None:
    sessions = SessionTable(capacity=2)
    sessions.record("s1", "a")
    sessions.record("s2", "a")
    sessions.get("s1")
    sessions.record("s1", "b")  # refreshes s1
    sessions.record("s3", "a")
    assert len(sessions) == 2
    assert sessions.get("s2") is None
    assert sessions.get("s1") == "b"
