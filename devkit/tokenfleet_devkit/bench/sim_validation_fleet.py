"""The real side of `tokenfleet bench sim-validation`: the setup's arrivals through a real fleet.

On the local control plane: the real operator (`tokenfleet-operator`, a local process watching one fresh
namespace), the InferenceDeployment from `validation_setup.fleet_document`, sim-backend worker pods and
the real router run as processes by the cluster's pod launcher. The arrivals go through the router with
the `openai` SDK (the demo's replayer: streaming, TTFT at the client). Watches on the worker pods and
the worker Deployment stamp every change on the replay's clock (pod_lifecycle.py): the ready curve
counts pods Ready and not being deleted (what the router routes to), and the cold start runs from the
operator's order (the Deployment's replicas rising) to the new pod's Ready. Once a second the fleet is
also sampled by listing (pods, and the resource's desired replicas and queue) for the report.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tokenfleet_devkit.bench.sim_validation_watch import (
    API_TIMEOUT_S,
    EventRecorder,
    OperatorTicks,
    PodWatcher,
    Sample,
    read_operator_ticks,
)
from tokenfleet_devkit.cluster import control_plane
from tokenfleet_devkit.demo import stage
from tokenfleet_devkit.demo.accounting import RequestResult
from tokenfleet_devkit.demo.install import free_port, install_crds
from tokenfleet_devkit.demo.replay import PromptIds, Replayer
from tokenfleet_devkit.demo.workload import BURST, SIM_FLEET, PlannedRequest
from tokenfleet_devkit.process_stop import stop_gracefully
from tokenfleet_devkit.sim.pod_lifecycle import Order, PodLife, order_to_ready_s, ready_curve
from tokenfleet_devkit.sim.validation import RunRecord
from tokenfleet_devkit.sim.validation_setup import MODEL_NAME, ValidationSetup, fleet_document
from tokenfleet_worker.make_tokenizer import write_tokenizer_files

Say = Callable[[str], None]
READY_TIMEOUT_S = 120.0


@dataclass
class FleetRun:
    record: RunRecord
    results: list[RequestResult]
    lives: dict[str, PodLife]  # from the watch, on the replay's clock
    orders: list[Order]  # the worker Deployment's replicas over time
    samples: list[Sample] = field(default_factory=list)
    sampler_errors: int = 0
    ticks: OperatorTicks | None = None  # the operator's autoscaling ticks during the window

    @property
    def tick_period_s(self) -> float | None:
        """Seconds between the operator's ticks: its interval plus each tick's own duration."""
        if self.ticks is None or self.ticks.count <= 0:
            return None
        return self.ticks.span_s / self.ticks.count

    @property
    def added_cold_starts_s(self) -> list[float]:
        """Order-to-Ready of each pod the autoscaler added during the replay, in order of creation."""
        return order_to_ready_s(self.orders, (p for p in self.lives.values() if p.added_s >= 0))

    @property
    def cold_starts_s(self) -> list[float]:
        """Order-to-Ready of the pods the autoscaler added during the replay (what the simulator's cold
        start stands for), sorted. Pods started before the replay, on an idle machine, count only when
        no pod was added."""
        added = self.added_cold_starts_s
        return sorted(added or order_to_ready_s(self.orders, self.lives.values()))

    @property
    def creation_to_ready_s(self) -> list[float]:
        """The part of the cold start after the controllers created each added pod: its add to its
        Ready, as the watch saw them."""
        lives = self.lives.values()
        return sorted(p.ready_s - p.added_s for p in lives if p.added_s >= 0 and p.ready_s is not None)


def _model_dir(root: Path) -> Path:
    """A tokenizer-only model folder: sim-backend workers read nothing else."""
    path = root / "model"
    if not (path / "tokenizer.json").exists():
        path.mkdir(parents=True, exist_ok=True)
        write_tokenizer_files(path, vocab_size=512, model_max_length=2048)
    return path


class RealFleet:
    """Set up (cluster if needed, namespace, operator, fleet), run the arrivals, and tear down."""

    def __init__(self, cluster: str, namespace: str, work_dir: Path, say: Say) -> None:
        self.paths = control_plane.Paths.default(cluster)
        self.namespace = namespace
        self.work_dir = work_dir
        self.say = say
        self.own_cluster = False
        self.operator: subprocess.Popen[bytes] | None = None
        self.metrics_port = free_port()
        self.watcher: PodWatcher | None = None
        self.recorder: EventRecorder | None = None

    def start(self, setup: ValidationSetup) -> tuple[str, PromptIds]:
        """Everything up and one worker ready; returns the router's host:port and the prompt pool."""
        if not control_plane.is_running(self.paths):
            self.own_cluster = True
            control_plane.up(say=self.say, paths=self.paths)
        model = _model_dir(self.work_dir)
        install_crds(self.paths)
        stage.fresh_namespace(self.paths, self.namespace, self.say)
        self._start_operator()
        body = fleet_document(setup.fleet, self.namespace, model)
        self.recorder = EventRecorder(self.paths.kubeconfig, self.namespace)
        self.recorder.start()
        stage.apply_fleets(self.paths, [body])
        self.watcher = watcher = PodWatcher(self.paths.kubeconfig, self.namespace)
        address: str = stage.wait_until(
            "the router to be Ready", watcher.router_address, READY_TIMEOUT_S, self._operator_log
        )
        stage.wait_until(
            f"{setup.fleet.min_replicas} worker(s) Ready",
            lambda: watcher.count()[0] >= setup.fleet.min_replicas,
            READY_TIMEOUT_S,
            self._operator_log,
        )
        self.say(f"fleet ready: router at http://{address}/v1")
        return address, PromptIds.from_model(model)

    def _start_operator(self) -> None:
        log = (self.work_dir / "operator.log").open("wb")
        command = [
            sys.executable,
            "-m",
            "tokenfleet_operator",
            "--standalone",
            f"--namespace={self.namespace}",
            f"--kubeconfig={self.paths.kubeconfig}",
            f"--metrics-port={self.metrics_port}",
        ]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.operator = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.close()

    def _operator_log(self) -> str:
        path = self.work_dir / "operator.log"
        return path.read_text(errors="replace")[-1500:] if path.exists() else ""

    def replay(
        self, setup: ValidationSetup, address: str, prompts: PromptIds, window_s: float, grace_s: float
    ) -> FleetRun:
        """Replay the arrivals, sampling over [0, window_s]; answers may take until `grace_s` after it."""
        assert self.watcher is not None and self.recorder is not None
        ticks = functools.partial(read_operator_ticks, self.metrics_port)
        watchers = (self.watcher, self.recorder)
        return asyncio.run(_replay(setup, watchers, ticks, address, prompts, window_s, grace_s))

    def close(self) -> None:
        if self.watcher is not None:
            self.watcher.close()
        if self.recorder is not None:
            self.recorder.stop()
        try:
            if not self.own_cluster:  # the operator must still run: it removes the fleet's finalizer
                stage.delete_fleets(self.paths, self.namespace, self.say)
        finally:
            self._stop_operator()
        if self.own_cluster:
            control_plane.down(say=self.say, paths=self.paths)
        else:
            stage.delete_namespace(self.paths, self.namespace, self.say)

    def _stop_operator(self) -> None:
        proc, self.operator = self.operator, None
        if proc is not None:
            stop_gracefully(proc)


async def _replay(
    setup: ValidationSetup,
    watchers: tuple[PodWatcher, EventRecorder],
    read_ticks: Callable[[], OperatorTicks],
    address: str,
    prompts: PromptIds,
    window_s: float,
    grace_s: float,
) -> FleetRun:
    planned = tuple(
        PlannedRequest(i, a.at_s, a.prompt_tokens, a.output_tokens, BURST, SIM_FLEET)
        for i, a in enumerate(setup.arrivals)
    )
    replayer = Replayer({SIM_FLEET: address}, {SIM_FLEET: MODEL_NAME}, prompts, lambda fleet: False)
    watcher, recorder = watchers
    samples: list[Sample] = []
    errors = 0
    ticks_before: OperatorTicks | None = None
    with contextlib.suppress(httpx.HTTPError):
        ticks_before = await asyncio.to_thread(read_ticks)
    ticks: OperatorTicks | None = None
    start = time.monotonic()
    task = asyncio.create_task(replayer.run(planned, start, window_s + grace_s))
    try:
        while True:
            t = time.monotonic() - start
            try:
                sample = await asyncio.wait_for(asyncio.to_thread(watcher.sample, t), API_TIMEOUT_S)
                samples.append(sample)
            except Exception:  # an API blip leaves a gap in the curve, not a failed run
                errors += 1
            if ticks is None and ticks_before is not None and t >= window_s:
                with contextlib.suppress(httpx.HTTPError):
                    now_ticks = await asyncio.to_thread(read_ticks)
                    ticks = now_ticks.since(ticks_before, time.monotonic() - start)
            if task.done() and t >= window_s:
                break
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - start - t)))
        await task
    finally:
        await replayer.close_after(task)
    results = sorted(replayer.results, key=lambda r: r.index)
    ttfts = tuple(r.ttft_s for r in results if r.is_ok and r.ttft_s is not None)
    await asyncio.to_thread(recorder.stop)
    lives, orders = recorder.since(start)
    record = RunRecord("real", len(planned), ttfts, ready_curve(lives, window_s))
    return FleetRun(record, results, lives, orders, samples, errors + recorder.errors, ticks)
