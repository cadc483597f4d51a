"""A worker pod's process killed (SIGKILL) in the cluster under steady traffic through the router pod:
the pod's container is restarted and turns ready again, the router moves the traffic meanwhile so no
request fails, and the operator neither scales nor rewrites anything."""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import openai
import pytest

from tests.reliability import report
from tests.reliability.fleet import SharedFleet, restart_count
from tests.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NUM_CLIENTS = 2
MAX_REQUESTS = 400  # per client; the load also stops when the pod is back


def launched_pid(state: Path, pod_key: str) -> int:
    """The pid the cluster's pod launcher last started for `pod_key` (namespace/name)."""
    found = re.findall(
        rf"event=started pod={re.escape(pod_key)} pid=(\d+)", (state / "launcher.log").read_text()
    )
    assert found, f"the launcher never started {pod_key}"
    return int(found[-1])


def test_killed_worker_pod_is_restarted_while_traffic_moves_on(shared_fleet: SharedFleet) -> None:
    fleet = shared_fleet
    figures = report.ScenarioFigures("worker_pod_sigkill_in_cluster")
    fleet.set_autoscaling(minReplicas=2)
    fleet.wait_ready(2)
    generation = fleet.deployment()["metadata"]["generation"]
    victim = fleet.worker_pods()[0]
    name = victim["metadata"]["name"]
    pid = launched_pid(fleet.cluster.paths.state, f"{fleet.namespace}/{name}")

    outcomes: Counter[str] = Counter()
    stop = threading.Event()
    client = openai.OpenAI(base_url=fleet.router_base(), api_key="unused", max_retries=0, timeout=30)

    def load(i: int) -> None:
        for n in range(MAX_REQUESTS):
            if stop.is_set():
                return
            try:
                client.completions.create(model="tiny", prompt=f"client {i} request {n}", max_tokens=8)
                outcomes["completed"] += 1
            except openai.APIError as err:
                outcomes[f"failed:{type(err).__name__}"] += 1

    threads = [threading.Thread(target=load, args=(i,), daemon=True) for i in range(NUM_CLIENTS)]
    for thread in threads:
        thread.start()
    time.sleep(2.0)
    os.killpg(pid, signal.SIGKILL)  # the container dies: no SIGTERM, no drain
    figures.faults_injected += 1

    def restarted() -> bool:
        pod = next((p for p in fleet.worker_pods() if p["metadata"]["name"] == name), None)
        return pod is not None and restart_count(pod) >= 1 and fleet.status().get("readyReplicas") == 2

    try:
        wait_for("the killed worker's pod to restart and turn ready", restarted, timeout=90, every=1.0)
        wait_for("the router to use it again", lambda: fleet.router_fleet().get("available_workers") == 2, 30)
        time.sleep(2.0)  # some traffic on the restarted worker too
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=40)
    assert outcomes["completed"] > 0 and set(outcomes) == {"completed"}, dict(outcomes)
    assert [p["metadata"]["name"] for p in fleet.worker_pods()].count(name) == 1
    deployment = fleet.deployment()
    assert deployment["spec"]["replicas"] == 2 and deployment["metadata"]["generation"] == generation
    figures.faults_survived += 1
    figures.count("completed", outcomes["completed"])
    figures.details = {"restarted_pod": 1, "deployment_writes": 0}
    report.write(figures)
