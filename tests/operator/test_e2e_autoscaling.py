"""The whole loop on the local control plane, with worker and router pods run as real processes:

apply a fleet at zero -> a request to the router wakes it and is answered -> concurrent load through the
router raises the replicas -> light load while replicas fall, without one failed request -> idle: back
to zero, and the resource says ScaledToZero.

Clients never retry (`max_retries=0`), so any request the fleet accepted and then dropped shows up.
"""

from __future__ import annotations

import asyncio
import copy
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.conftest import Cluster
from tests.operator.conftest import OperatorStarter
from tests.operator.kube_helpers import (
    FLEET,
    condition,
    get_json,
    router_url,
    scaling_events,
    wait_for,
    worker_replicas,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

HEAVY_CLIENTS = 12
LIGHT_CLIENTS = 2
MAX_LOAD_SECONDS = 60.0  # per phase; each phase ends early once the replicas moved as expected


def fleet_spec(model_dir: Path) -> dict[str, Any]:
    fleet = copy.deepcopy(FLEET)
    fleet["spec"]["model"] = {"name": "tiny", "uri": f"file://{model_dir}"}
    fleet["spec"]["engine"] = {
        "backend": "sim",
        "maxNumSeqs": 4,
        "maxBatchedTokens": 256,
        "drainTimeoutSeconds": 30,
    }
    fleet["spec"]["accelerators"] = fleet["spec"]["accelerators"][:1]
    fleet["spec"]["autoscaling"] = {
        "minReplicas": 0,
        "maxReplicas": 3,
        "scaleToZeroAfterSeconds": 10,
        "targets": {"queueDepthPerReplica": 2, "kvCacheUtilization": 0.8},
        "scaleUp": {"stabilizationSeconds": 0, "maxStep": 2},
        "scaleDown": {"stabilizationSeconds": 6, "maxStep": 1},
        "metrics": {"intervalSeconds": 1},
    }
    return fleet


async def drive_load(
    base_url: str, clients: int, is_done: Callable[[], bool], min_seconds: float, max_seconds: float
) -> Counter[str]:
    """`clients` concurrent completion loops until `is_done()` (checked each second, after `min_seconds`)
    or `max_seconds`; counts outcomes ("ok" or the error type)."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
    started = time.monotonic()
    stop = asyncio.Event()
    outcomes: Counter[str] = Counter()

    async def one_client(i: int) -> None:
        n = 0
        while not stop.is_set():
            try:
                await client.completions.create(
                    model="tiny", prompt=f"client {i} request {n} says hello", max_tokens=48
                )
                outcomes["ok"] += 1
            except openai.APIError as err:
                outcomes[type(err).__name__] += 1
            n += 1

    async def watch() -> None:
        while time.monotonic() - started < max_seconds:
            await asyncio.sleep(1.0)
            if time.monotonic() - started >= min_seconds and await asyncio.to_thread(is_done):
                break
        stop.set()

    await asyncio.gather(watch(), *(one_client(i) for i in range(clients)))
    await client.close()
    return outcomes


def test_scale_from_zero_up_down_and_back_to_zero(
    crd: Cluster,
    operator_process: OperatorStarter,
    tiny_model: Path,
) -> None:
    cluster = crd
    with cluster.namespace("scale") as ns:
        operator_process(ns)
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(fleet_spec(tiny_model)))
        base_url = wait_for("a ready router", lambda: router_url(cluster, ns), timeout=120)
        assert worker_replicas(cluster, ns) == 0

        # A request at zero is held by the router, wakes the fleet, and is answered.
        woken = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=180)
        first = woken.completions.create(model="tiny", prompt="wake up", max_tokens=8)
        assert first.choices[0].text is not None
        assert worker_replicas(cluster, ns) >= 1

        # Concurrent load raises the replicas; keep it up until the new replicas have served a while.
        def has_scaled_up() -> bool:
            status = get_json(cluster, "infdep", "chat", "-n", ns).get("status") or {}
            return int(status.get("readyReplicas", 0)) >= 2

        heavy = asyncio.run(drive_load(base_url, HEAVY_CLIENTS, has_scaled_up, 8.0, MAX_LOAD_SECONDS))
        peak = worker_replicas(cluster, ns)
        assert heavy["ok"] > 0 and set(heavy) == {"ok"}, dict(heavy)
        assert peak >= 2, f"replicas stayed at {peak} under load"

        # Light load while the fleet shrinks: scale-down drains, so no accepted request fails.
        def has_scaled_down() -> bool:
            is_stable = condition(cluster, ns, "Progressing").get("status") == "False"
            return worker_replicas(cluster, ns) == 1 and is_stable

        light = asyncio.run(drive_load(base_url, LIGHT_CLIENTS, has_scaled_down, 3.0, MAX_LOAD_SECONDS))
        assert light["ok"] > 0 and set(light) == {"ok"}, dict(light)
        assert worker_replicas(cluster, ns) < peak
        reasons = {e["reason"] for e in scaling_events(cluster, ns)}
        assert {"ScaledUp", "ScaledDown"} <= reasons

        # Idle: back to zero, and the resource says so once the last worker has gone.
        wait_for("scale to zero", lambda: worker_replicas(cluster, ns) == 0, timeout=120)
        wait_for(
            "Ready=ScaledToZero",
            lambda: condition(cluster, ns, "Ready").get("reason") == "ScaledToZero",
            timeout=30,
        )
