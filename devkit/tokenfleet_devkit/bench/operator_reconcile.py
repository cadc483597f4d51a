"""Reconcile latency for `tokenfleet bench operator`: from a fleet's spec change, as acknowledged by the
API server, to the moment its worker Deployment carries the change, as seen by a watch.

The changes are sent on schedule by a small thread pool (a slow API server must not slow the offered
rate down), and the watch reads raw JSON lines per bench namespace on its own event loop: a watch that
builds client models for every event falls behind on a busy machine and would time itself, not the
operator.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

from tokenfleet_operator import GROUP, PLURAL, VERSION
from tokenfleet_operator.kube import KubeApi, kind_path

WORKERS = "tokenfleet.io/component=worker"
FLEET_LABEL = "tokenfleet.io/deployment"
NEW_MAX_NUM_SEQS = 17
SENDERS = 8


def max_num_seqs(deployment: dict[str, Any]) -> str | None:
    template = (deployment.get("spec") or {}).get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or [{}]
    args = containers[0].get("args") or []
    return str(args[args.index("--max-num-seqs") + 1]) if "--max-num-seqs" in args else None


class DeploymentWatch:
    """Records when each fleet's worker Deployment first shows the new maxNumSeqs."""

    def __init__(self, kubeconfig: Path, namespaces: set[str]) -> None:
        self.seen: dict[str, float] = {}  # ns/fleet -> monotonic time
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._thread = threading.Thread(
            target=self._run, args=(str(kubeconfig), sorted(namespaces)), daemon=True
        )
        self._thread.start()
        if not self._ready.wait(timeout=120):
            raise TimeoutError("the Deployment watch did not start")

    def _run(self, kubeconfig: str, namespaces: list[str]) -> None:
        api = KubeApi.from_kubeconfig(kubeconfig, max_connections=None)

        async def main() -> None:
            versions = [await self._list(api, ns) for ns in namespaces]
            pairs = zip(namespaces, versions, strict=True)
            self._tasks = [asyncio.create_task(self._follow(api, ns, v)) for ns, v in pairs]
            self._ready.set()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            await api.close()

        self._loop.run_until_complete(main())

    async def _list(self, api: KubeApi, namespace: str) -> str:
        body = await api.list_all(kind_path("Deployment", namespace), WORKERS)
        return str(body["metadata"]["resourceVersion"])

    async def _follow(self, api: KubeApi, namespace: str, version: str) -> None:
        while True:
            try:
                async with api.watch(kind_path("Deployment", namespace), WORKERS, version, 60) as response:
                    async for line in response.aiter_lines():
                        if line:
                            version = self._record(json.loads(line), version)
            except asyncio.CancelledError:
                raise
            except Exception:  # a dropped watch: resume from the last version seen
                await asyncio.sleep(0.2)

    def _record(self, event: dict[str, Any], version: str) -> str:
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        if event.get("type") not in ("ADDED", "MODIFIED"):
            return str(meta.get("resourceVersion", version))
        key = f"{meta.get('namespace')}/{(meta.get('labels') or {}).get(FLEET_LABEL)}"
        if max_num_seqs(obj) == str(NEW_MAX_NUM_SEQS):
            with self._lock:
                self.seen.setdefault(key, time.monotonic())
        return str(meta.get("resourceVersion", version))

    def stop(self) -> None:
        for task in self._tasks:
            self._loop.call_soon_threadsafe(task.cancel)
        self._thread.join(timeout=10)


def measure_reconcile(
    api: k8s.ApiClient, kubeconfig: Path, fleets: list[tuple[str, str]], rate: float, timeout: float
) -> dict[str, list[float]]:
    """Latencies in seconds, from the change's acknowledgement ("acked") and from its sending ("sent")."""
    custom = k8s.CustomObjectsApi(api)
    watch = DeploymentWatch(kubeconfig, {ns for ns, _ in fleets})
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}

    def change(ns: str, name: str) -> None:
        sent[f"{ns}/{name}"] = time.monotonic()
        patch = {"spec": {"engine": {"maxNumSeqs": NEW_MAX_NUM_SEQS}}}
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name, patch)
        acked[f"{ns}/{name}"] = time.monotonic()

    try:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=SENDERS) as pool:
            for i, (ns, name) in enumerate(fleets):
                time.sleep(max(0.0, started + i / rate - time.monotonic()))
                pool.submit(change, ns, name)
        deadline = time.monotonic() + timeout
        while len(watch.seen) < len(fleets) and time.monotonic() < deadline:
            time.sleep(0.2)  # the missing ones are reported
    finally:
        watch.stop()
    found = [k for k in watch.seen if k in acked]
    return {
        "acked": [max(0.0, watch.seen[k] - acked[k]) for k in found],
        "sent": [watch.seen[k] - sent[k] for k in found],
    }
