from __future__ import annotations

import asyncio

import pytest

from tokenfleet_router.admission import (
    Admission,
    AdmissionRejected,
    AdmissionSettings,
    Ticket,
    Verdict,
    decide,
)

pytestmark = pytest.mark.unit
SETTINGS = AdmissionSettings(max_held=2, saturated_timeout_s=5.0, cold_start_timeout_s=60.0, retry_after_s=3)


@pytest.mark.parametrize(
    ("name", "ticket", "now", "workers", "held", "verdict", "wait_until"),
    [
        ("new, saturated fleet: hold", None, 10.0, 2, 0, Verdict.HOLD, 15.0),
        ("new, zero workers: hold for cold start", None, 10.0, 0, 0, Verdict.HOLD, 70.0),
        ("queue full: 429 at once", None, 10.0, 2, 2, Verdict.OVERLOADED, 0.0),
        ("queue full, zero workers: 429 too", None, 10.0, 0, 2, Verdict.OVERLOADED, 0.0),
        ("held, saturated, deadline passed: 429", Ticket(0.0, 0.0), 5.0, 2, 2, Verdict.OVERLOADED, 0.0),
        ("held, saturated, before deadline", Ticket(0.0, 0.0), 4.9, 2, 2, Verdict.HOLD, 5.0),
        ("held for cold start, timeout: 503", Ticket(0.0), 60.0, 0, 1, Verdict.NO_CAPACITY, 0.0),
        (
            "held for cold start, workers appear busy: clock restarts",
            Ticket(0.0),
            50.0,
            1,
            1,
            Verdict.HOLD,
            55.0,
        ),
    ],
)
def test_decide(
    name: str,
    ticket: Ticket | None,
    now: float,
    workers: int,
    held: int,
    verdict: Verdict,
    wait_until: float,
) -> None:
    decision = decide(ticket, now, workers, held, SETTINGS)
    assert decision.verdict is verdict, name
    if verdict is Verdict.HOLD:
        assert decision.wait_until == wait_until, name
        assert decision.ticket is not None


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_acquire_returns_at_once_when_a_worker_is_free() -> None:
    admission = Admission(SETTINGS, FakeClock())
    assert await admission.acquire(lambda: "w1", lambda: 1) == "w1"
    assert admission.num_held == 0


async def test_held_request_is_answered_when_capacity_appears() -> None:
    clock = FakeClock()
    admission = Admission(SETTINGS, clock)
    free: list[str] = []
    task = asyncio.create_task(admission.acquire(lambda: free[0] if free else None, lambda: 0))
    await asyncio.sleep(0.01)
    assert admission.num_held == 1
    free.append("w1")
    admission.notify()
    assert await asyncio.wait_for(task, 1.0) == "w1"
    assert admission.num_held == 0


async def test_held_request_times_out_with_429_when_saturated() -> None:
    clock = FakeClock()
    admission = Admission(SETTINGS, clock)
    task: asyncio.Task[str] = asyncio.create_task(admission.acquire(lambda: None, lambda: 3))
    await asyncio.sleep(0.01)
    clock.now = 5.0  # the fake clock jumps past the deadline; a notify makes the waiter look
    admission.notify()
    with pytest.raises(AdmissionRejected) as info:
        await asyncio.wait_for(task, 1.0)
    assert info.value.verdict is Verdict.OVERLOADED
    assert info.value.retry_after_s == 3
    assert admission.num_held == 0


async def test_held_request_gets_503_after_cold_start_timeout() -> None:
    clock = FakeClock()
    admission = Admission(SETTINGS, clock)
    task: asyncio.Task[str] = asyncio.create_task(admission.acquire(lambda: None, lambda: 0))
    await asyncio.sleep(0.01)
    clock.now = 59.0
    admission.notify()
    await asyncio.sleep(0.01)
    assert not task.done()
    clock.now = 60.0
    admission.notify()
    with pytest.raises(AdmissionRejected) as info:
        await asyncio.wait_for(task, 1.0)
    assert info.value.verdict is Verdict.NO_CAPACITY


async def test_queue_is_bounded() -> None:
    admission = Admission(SETTINGS, FakeClock())
    held: list[asyncio.Task[str]] = [
        asyncio.create_task(admission.acquire(lambda: None, lambda: 1)) for _ in range(2)
    ]
    await asyncio.sleep(0.01)
    assert admission.num_held == 2
    with pytest.raises(AdmissionRejected):
        await admission.acquire(lambda: None, lambda: 1)
    for task in held:
        task.cancel()
    await asyncio.gather(*held, return_exceptions=True)
    assert admission.num_held == 0  # cancelled waiters (client went away) leave the count
