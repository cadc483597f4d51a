"""A minimal discrete-event loop: a heap of (time, sequence, callback); pure and deterministic.

Events at equal times run in the order they were scheduled (the sequence number breaks ties), so a
simulation with a seeded random generator replays exactly.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable

Callback = Callable[[float], None]


class EventLoop:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start
        self._heap: list[tuple[float, int, Callback]] = []
        self._sequence = 0
        self.num_processed = 0

    def __len__(self) -> int:
        return len(self._heap)

    def at(self, time: float, callback: Callback) -> None:
        """Run `callback(time)` at `time`; a time in the past runs at the current time."""
        self._sequence += 1
        heapq.heappush(self._heap, (max(time, self.now), self._sequence, callback))

    def run_until(self, end: float) -> None:
        """Process events up to and including `end`, then leave the clock at `end`."""
        heap = self._heap
        while heap and heap[0][0] <= end:
            time, _, callback = heapq.heappop(heap)
            self.now = time
            self.num_processed += 1
            callback(time)
        self.now = max(self.now, end)

    def run(self) -> None:
        """Process every event, including those the events schedule."""
        while self._heap:
            self.run_until(self._heap[0][0])
