"""The reconciler and the operator process against the real local control plane.

- an unchanged fleet reconciled or ticked again sends no request at all, reads included: the reconciler
  reads the watch-backed cache (counted at the API client, and by the fleet's resourceVersion);
- children carry owner references, a removed variant's Deployment goes, a scaling change posts an Event;
- the operator process creates the children, survives a restart without repeating actions, and deleting
  the resource cascades to the children.
"""

from __future__ import annotations

import copy
import json
import signal
import time

import httpx
import pytest

from tests.conftest import Cluster
from tests.operator.conftest import OperatorStarter
from tests.operator.kube_helpers import FLEET, apply, get_json, wait_for
from tokenfleet_operator.kube import KubeApi
from tokenfleet_operator.operator_metrics import OperatorMetrics
from tokenfleet_operator.reconciler import Reconciler
from tokenfleet_operator.settings import OperatorSettings
from tokenfleet_operator.watch_cache import ClusterCache

pytestmark = pytest.mark.e2e


async def test_resync_of_an_unchanged_fleet_makes_zero_writes(crd: Cluster) -> None:
    cluster = crd
    with cluster.namespace("rec") as ns:
        apply(cluster, ns, FLEET)
        api = KubeApi.from_kubeconfig(str(cluster.kubeconfig))
        cache = ClusterCache(KubeApi.from_kubeconfig(str(cluster.kubeconfig), max_connections=None), (ns,))
        await cache.start(timeout=30)
        async with httpx.AsyncClient() as http:
            reconciler = Reconciler(api, http, OperatorSettings(), OperatorMetrics(), cache)
            try:
                body = get_json(cluster, "infdep", "chat", "-n", ns)
                assert await reconciler.reconcile(body) == 8
                api.requests.clear()
                assert await reconciler.reconcile(body) == 0
                assert api.requests == {}, "a resync read or wrote through the API server"

                deployments = get_json(cluster, "deployments", "-n", ns)["items"]
                names = sorted(d["metadata"]["name"] for d in deployments)
                assert names == ["chat-router", "chat-worker-h100", "chat-worker-l40s"]
                uid = body["metadata"]["uid"]
                assert all(d["metadata"]["ownerReferences"][0]["uid"] == uid for d in deployments)

                decision = await reconciler.tick(get_json(cluster, "infdep", "chat", "-n", ns))
                assert decision.total == 0 and not decision.is_change
                status = wait_for(
                    "status", lambda: get_json(cluster, "infdep", "chat", "-n", ns).get("status")
                )
                assert status["selector"] == "tokenfleet.io/component=worker,tokenfleet.io/deployment=chat"
                assert {c["type"] for c in status["conditions"]} >= {
                    "Ready",
                    "ScalingLimited",
                    "MetricsStale",
                }
                api.requests.clear()
                body = get_json(cluster, "infdep", "chat", "-n", ns)
                for _ in range(5):  # an unchanged fleet: no read, no write, however many ticks
                    await reconciler.tick(body)
                    await reconciler.reconcile(body)
                assert api.requests == {}, api.requests
                after = get_json(cluster, "infdep", "chat", "-n", ns)
                assert after["metadata"]["resourceVersion"] == body["metadata"]["resourceVersion"]

                # minReplicas 1 scales from zero on the cheapest variant and says so in an Event.
                patch = json.dumps({"spec": {"autoscaling": {"minReplicas": 1}}})
                cluster.kubectl("patch", "infdep", "chat", "-n", ns, "--type=merge", "-p", patch)
                decision = await reconciler.tick(get_json(cluster, "infdep", "chat", "-n", ns))
                assert decision.replicas == {"l40s": 1, "h100": 0}
                worker = get_json(cluster, "deployment", "chat-worker-l40s", "-n", ns)
                assert worker["spec"]["replicas"] == 1
                events = get_json(cluster, "events", "-n", ns, "--field-selector", "involvedObject.name=chat")
                assert any(e["reason"] == "ScaledUp" for e in events["items"])

                # A variant removed from the spec loses its Deployment.
                fleet = copy.deepcopy(FLEET)
                fleet["spec"]["accelerators"] = fleet["spec"]["accelerators"][:1]
                fleet["spec"]["autoscaling"]["minReplicas"] = 1
                apply(cluster, ns, fleet)
                await reconciler.reconcile(get_json(cluster, "infdep", "chat", "-n", ns))
                left = get_json(cluster, "deployments", "-n", ns)["items"]
                assert "chat-worker-h100" not in {d["metadata"]["name"] for d in left}
            finally:
                await cache.stop()
                await cache.api.close()
                await api.close()


def test_operator_creates_children_resumes_without_repeating_and_cascades(
    crd: Cluster, operator_process: OperatorStarter
) -> None:
    cluster = crd
    with cluster.namespace("op") as ns:
        fleet = copy.deepcopy(FLEET)
        fleet["spec"]["autoscaling"]["minReplicas"] = 1
        fleet["spec"]["autoscaling"]["scaleDown"] = {"stabilizationSeconds": 600}
        first = operator_process(ns).process
        apply(cluster, ns, fleet)

        def children() -> set[str]:
            items = get_json(cluster, "deployments", "-n", ns)["items"]
            return {d["metadata"]["name"] for d in items}

        wait_for("children", lambda: {"chat-router", "chat-worker-l40s", "chat-worker-h100"} <= children())
        status = wait_for(
            "status", lambda: get_json(cluster, "infdep", "chat", "-n", ns).get("status", {}).get("selector")
        )
        assert status == "tokenfleet.io/component=worker,tokenfleet.io/deployment=chat"
        worker = get_json(cluster, "deployment", "chat-worker-l40s", "-n", ns)
        assert worker["spec"]["replicas"] == 1

        first.send_signal(signal.SIGTERM)
        first.wait(timeout=30)

        def generations() -> dict[str, int]:
            # metadata.generation moves only on spec writes; pod churn changes status, not generation.
            names = ("chat-worker-l40s", "chat-worker-h100", "chat-router")
            return {n: get_json(cluster, "deployment", n, "-n", ns)["metadata"]["generation"] for n in names}

        def scaling_events() -> int:
            items = get_json(cluster, "events", "-n", ns, "--field-selector", "involvedObject.name=chat")[
                "items"
            ]
            return sum(e.get("count", 1) for e in items if e["reason"] in ("ScaledUp", "ScaledDown"))

        before, events_before = generations(), scaling_events()
        second = operator_process(ns).process
        time.sleep(8)  # a few intervals of the resumed operator
        assert second.poll() is None
        assert generations() == before, "the resumed operator rewrote children that had not changed"
        assert scaling_events() == events_before

        cluster.kubectl("delete", "infdep", "chat", "-n", ns, "--wait=true", "--timeout=60s")
        wait_for("children to be garbage-collected", lambda: not children(), timeout=90)
