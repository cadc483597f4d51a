"""The InferenceDeployment spec as frozen dataclasses, with defaults applied.

`parse_spec` is the one place that turns the raw `spec` dict into typed values. The defaults here are the
same constants the CRD schema publishes (crd.py imports them), so an object that skipped API-server
defaulting (a unit test, an older CRD) still parses to the same values.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

MODES = ("builtin", "external", "off")
METRICS_SOURCES = ("direct", "prometheus")
METRIC_PROFILES = ("tokenfleet", "vllm", "sglang")
DTYPES = ("bfloat16", "float16", "float32")
BACKENDS = ("torch", "sim")
# The worker's admission orders (tokenfleet_worker.admission.POLICIES).
SCHEDULING_POLICIES = ("fcfs", "shortest-prompt-first")
DEFAULT_SCHEDULING_POLICY = "fcfs"
BLOCK_SIZES = (8, 16, 32, 64, 128)
ROUTING_STRATEGIES = ("least-load", "prefix-affinity", "session-affinity", "round-robin")
DEVICES = ("cuda", "cpu")

DEFAULT_DTYPE = "bfloat16"
DEFAULT_BACKEND = "torch"
DEFAULT_MAX_NUM_SEQS = 256
DEFAULT_MAX_BATCHED_TOKENS = 8192
DEFAULT_BLOCK_SIZE = 16
DEFAULT_DRAIN_TIMEOUT_SECONDS = 60
DEFAULT_RESOURCE_NAME = "nvidia.com/gpu"
DEFAULT_MODE = "builtin"
DEFAULT_MIN_REPLICAS = 1
DEFAULT_MAX_REPLICAS = 8
DEFAULT_QUEUE_DEPTH_PER_REPLICA = 8.0
DEFAULT_KV_CACHE_UTILIZATION = 0.8
DEFAULT_TOLERANCE = 0.1
DEFAULT_BURST_FACTOR = 2.0
DEFAULT_SCALE_UP_STABILIZATION = 0
DEFAULT_SCALE_UP_MAX_STEP = 4
DEFAULT_SCALE_DOWN_STABILIZATION = 300
DEFAULT_SCALE_DOWN_MAX_STEP = 1
DEFAULT_SCALE_TO_ZERO_AFTER = 600  # used when minReplicas is 0 and no idle period is given
DEFAULT_METRICS_SOURCE = "direct"
DEFAULT_METRICS_INTERVAL = 5
DEFAULT_METRICS_PROFILE = "tokenfleet"
DEFAULT_ROUTING_STRATEGY = "least-load"
DEFAULT_ROUTER_REPLICAS = 2
DEFAULT_REPLICAS = 1
DEFAULT_SESSION_HEADER = "x-session-id"


class InvalidSpec(ValueError):
    """The spec cannot be used; the message names the offending field."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    uri: str
    dtype: str = DEFAULT_DTYPE
    max_model_len: int | None = None  # None: the model's own limit


@dataclass(frozen=True)
class EngineSpec:
    backend: str = DEFAULT_BACKEND
    max_num_seqs: int = DEFAULT_MAX_NUM_SEQS
    max_batched_tokens: int = DEFAULT_MAX_BATCHED_TOKENS
    block_size: int = DEFAULT_BLOCK_SIZE
    prefix_caching: bool = True
    drain_timeout_seconds: int = DEFAULT_DRAIN_TIMEOUT_SECONDS
    # Target of a step that carries decodes; each worker cuts prefill chunks to keep it on its own
    # hardware. None: chunks fill max_batched_tokens.
    decode_step_target_ms: float | None = None
    # The order in which a worker admits waiting requests.
    scheduling_policy: str = DEFAULT_SCHEDULING_POLICY


@dataclass(frozen=True)
class AcceleratorSpec:
    name: str
    hourly_cost: float
    resource_name: str = DEFAULT_RESOURCE_NAME
    count: int = 1
    max_replicas: int | None = None  # None: only the fleet-wide maxReplicas applies
    node_selector: tuple[tuple[str, str], ...] = ()
    device: str = "cuda"  # what the worker computes on; cpu for development fleets
    # Tokens a second one replica processes at full load, as benchmarked: ranks this variant by cost
    # per token until its replicas have been measured. None: assume the throughput of the measured ones.
    tokens_per_second: float | None = None


@dataclass(frozen=True)
class Targets:
    queue_depth_per_replica: float = DEFAULT_QUEUE_DEPTH_PER_REPLICA
    kv_cache_utilization: float = DEFAULT_KV_CACHE_UTILIZATION
    tokens_in_flight_per_replica: int | None = None  # None: derive from KV capacity when workers report it
    ttft_p95_seconds: float | None = None
    max_cost_per_million_tokens: float | None = None


@dataclass(frozen=True)
class ScalingRules:
    stabilization_seconds: int
    max_step: int


@dataclass(frozen=True)
class MetricsSpec:
    source: str = DEFAULT_METRICS_SOURCE
    interval_seconds: int = DEFAULT_METRICS_INTERVAL
    url: str | None = None
    profile: str = DEFAULT_METRICS_PROFILE

    @property
    def stale_after_seconds(self) -> float:
        """A snapshot older than three intervals no longer describes the fleet."""
        return 3.0 * self.interval_seconds


@dataclass(frozen=True)
class AutoscalingSpec:
    mode: str = DEFAULT_MODE
    min_replicas: int = DEFAULT_MIN_REPLICAS
    max_replicas: int = DEFAULT_MAX_REPLICAS
    targets: Targets = field(default_factory=Targets)
    max_hourly_cost: float | None = None
    scale_up: ScalingRules = ScalingRules(DEFAULT_SCALE_UP_STABILIZATION, DEFAULT_SCALE_UP_MAX_STEP)
    scale_down: ScalingRules = ScalingRules(DEFAULT_SCALE_DOWN_STABILIZATION, DEFAULT_SCALE_DOWN_MAX_STEP)
    tolerance: float = DEFAULT_TOLERANCE
    burst_factor: float = DEFAULT_BURST_FACTOR
    scale_to_zero_after_seconds: int | None = None  # only meaningful with min_replicas == 0
    metrics: MetricsSpec = field(default_factory=MetricsSpec)


@dataclass(frozen=True)
class RoutingSpec:
    strategy: str = DEFAULT_ROUTING_STRATEGY
    replicas: int = DEFAULT_ROUTER_REPLICAS
    session_header: str = DEFAULT_SESSION_HEADER
    api_keys_secret: str | None = None  # mounted as a file, never an env var, so keys stay out of `describe`


@dataclass(frozen=True)
class InferenceDeploymentSpec:
    model: ModelSpec
    accelerators: tuple[AcceleratorSpec, ...]
    engine: EngineSpec = field(default_factory=EngineSpec)
    autoscaling: AutoscalingSpec = field(default_factory=AutoscalingSpec)
    routing: RoutingSpec = field(default_factory=RoutingSpec)
    replicas: int = DEFAULT_REPLICAS  # the scale subresource's field; who writes it depends on the mode

    def accelerator(self, name: str) -> AcceleratorSpec:
        for acc in self.accelerators:
            if acc.name == name:
                return acc
        raise KeyError(name)

    @property
    def variant_names(self) -> tuple[str, ...]:
        return tuple(a.name for a in self.accelerators)


def _section(raw: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, Mapping):
        raise InvalidSpec(f"{path}.{key} must be an object")
    return value


def _choice(value: str, allowed: tuple[str, ...], path: str) -> str:
    if value not in allowed:
        raise InvalidSpec(f"{path} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _positive_or_none(value: Any, path: str) -> float | None:
    number = _optional_float(value)
    if number is not None and number <= 0:
        raise InvalidSpec(f"{path} must be positive; got {value!r}")
    return number


def _parse_model(raw: Mapping[str, Any]) -> ModelSpec:
    if not raw.get("name") or not raw.get("uri"):
        raise InvalidSpec("spec.model.name and spec.model.uri are required")
    return ModelSpec(
        name=str(raw["name"]),
        uri=str(raw["uri"]),
        dtype=_choice(raw.get("dtype", DEFAULT_DTYPE), DTYPES, "spec.model.dtype"),
        max_model_len=None if raw.get("maxModelLen") is None else int(raw["maxModelLen"]),
    )


def _parse_engine(raw: Mapping[str, Any]) -> EngineSpec:
    return EngineSpec(
        backend=_choice(raw.get("backend", DEFAULT_BACKEND), BACKENDS, "spec.engine.backend"),
        max_num_seqs=int(raw.get("maxNumSeqs", DEFAULT_MAX_NUM_SEQS)),
        max_batched_tokens=int(raw.get("maxBatchedTokens", DEFAULT_MAX_BATCHED_TOKENS)),
        block_size=int(raw.get("blockSize", DEFAULT_BLOCK_SIZE)),
        prefix_caching=bool(raw.get("prefixCaching", True)),
        drain_timeout_seconds=int(raw.get("drainTimeoutSeconds", DEFAULT_DRAIN_TIMEOUT_SECONDS)),
        decode_step_target_ms=_positive_or_none(
            raw.get("decodeStepTargetMs"), "spec.engine.decodeStepTargetMs"
        ),
        scheduling_policy=_choice(
            raw.get("schedulingPolicy", DEFAULT_SCHEDULING_POLICY),
            SCHEDULING_POLICIES,
            "spec.engine.schedulingPolicy",
        ),
    )


def _parse_accelerators(raw: Any) -> tuple[AcceleratorSpec, ...]:
    if not isinstance(raw, list) or not raw:
        raise InvalidSpec("spec.accelerators must list at least one accelerator")
    result = []
    for i, item in enumerate(raw):
        if "name" not in item or "hourlyCost" not in item:
            raise InvalidSpec(f"spec.accelerators[{i}] needs name and hourlyCost")
        max_replicas = item.get("maxReplicas")
        result.append(
            AcceleratorSpec(
                name=str(item["name"]),
                hourly_cost=float(item["hourlyCost"]),
                resource_name=str(item.get("resourceName", DEFAULT_RESOURCE_NAME)),
                count=int(item.get("count", 1)),
                max_replicas=None if max_replicas is None else int(max_replicas),
                node_selector=tuple(
                    sorted((str(k), str(v)) for k, v in item.get("nodeSelector", {}).items())
                ),
                device=_choice(item.get("device", "cuda"), DEVICES, f"spec.accelerators[{i}].device"),
                tokens_per_second=_positive_or_none(
                    item.get("tokensPerSecond"), f"spec.accelerators[{i}].tokensPerSecond"
                ),
            )
        )
    names = [a.name for a in result]
    if len(set(names)) != len(names):
        raise InvalidSpec("spec.accelerators names must be unique")
    return tuple(result)


def _parse_rules(raw: Mapping[str, Any], stabilization: int, max_step: int) -> ScalingRules:
    return ScalingRules(
        stabilization_seconds=int(raw.get("stabilizationSeconds", stabilization)),
        max_step=int(raw.get("maxStep", max_step)),
    )


def _parse_autoscaling(raw: Mapping[str, Any]) -> AutoscalingSpec:
    path = "spec.autoscaling"
    targets_raw = _section(raw, "targets", path)
    tif = targets_raw.get("tokensInFlightPerReplica")
    targets = Targets(
        queue_depth_per_replica=float(
            targets_raw.get("queueDepthPerReplica", DEFAULT_QUEUE_DEPTH_PER_REPLICA)
        ),
        kv_cache_utilization=float(targets_raw.get("kvCacheUtilization", DEFAULT_KV_CACHE_UTILIZATION)),
        tokens_in_flight_per_replica=None if tif is None else int(tif),
        ttft_p95_seconds=_optional_float(targets_raw.get("ttftP95Seconds")),
        max_cost_per_million_tokens=_optional_float(targets_raw.get("maxCostPerMillionTokens")),
    )
    metrics_raw = _section(raw, "metrics", path)
    metrics = MetricsSpec(
        source=_choice(
            metrics_raw.get("source", DEFAULT_METRICS_SOURCE), METRICS_SOURCES, f"{path}.metrics.source"
        ),
        interval_seconds=int(metrics_raw.get("intervalSeconds", DEFAULT_METRICS_INTERVAL)),
        url=metrics_raw.get("url"),
        profile=_choice(
            metrics_raw.get("profile", DEFAULT_METRICS_PROFILE), METRIC_PROFILES, f"{path}.metrics.profile"
        ),
    )
    if metrics.source == "prometheus" and not metrics.url:
        raise InvalidSpec(f"{path}.metrics.url is required when source is prometheus")
    min_replicas = int(raw.get("minReplicas", DEFAULT_MIN_REPLICAS))
    max_replicas = int(raw.get("maxReplicas", DEFAULT_MAX_REPLICAS))
    if min_replicas > max_replicas:
        raise InvalidSpec(f"{path}.minReplicas ({min_replicas}) must be <= maxReplicas ({max_replicas})")
    to_zero = raw.get("scaleToZeroAfterSeconds")
    if to_zero is None and min_replicas == 0:
        to_zero = DEFAULT_SCALE_TO_ZERO_AFTER
    return AutoscalingSpec(
        mode=_choice(raw.get("mode", DEFAULT_MODE), MODES, f"{path}.mode"),
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        targets=targets,
        max_hourly_cost=_optional_float(_section(raw, "budget", path).get("maxHourlyCost")),
        scale_up=_parse_rules(
            _section(raw, "scaleUp", path), DEFAULT_SCALE_UP_STABILIZATION, DEFAULT_SCALE_UP_MAX_STEP
        ),
        scale_down=_parse_rules(
            _section(raw, "scaleDown", path), DEFAULT_SCALE_DOWN_STABILIZATION, DEFAULT_SCALE_DOWN_MAX_STEP
        ),
        tolerance=float(raw.get("tolerance", DEFAULT_TOLERANCE)),
        burst_factor=float(raw.get("burstFactor", DEFAULT_BURST_FACTOR)),
        scale_to_zero_after_seconds=None if min_replicas > 0 or to_zero is None else int(to_zero),
        metrics=metrics,
    )


def parse_spec(spec: Mapping[str, Any]) -> InferenceDeploymentSpec:
    """Turn a resource's `spec` into typed values; raise InvalidSpec naming the field when unusable."""
    try:
        routing_raw = _section(spec, "routing", "spec")
        return InferenceDeploymentSpec(
            model=_parse_model(_section(spec, "model", "spec")),
            accelerators=_parse_accelerators(spec.get("accelerators")),
            engine=_parse_engine(_section(spec, "engine", "spec")),
            autoscaling=_parse_autoscaling(_section(spec, "autoscaling", "spec")),
            routing=RoutingSpec(
                strategy=_choice(
                    routing_raw.get("strategy", DEFAULT_ROUTING_STRATEGY),
                    ROUTING_STRATEGIES,
                    "spec.routing.strategy",
                ),
                replicas=int(routing_raw.get("replicas", DEFAULT_ROUTER_REPLICAS)),
                session_header=str(routing_raw.get("sessionHeader", DEFAULT_SESSION_HEADER)),
                api_keys_secret=routing_raw.get("apiKeysSecret") or None,
            ),
            replicas=int(spec.get("replicas", DEFAULT_REPLICAS)),
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, InvalidSpec):
            raise
        raise InvalidSpec(f"spec has a value of the wrong type: {exc}") from exc
