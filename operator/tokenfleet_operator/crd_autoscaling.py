"""The `spec.autoscaling` part of the InferenceDeployment schema: targets, windows, budget, metrics."""

from __future__ import annotations

from tokenfleet_operator import resource as r
from tokenfleet_operator.crd_fields import (
    Schema,
    enum,
    integer,
    number,
    obj,
    rule,
    string,
)


def _rules_schema(direction: str, stabilization: int, max_step: int) -> Schema:
    return obj(
        f"How fast to scale {direction}.",
        {
            "stabilizationSeconds": integer(
                f"Scale {direction} only as far as every recommendation of this many seconds allows.",
                0,
                3600,
                default=stabilization,
            ),
            "maxStep": integer(
                f"Most replicas added or removed in one decision when scaling {direction}.",
                1,
                1000,
                default=max_step,
            ),
        },
        default={},
    )


def autoscaling_schema() -> Schema:
    targets = obj(
        "Per-replica targets the autoscaler keeps the fleet at.",
        {
            "queueDepthPerReplica": number(
                "Waiting requests per replica.",
                exclusiveMinimum=True,
                minimum=0,
                maximum=10000,
                default=r.DEFAULT_QUEUE_DEPTH_PER_REPLICA,
            ),
            "kvCacheUtilization": number(
                "Fraction of KV-cache blocks in use.",
                exclusiveMinimum=True,
                minimum=0,
                maximum=1,
                default=r.DEFAULT_KV_CACHE_UTILIZATION,
            ),
            "tokensInFlightPerReplica": integer(
                "Prompt + generated tokens admitted per replica.", 1, 100000000
            ),
            "ttftP95Seconds": number(
                "SLO for the 95th percentile time to first token.",
                exclusiveMinimum=True,
                minimum=0,
                maximum=600,
            ),
            "maxCostPerMillionTokens": number(
                "Cost per million tokens to stay under.", exclusiveMinimum=True, minimum=0
            ),
        },
        default={},
    )
    metrics = obj(
        "Where fleet metrics come from.",
        {
            "source": enum(
                "direct scrapes worker pods; prometheus queries a server.",
                r.METRICS_SOURCES,
                r.DEFAULT_METRICS_SOURCE,
            ),
            "intervalSeconds": integer(
                "Seconds between decisions.", 1, 300, default=r.DEFAULT_METRICS_INTERVAL
            ),
            "url": string("Prometheus base URL (source prometheus).", pattern=r"^https?://", maxLength=2048),
            "profile": enum(
                "Metric names of the engine: tokenfleet, vllm or sglang.",
                r.METRIC_PROFILES,
                r.DEFAULT_METRICS_PROFILE,
            ),
        },
        default={},
        validations=[
            rule(
                "!has(self.source) || self.source != 'prometheus' || has(self.url)",
                "spec.autoscaling.metrics.url is required when spec.autoscaling.metrics.source is prometheus",
                ".url",
            )
        ],
    )
    properties: dict[str, Schema] = {
        "mode": enum(
            "builtin: the operator scales; external: HPA/KEDA write spec.replicas; "
            "off: spec.replicas as set.",
            r.MODES,
            r.DEFAULT_MODE,
        ),
        "minReplicas": integer(
            "Fewest worker replicas; 0 allows scale to zero.", 0, 10000, default=r.DEFAULT_MIN_REPLICAS
        ),
        "maxReplicas": integer(
            "Most worker replicas over all variants.", 1, 10000, default=r.DEFAULT_MAX_REPLICAS
        ),
        "targets": targets,
        "budget": obj(
            "Spending cap.",
            {"maxHourlyCost": number("Most the fleet may cost per hour.", exclusiveMinimum=True, minimum=0)},
            default={},
        ),
        "scaleUp": _rules_schema("up", r.DEFAULT_SCALE_UP_STABILIZATION, r.DEFAULT_SCALE_UP_MAX_STEP),
        "scaleDown": _rules_schema("down", r.DEFAULT_SCALE_DOWN_STABILIZATION, r.DEFAULT_SCALE_DOWN_MAX_STEP),
        "tolerance": number(
            "Relative deviation from a target that causes no change.",
            minimum=0,
            maximum=1,
            default=r.DEFAULT_TOLERANCE,
        ),
        "burstFactor": number(
            "Load this many times the target skips the scale-up window.",
            minimum=1,
            maximum=100,
            default=r.DEFAULT_BURST_FACTOR,
        ),
        "scaleToZeroAfterSeconds": integer(
            "Idle seconds before scaling to zero (needs minReplicas 0).", 0, 86400
        ),
        "metrics": metrics,
    }
    validations = [
        rule(
            "!has(self.minReplicas) || !has(self.maxReplicas) || self.minReplicas <= self.maxReplicas",
            "spec.autoscaling.minReplicas must be less than or equal to spec.autoscaling.maxReplicas",
            ".minReplicas",
        ),
        rule(
            "!has(self.scaleToZeroAfterSeconds) || !has(self.minReplicas) || self.minReplicas == 0",
            "spec.autoscaling.scaleToZeroAfterSeconds requires spec.autoscaling.minReplicas to be 0",
            ".scaleToZeroAfterSeconds",
        ),
    ]
    return obj(
        "How the operator sizes the fleet.",
        properties,
        default={},
        validations=validations,
    )
