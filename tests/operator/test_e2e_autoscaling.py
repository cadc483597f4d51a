"""The whole loop on the local control plane, with worker and router pods run as real processes:

apply a fleet at zero -> a request to the router wakes it and is answered -> concurrent load through the
router raises the replicas -> load stops -> replicas fall without a failed request -> back to zero.
"""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml

from tests.conftest import Cluster
from tests.operator.kube_helpers import FLEET, get_json, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

CLIENTS = 12
LOAD_SECONDS = 40.0


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
        "scaleToZeroAfterSeconds": 20,
        "targets": {"queueDepthPerReplica": 2, "kvCacheUtilization": 0.8},
        "scaleUp": {"stabilizationSeconds": 0, "maxStep": 2},
        "scaleDown": {"stabilizationSeconds": 10, "maxStep": 1},
        "metrics": {"intervalSeconds": 1},
    }
    return fleet


def router_url(cluster: Cluster, ns: str) -> str | None:
    pods = get_json(cluster, "pods", "-n", ns, "-l", "tokenfleet.io/component=router")["items"]
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in pod.get("status", {}).get("conditions", [])}
        if conditions.get("Ready") == "True" and pod["status"].get("podIP"):
            return f"http://{pod['status']['podIP']}:8080/v1"
    return None


def replicas(cluster: Cluster, ns: str) -> int:
    return int(get_json(cluster, "deployment", "chat-worker-l40s", "-n", ns)["spec"].get("replicas", 0))


async def drive_load(base_url: str, clients: int, seconds: float) -> Counter[str]:
    """`clients` concurrent completion loops for `seconds`; counts outcomes ("ok" or the error type)."""
    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=3, timeout=120)
    deadline = time.monotonic() + seconds
    outcomes: Counter[str] = Counter()

    async def one_client(i: int) -> None:
        while time.monotonic() < deadline:
            try:
                await client.completions.create(model="tiny", prompt=f"client {i} says hello", max_tokens=48)
                outcomes["ok"] += 1
            except openai.APIError as err:
                outcomes[type(err).__name__] += 1

    await asyncio.gather(*(one_client(i) for i in range(clients)))
    await client.close()
    return outcomes


def test_scale_from_zero_up_down_and_back_to_zero(
    crd: Cluster,
    operator_process: Callable[[str], subprocess.Popen[bytes]],
    tmp_path: Path,
) -> None:
    cluster = crd
    model_dir = tmp_path / "tiny"
    subprocess.run(
        [sys.executable, "-m", "tokenfleet_worker.make_model", str(model_dir), "--preset", "tiny"],
        check=True,
        timeout=300,
        capture_output=True,
    )
    with cluster.namespace("scale") as ns:
        operator_process(ns)
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(fleet_spec(model_dir)))
        base_url = wait_for("a ready router", lambda: router_url(cluster, ns), timeout=120)
        assert replicas(cluster, ns) == 0

        # A request at zero is held by the router, wakes the fleet, and is answered.
        woken = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=180)
        first = woken.completions.create(model="tiny", prompt="wake up", max_tokens=8)
        assert first.choices[0].text is not None
        assert replicas(cluster, ns) >= 1

        # Concurrent load raises the replicas.
        heavy = asyncio.run(drive_load(base_url, CLIENTS, LOAD_SECONDS))
        peak = replicas(cluster, ns)
        assert heavy["ok"] > 0 and set(heavy) == {"ok"}, dict(heavy)
        assert peak >= 2, f"replicas stayed at {peak} under load"

        # Light load while the fleet shrinks: scale-down drains, so no accepted request fails.
        light = asyncio.run(drive_load(base_url, 1, 30.0))
        assert set(light) == {"ok"}, dict(light)
        assert replicas(cluster, ns) < peak
        reasons = {e["reason"] for e in get_json(cluster, "events", "-n", ns)["items"] if e.get("reason")}
        assert {"ScaledUp", "ScaledDown"} <= reasons

        # Idle: back to zero, and the resource says so.
        wait_for("scale to zero", lambda: replicas(cluster, ns) == 0, timeout=120)
        status = get_json(cluster, "infdep", "chat", "-n", ns)["status"]
        conditions = {c["type"]: c for c in status["conditions"]}
        assert conditions["Ready"]["reason"] == "ScaledToZero"
