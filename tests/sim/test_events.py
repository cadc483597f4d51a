import pytest

from tokenfleet_devkit.sim.events import EventLoop

pytestmark = pytest.mark.unit


def test_events_run_in_time_order_and_ties_in_scheduling_order() -> None:
    loop = EventLoop()
    seen: list[tuple[float, str]] = []
    loop.at(2.0, lambda t: seen.append((t, "b")))
    loop.at(1.0, lambda t: seen.append((t, "a")))
    loop.at(2.0, lambda t: seen.append((t, "c")))
    loop.run()
    assert seen == [(1.0, "a"), (2.0, "b"), (2.0, "c")]
    assert loop.num_processed == 3


def test_run_until_stops_at_the_end_and_leaves_later_events() -> None:
    loop = EventLoop()
    seen: list[float] = []
    for t in (1.0, 5.0, 10.0):
        loop.at(t, seen.append)
    loop.run_until(5.0)
    assert seen == [1.0, 5.0]
    assert loop.now == 5.0
    assert len(loop) == 1


def test_events_scheduled_by_events_run_and_past_times_run_now() -> None:
    loop = EventLoop()
    seen: list[float] = []

    def chain(t: float) -> None:
        seen.append(t)
        if t < 2.0:
            loop.at(t + 1.0, chain)
        loop.at(t - 100.0, lambda now: seen.append(-now))  # in the past: runs at the current time

    loop.at(0.5, chain)
    loop.run()
    assert [x for x in seen if x >= 0] == [0.5, 1.5, 2.5]
    assert [-x for x in seen if x < 0] == [0.5, 1.5, 2.5]


def test_run_until_with_no_events_advances_the_clock() -> None:
    loop = EventLoop(start=3.0)
    loop.run_until(7.5)
    assert loop.now == 7.5
