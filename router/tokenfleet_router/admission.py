"""Backpressure: what to do with a request when no worker can take it right now.

Two situations, told apart by the number of workers known:
- every worker saturated: hold the request in a bounded queue until `saturated_timeout_s`
  after it first found workers, then 429 with Retry-After (a full queue gives 429 at once);
- no workers at all (scaled to zero): hold it while the operator scales up (it reads the held
  count), until `cold_start_timeout_s`, then 503.
`decide` is the pure rule with the time as an argument; `Admission` runs it for live requests.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeVar

T = TypeVar("T")

RECHECK_S = 0.25  # waiters re-check this often even without a wake-up, so a missed notify never hangs


@dataclass(frozen=True)
class AdmissionSettings:
    max_held: int = 1024
    saturated_timeout_s: float = 10.0
    cold_start_timeout_s: float = 600.0
    retry_after_s: int = 1


class Verdict(enum.Enum):
    HOLD = "hold"
    OVERLOADED = "overloaded"  # 429
    NO_CAPACITY = "no-capacity"  # 503


@dataclass(frozen=True)
class Ticket:
    """One held request's clocks: when it started waiting, and when it first saw workers."""

    held_since: float
    saw_workers_since: float | None = None


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    ticket: Ticket | None = None
    wait_until: float = 0.0


def decide(
    ticket: Ticket | None, now: float, num_workers: int, num_held: int, settings: AdmissionSettings
) -> Decision:
    """Hold or reject a request that found no worker; `ticket` is None for a request not yet held."""
    if ticket is None:
        if num_held >= settings.max_held:
            return Decision(Verdict.OVERLOADED)
        ticket = Ticket(held_since=now)
    if num_workers == 0:
        deadline = ticket.held_since + settings.cold_start_timeout_s
        if now >= deadline:
            return Decision(Verdict.NO_CAPACITY, ticket)
        return Decision(Verdict.HOLD, ticket, deadline)
    saw_workers_since = ticket.saw_workers_since
    if saw_workers_since is None:
        # Workers just appeared (or the fleet was busy from the start): the saturation clock starts now.
        saw_workers_since = now
        ticket = replace(ticket, saw_workers_since=now)
    deadline = saw_workers_since + settings.saturated_timeout_s
    if now >= deadline:
        return Decision(Verdict.OVERLOADED, ticket)
    return Decision(Verdict.HOLD, ticket, deadline)


class AdmissionRejected(Exception):
    def __init__(self, verdict: Verdict, retry_after_s: int) -> None:
        super().__init__(verdict.value)
        self.verdict = verdict
        self.retry_after_s = retry_after_s


class Admission:
    """Holds requests until `try_pick` finds a worker; wake it with `notify` when capacity changes."""

    def __init__(self, settings: AdmissionSettings, clock: Callable[[], float] = time.monotonic) -> None:
        self.settings = settings
        self.clock = clock
        self.num_held = 0
        self._changed = asyncio.Event()

    def notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    async def acquire(self, try_pick: Callable[[], T | None], num_workers: Callable[[], int]) -> T:
        """A picked worker, or AdmissionRejected once the rules say stop waiting."""
        picked = try_pick()
        if picked is not None:
            return picked
        ticket: Ticket | None = None
        try:
            while True:
                decision = decide(ticket, self.clock(), num_workers(), self.num_held, self.settings)
                if decision.verdict is not Verdict.HOLD:
                    raise AdmissionRejected(decision.verdict, self.settings.retry_after_s)
                if ticket is None:
                    self.num_held += 1
                ticket = decision.ticket
                timeout = min(RECHECK_S, max(0.0, decision.wait_until - self.clock()))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)
                picked = try_pick()
                if picked is not None:
                    return picked
        finally:
            if ticket is not None:
                self.num_held -= 1
