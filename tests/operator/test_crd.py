"""The generated CRD: the committed copy matches, schema defaults agree with the parser, rules name fields."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tokenfleet_operator.crd import build_crd, render
from tokenfleet_operator.resource import parse_spec

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = ROOT / "manifests" / "crds" / "inferencedeployments.tokenfleet.io.yaml"
MINIMAL = {
    "model": {"name": "chat", "uri": "pvc://models/llama"},
    "accelerators": [{"name": "h100", "hourlyCost": 4.0}],
}


def _version() -> dict[str, Any]:
    return build_crd()["spec"]["versions"][0]


def _walk(schema: dict[str, Any], path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found = [(path, schema)]
    for name, child in (schema.get("properties") or {}).items():
        found += _walk(child, f"{path}.{name}")
    if "items" in schema:
        found += _walk(schema["items"], f"{path}[]")
    return found


def _apply_defaults(schema: dict[str, Any], value: Any) -> Any:
    """What the API server's structural defaulting does, for objects and lists of objects."""
    if schema.get("type") == "object" and isinstance(value, dict):
        for name, child in (schema.get("properties") or {}).items():
            if name not in value and "default" in child:
                value[name] = child["default"]
            if name in value:
                value[name] = _apply_defaults(child, value[name])
    if schema.get("type") == "array" and isinstance(value, list):
        return [_apply_defaults(schema["items"], item) for item in value]
    return value


def test_committed_yaml_is_the_generated_one() -> None:
    assert COMMITTED.read_text() == render(), "run: python -m tokenfleet_operator.crd > " + str(COMMITTED)
    assert yaml.safe_load(COMMITTED.read_text()) == build_crd()


def test_names_subresources_and_columns() -> None:
    crd = build_crd()
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == "inferencedeployments.tokenfleet.io"
    assert names["shortNames"] == ["infdep"] and names["categories"] == ["tokenfleet"]
    version = _version()
    assert version["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert "status" in version["subresources"]
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Ready", "Desired", "Queue", "KV%", "$/Mtok", "Age"]
    status_props = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    for column in version["additionalPrinterColumns"][:-1]:
        assert column["jsonPath"].removeprefix(".status.") in status_props


def test_every_field_is_described_for_kubectl_explain() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    undocumented = [
        path for path, s in _walk(spec, "spec") if not s.get("description") and not path.endswith("[]")
    ]
    undocumented = [p for p in undocumented if not p.startswith("spec.accelerators[].nodeSelector.")]
    assert undocumented == []


def test_every_rule_message_names_a_field() -> None:
    root = _version()["schema"]["openAPIV3Schema"]
    rules = [r for _, s in _walk(root) for r in s.get("x-kubernetes-validations", [])]
    assert len(rules) >= 7
    for rule in rules:
        assert "spec." in rule["message"] or "metadata." in rule["message"], rule


def test_schema_defaults_agree_with_the_parser() -> None:
    spec_schema = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    defaulted = _apply_defaults(spec_schema, yaml.safe_load(yaml.safe_dump(MINIMAL)))
    assert defaulted["autoscaling"]["scaleDown"]["stabilizationSeconds"] == 300
    assert parse_spec(defaulted) == parse_spec(MINIMAL)


def test_cel_fields_exist_in_the_schema() -> None:
    spec = _version()["schema"]["openAPIV3Schema"]["properties"]["spec"]
    paths = {p for p, _ in _walk(spec, "spec")}
    for field in (
        "spec.autoscaling.minReplicas",
        "spec.autoscaling.maxReplicas",
        "spec.autoscaling.scaleToZeroAfterSeconds",
        "spec.autoscaling.metrics.url",
        "spec.autoscaling.budget.maxHourlyCost",
        "spec.engine.maxBatchedTokens",
        "spec.replicas",
    ):
        assert field in paths
