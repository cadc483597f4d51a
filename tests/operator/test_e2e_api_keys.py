"""Router API keys end to end: a Kubernetes Secret named in `spec.routing.apiKeysSecret` reaches the
router pod the operator creates as a mounted file; the router refuses requests without one of its keys."""

from __future__ import annotations

import copy
from pathlib import Path

import openai
import pytest
import yaml

from tests.conftest import Cluster
from tests.operator.conftest import OperatorStarter
from tests.operator.kube_helpers import FLEET, router_url, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

KEY = "tf-e2e-key-0123456789abcdef"


def test_router_requires_the_keys_of_the_named_secret(
    crd: Cluster, operator_process: OperatorStarter, tiny_model: Path
) -> None:
    cluster = crd
    fleet = copy.deepcopy(FLEET)
    fleet["spec"]["model"] = {"name": "tiny", "uri": f"file://{tiny_model}"}
    fleet["spec"]["engine"] = {"backend": "sim", "maxNumSeqs": 4}
    fleet["spec"]["accelerators"] = fleet["spec"]["accelerators"][:1]
    fleet["spec"]["autoscaling"] = {"minReplicas": 1, "maxReplicas": 1}
    fleet["spec"]["routing"] = {"apiKeysSecret": "router-keys"}
    with cluster.namespace("keys") as ns:
        cluster.kubectl(
            "create", "secret", "generic", "router-keys", "-n", ns, f"--from-literal=api-keys={KEY}"
        )
        operator_process(ns)
        cluster.kubectl("apply", "-n", ns, "-f", "-", input=yaml.safe_dump(fleet))
        base_url = wait_for("a ready router", lambda: router_url(cluster, ns), timeout=120)

        anonymous = openai.OpenAI(base_url=base_url, api_key="not-a-key", max_retries=0, timeout=60)
        with pytest.raises(openai.AuthenticationError) as refused:
            anonymous.completions.create(model="tiny", prompt="hello", max_tokens=4)
        assert refused.value.status_code == 401

        keyed = openai.OpenAI(base_url=base_url, api_key=KEY, max_retries=0, timeout=120)
        answer = keyed.completions.create(model="tiny", prompt="hello", max_tokens=4)
        assert answer.usage is not None and answer.usage.completion_tokens == 4
