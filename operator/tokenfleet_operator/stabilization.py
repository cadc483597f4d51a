"""Stabilisation windows, in the direction Kubernetes' HPA uses: follow the safest recommendation.

Scaling up only goes as far as the *smallest* recommendation seen during the scale-up window (a spike
must last the window to count); scaling down only goes as far as the *largest* recommendation seen during
the scale-down window (load must stay low for the whole window). Between the two the count holds, which
is what keeps a fleet from flapping under oscillating load.

The caller may ask for a high quantile of the scale-down window instead of its largest value
(`down_quantile`, e.g. `NOISE_QUANTILE`) when it knows the load's swings are noise rather than bursts:
readings taken every few seconds swing with single requests, and a window of dozens of them keeps its
one largest swing for its whole length, holding a fleet sized for a moment that does not come back.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

# The share of the scale-down window's recommendations the count covers when the swings are noise.
NOISE_QUANTILE = 0.9


@dataclass(frozen=True)
class TimedRecommendation:
    time: float
    replicas: int


def _in_window(history: Sequence[TimedRecommendation], now: float, window: float) -> list[int]:
    return [r.replicas for r in history if now - window <= r.time <= now]


def stabilize(
    history: Sequence[TimedRecommendation],
    current: int,
    now: float,
    up_window: float,
    down_window: float,
    *,
    skip_up_window: bool = False,
    down_quantile: float = 1.0,
    unseen_ask: int | None = None,
) -> int:
    """The replica count to move towards; `history` must include the recommendation made at `now`.

    When the history does not reach back a whole scale-down window (the operator just started), the
    caller passes `unseen_ask`: what the unseen part of the window counts as asking for. HPA seeds its
    window with the replicas it first sees, and so does the policy: a restart never scales below the
    fleet it found before a whole window has been seen, while its own scale-ups since follow the window
    as usual (seeding with the current count held them all: a start-up backlog's fleet of 9 for five
    minutes where 5 served the load).
    """
    latest = max(history, key=lambda r: r.time).replicas
    ups = [latest] if skip_up_window else _in_window(history, now, up_window) or [latest]
    downs = _in_window(history, now, down_window) or [latest]
    # The latest ask always counts in full: the quantile trims old swings, never a scale-up.
    down_limit = max(_quantile(downs, down_quantile), latest)
    if unseen_ask is not None:
        down_limit = max(down_limit, unseen_ask)
    desired = current
    desired = max(desired, min(ups))
    desired = min(desired, down_limit)
    return desired


def _quantile(values: list[int], q: float) -> int:
    """Nearest rank: the smallest value at least `q` of the values are at or below."""
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def limit_step(current: int, desired: int, max_up: int, max_down: int) -> int:
    """Move at most `max_up` replicas up or `max_down` down from `current` in one decision."""
    if desired > current:
        return min(desired, current + max_up)
    return max(desired, current - max_down)
