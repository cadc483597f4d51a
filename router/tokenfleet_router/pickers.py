"""Pickers: choose one worker from the scored candidates."""

from __future__ import annotations

import random
from collections.abc import Sequence

from tokenfleet_router.types import RequestInfo, WorkerLoad

_TIE = 1e-9


class MaxScorePicker:
    """The highest total score; ties broken at random so equal workers share the load."""

    name = "max-score"

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()

    def pick(self, request: RequestInfo, scored: Sequence[tuple[WorkerLoad, float]]) -> WorkerLoad:
        best = max(score for _, score in scored)
        top = [worker for worker, score in scored if score >= best - _TIE]
        return top[0] if len(top) == 1 else self.rng.choice(top)


class RoundRobinPicker:
    """Each call takes the next worker by name after the previous pick, ignoring scores."""

    name = "round-robin"

    def __init__(self) -> None:
        self._last: str | None = None

    def pick(self, request: RequestInfo, scored: Sequence[tuple[WorkerLoad, float]]) -> WorkerLoad:
        ordered = sorted((worker for worker, _ in scored), key=lambda w: w.name)
        # Following the last name (not an index) stays fair when workers come and go.
        chosen = next((w for w in ordered if self._last is None or w.name > self._last), ordered[0])
        self._last = chosen.name
        return chosen
