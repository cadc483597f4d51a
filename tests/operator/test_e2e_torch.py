"""A fleet of torch-backend workers (a tiny random Llama on the CPU) on the local control plane: the
operator turns `spec.model.uri` into the worker's `--model`, the worker loads it and turns ready, the
operator scrapes its metrics, and a completion through the router comes back from the real model."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.conftest import Cluster
from tests.operator.conftest import OperatorStarter
from tests.operator.kube_helpers import (
    FLEET,
    apply,
    condition,
    fleet_status,
    router_url,
    wait_for,
    workers,
)

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def torch_fleet(model_dir: Path) -> dict[str, Any]:
    fleet = copy.deepcopy(FLEET)
    fleet["spec"]["model"] = {"name": "tiny", "uri": f"file://{model_dir}", "dtype": "float32"}
    fleet["spec"]["engine"] = {"backend": "torch", "maxNumSeqs": 4, "maxBatchedTokens": 256}
    fleet["spec"]["accelerators"] = fleet["spec"]["accelerators"][:1]
    fleet["spec"]["autoscaling"] = {
        "minReplicas": 1,
        "maxReplicas": 1,
        "scaleDown": {"stabilizationSeconds": 600},
        "metrics": {"intervalSeconds": 1},
    }
    return fleet


def test_torch_worker_serves_a_tiny_model_through_the_router(
    crd: Cluster, operator_process: OperatorStarter, tiny_model: Path
) -> None:
    cluster = crd
    with cluster.namespace("torch") as ns:
        operator_process(ns)
        apply(cluster, ns, torch_fleet(tiny_model))

        # The file:// URI becomes a plain path: the worker process loads it from this machine's disk.
        deployment = wait_for("the worker Deployment", lambda: workers(cluster, ns))[0]
        args = deployment["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--model") + 1] == str(tiny_model)
        assert args[args.index("--backend") + 1] == "torch"
        assert args[args.index("--device") + 1] == "cpu"

        # readyReplicas counts workers the operator could scrape, so 1 proves the torch worker's metrics
        # were read and parsed.
        wait_for(
            "a ready, scraped torch worker",
            lambda: fleet_status(cluster, ns).get("readyReplicas") == 1,
            timeout=180,
        )
        assert condition(cluster, ns, "MetricsStale")["status"] == "False"
        base_url = wait_for("a ready router", lambda: router_url(cluster, ns), timeout=120)

        client = openai.OpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=120)
        answers = [
            client.completions.create(model="tiny", prompt="the quick brown fox", max_tokens=8, temperature=0)
            for _ in range(2)
        ]
        assert answers[0].usage is not None and 0 < answers[0].usage.completion_tokens <= 8
        assert answers[0].choices[0].text == answers[1].choices[0].text  # greedy decoding is deterministic
        with pytest.raises(openai.NotFoundError):
            client.completions.create(model="no-such-model", prompt="hi", max_tokens=1)

        # The status carries what the operator measured on the worker.
        status = fleet_status(cluster, ns)
        assert status["kvCacheUtilization"] is not None and status["queueDepth"] is not None
