"""Admission order: first come first served, or shortest prompt first with bounded aging."""

from __future__ import annotations

from collections import deque

import pytest

from tokenfleet_worker.admission import (
    AGING_TOKENS_PER_SECOND,
    FCFS,
    SHORTEST_PROMPT_FIRST,
    admission_key,
    check_policy,
    enqueue,
)

pytestmark = pytest.mark.unit


def order(policy: str, arrivals: list[tuple[str, float, int]]) -> list[str]:
    """Names in the order the queue would admit them, each enqueued in arrival order."""
    keys = {name: admission_key(policy, arrival, prompt) for name, arrival, prompt in arrivals}
    queue: deque[str] = deque()
    for name, _, _ in arrivals:
        enqueue(queue, name, keys.__getitem__)
    return list(queue)


def test_fcfs_keeps_arrival_order_whatever_the_lengths() -> None:
    arrivals = [("long", 0.0, 8000), ("short", 0.1, 10), ("mid", 0.2, 500)]
    assert order(FCFS, arrivals) == ["long", "short", "mid"]


def test_shortest_prompt_first_puts_short_prompts_ahead_of_a_long_one() -> None:
    arrivals = [("long", 0.0, 8000), ("short", 0.1, 10), ("mid", 0.2, 500)]
    assert order(SHORTEST_PROMPT_FIRST, arrivals) == ["short", "mid", "long"]


def test_aging_bounds_how_long_a_long_prompt_is_passed_over() -> None:
    # A 2500-token prompt counts as arriving 10 s late: requests arriving within those 10 s go ahead of
    # it, later ones queue behind it, however short.
    delay = 2500 / AGING_TOKENS_PER_SECOND
    arrivals = [("long", 0.0, 2500), ("early", delay - 0.5, 1), ("late", delay + 0.5, 1)]
    assert order(SHORTEST_PROMPT_FIRST, arrivals) == ["early", "long", "late"]


def test_equal_keys_keep_arrival_order() -> None:
    arrivals = [("a", 1.0, 100), ("b", 1.0, 100), ("c", 1.0, 100)]
    assert order(SHORTEST_PROMPT_FIRST, arrivals) == ["a", "b", "c"]


def test_an_item_put_back_at_the_head_is_passed_only_by_smaller_keys() -> None:
    queue: deque[float] = deque([5.0, 9.0])
    queue.appendleft(7.0)  # a preempted sequence goes back to the head
    enqueue(queue, 8.0, float)
    assert list(queue) == [7.0, 5.0, 8.0, 9.0]
    enqueue(queue, 1.0, float)
    assert list(queue) == [1.0, 7.0, 5.0, 8.0, 9.0]


def test_unknown_policies_are_refused_with_the_known_ones() -> None:
    assert check_policy(SHORTEST_PROMPT_FIRST) == SHORTEST_PROMPT_FIRST
    with pytest.raises(ValueError, match="fcfs, shortest-prompt-first"):
        check_policy("lifo")
