"""The replay itself: requests on schedule, the fleets sampled every second, the live view redrawn."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

from rich.console import Console
from rich.live import Live

from tokenfleet_devkit.demo.accounting import FleetSample, RequestResult
from tokenfleet_devkit.demo.fleet_spec import FleetNames
from tokenfleet_devkit.demo.monitor import FleetMonitor
from tokenfleet_devkit.demo.replay import Counters, PromptIds, Replayer
from tokenfleet_devkit.demo.view import live_view
from tokenfleet_devkit.demo.workload import SIM_FLEET, TORCH_FLEET, Workload

SAMPLE_EVERY_S = 1.0
SAMPLE_TIMEOUT_S = 10.0
ANSWER_GRACE_S = 120.0  # after the last planned request, how long answers may take
PLAIN_STATUS_EVERY_S = 10.0


@dataclass
class Outcome:
    results: list[RequestResult]
    timelines: dict[str, list[FleetSample]]
    counters: Counters
    end_s: float
    events: dict[str, Counter[str]] = field(default_factory=dict)
    monitor_errors: int = 0


def phase_of(workload: Workload, t_s: float) -> str:
    if t_s < workload.burst_end_s:
        return "burst: replaying the trace"
    if t_s < workload.late_at_s:
        return "quiet: no traffic, the fleet scales down"
    return "late request: waking the fleet from zero"


@contextlib.contextmanager
def _live(console: Console) -> Iterator[Live | None]:
    if not console.is_terminal:
        yield None
        return
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        yield live


async def replay(
    workload: Workload,
    monitor: FleetMonitor,
    routers: Mapping[str, str],
    prompts: PromptIds,
    console: Console,
    note: str,
) -> Outcome:
    names: FleetNames = monitor.names
    timelines: dict[str, list[FleetSample]] = {SIM_FLEET: [], TORCH_FLEET: []}
    latest: dict[str, FleetSample] = {}
    monitor_errors = 0

    def is_cold(fleet: str) -> bool:
        sample = latest.get(fleet)
        return sample is None or sample.total_ready == 0

    models = {fleet: names.model(fleet) for fleet in routers}
    replayer = Replayer(routers, models, prompts, is_cold)
    start = time.monotonic()
    total_s = workload.end_s
    task = asyncio.create_task(replayer.run(workload.requests, start, workload.end_s + ANSWER_GRACE_S))
    last_plain = -PLAIN_STATUS_EVERY_S
    try:
        with _live(console) as live:
            while True:
                t_s = time.monotonic() - start
                try:
                    samples = await asyncio.wait_for(asyncio.to_thread(monitor.sample, t_s), SAMPLE_TIMEOUT_S)
                except Exception:  # an API blip must not stop the replay; the gap shows in the timeline
                    monitor_errors += 1
                    samples = {}
                for fleet, sample in samples.items():
                    latest[fleet] = sample
                    timelines[fleet].append(sample)
                phase = phase_of(workload, t_s)
                if live is not None:
                    live.update(live_view(phase, t_s, total_s, latest, replayer.counters, names, note))
                elif t_s - last_plain >= PLAIN_STATUS_EVERY_S:
                    last_plain = t_s
                    _print_plain(console, phase, t_s, latest, replayer.counters)
                if task.done():
                    break
                await asyncio.sleep(max(0.0, SAMPLE_EVERY_S - (time.monotonic() - start - t_s)))
        await task
    finally:
        await replayer.close_after(task)
    end_s = time.monotonic() - start
    events = {}
    with contextlib.suppress(Exception):
        events = await asyncio.wait_for(asyncio.to_thread(monitor.scaling_events), SAMPLE_TIMEOUT_S)
    return Outcome(replayer.results, timelines, replayer.counters, end_s, events, monitor_errors)


def _print_plain(
    console: Console, phase: str, t_s: float, latest: Mapping[str, FleetSample], counters: Counters
) -> None:
    fleets = "  ".join(
        f"{fleet}: desired {s.total_desired} ready {s.total_ready} queue {s.queue_depth or 0:.1f}"
        for fleet, s in latest.items()
    )
    console.print(
        f"[{t_s:5.0f}s] {phase} | {fleets} | sent {counters.sent} ok {counters.ok} "
        f"failed {counters.failed} in flight {counters.in_flight}",
        highlight=False,
    )
