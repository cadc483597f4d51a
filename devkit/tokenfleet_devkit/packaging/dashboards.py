"""The three Grafana dashboards, built from the metric contract (pure; `sync` writes the JSON).

Names come from `tokenfleet_common.metric_names` and `fleet_gauges`, so a renamed metric changes the
dashboards with it, and a test checks the committed JSON against these builders.
"""

from __future__ import annotations

from tokenfleet_common import metric_names as m
from tokenfleet_devkit.packaging import fleet_gauges as g
from tokenfleet_devkit.packaging.dashboard_model import (
    FLEET,
    Annotation,
    Json,
    Panel,
    Query,
    dashboard,
    datasource_variable,
    quantile,
    query_variable,
)

RATE = "[$__rate_interval]"
POD = f'{FLEET}, pod=~"$pod"'


def _rate(metric: str, by: str, selector: str = FLEET) -> str:
    return f"sum by ({by}) (rate({metric}{{{selector}}}{RATE}))"


def _fleet_variables(anchor: str) -> list[Json]:
    return [
        datasource_variable(),
        query_variable("namespace", "Namespace", anchor, "namespace"),
        query_variable("deployment", "InferenceDeployment", anchor, "infdep", 'namespace=~"$namespace"'),
    ]


def _percentiles(histogram: str, selector: str = FLEET) -> tuple[Query, ...]:
    return tuple(
        Query(quantile(q, histogram, selector=selector), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99)
    )


def fleet_overview() -> Json:
    tokens = f"sum(rate({m.PROMPT_TOKENS}{{{FLEET}}}{RATE}) + rate({m.GENERATION_TOKENS}{{{FLEET}}}{RATE}))"
    replicas = [
        Panel(
            "Desired vs ready replicas",
            "Per accelerator variant: what the autoscaler wants and what serves.",
            (
                Query(f"sum by (variant) ({g.DESIRED_REPLICAS}{{{FLEET}}})", "desired {{variant}}"),
                Query(f"sum by (variant) ({g.READY_REPLICAS}{{{FLEET}}})", "ready {{variant}}"),
            ),
        ),
        Panel(
            "Scaling state",
            "1 while a condition holds: ScalingLimited (max replicas, budget, unschedulable) "
            "or MetricsStale (the autoscaler holds).",
            (
                Query(
                    f'max by (type, reason) ({g.CONDITION}{{{FLEET}, type=~"ScalingLimited|MetricsStale"}})',
                    "{{type}} {{reason}}",
                ),
            ),
            kind="state-timeline",
        ),
    ]
    load = [
        Panel(
            "Queue depth",
            "Requests waiting in the workers' queues, per variant.",
            (Query(f"sum by (variant) ({m.REQUESTS_WAITING}{{{FLEET}}})", "{{variant}}"),),
        ),
        Panel(
            "KV-cache utilisation",
            "Mean fraction of KV-cache blocks in use, per variant.",
            (Query(f"avg by (variant) ({m.KV_CACHE_USAGE}{{{FLEET}}})", "{{variant}}"),),
            unit="percentunit",
            extra_defaults={"min": 0, "max": 1},
        ),
        Panel(
            "Tokens per second",
            "Prompt and generated tokens per second over the fleet.",
            (
                Query(_rate(m.PROMPT_TOKENS, "variant"), "prompt {{variant}}"),
                Query(_rate(m.GENERATION_TOKENS, "variant"), "generated {{variant}}"),
            ),
        ),
        Panel(
            "Requests running",
            "Sequences in the running batches, per variant.",
            (Query(f"sum by (variant) ({m.REQUESTS_RUNNING}{{{FLEET}}})", "{{variant}}"),),
        ),
    ]
    cost = [
        Panel(
            "Cost per million tokens",
            "Hourly cost of the fleet over its token throughput (USD).",
            (Query(f"sum({g.HOURLY_COST}{{{FLEET}}}) / ({tokens} * 3600) * 1e6", "$/Mtok"),),
            unit="currencyUSD",
        ),
        Panel(
            "Hourly cost",
            "Hourly cost of requested replicas, and the budget cap when set (USD).",
            (
                Query(f"sum by (infdep) ({g.HOURLY_COST}{{{FLEET}}})", "cost {{infdep}}"),
                Query(f"sum by (infdep) ({g.HOURLY_BUDGET}{{{FLEET}}})", "budget {{infdep}}"),
            ),
            unit="currencyUSD",
        ),
    ]
    latency = [
        Panel("Time to first token", "TTFT percentiles over all workers.", _percentiles(m.TTFT), unit="s"),
        Panel(
            "Inter-token latency", "Time between streamed tokens, percentiles.", _percentiles(m.ITL), unit="s"
        ),
    ]
    decisions = Annotation(
        "Scaling decisions",
        f"sum by (infdep, direction) (increase({m.OPERATOR_DECISIONS}{{{FLEET}}}[1m])) > 0",
        "scale {{direction}} {{infdep}}",
    )
    return dashboard(
        "tokenfleet-fleet-overview",
        "tokenfleet / Fleet overview",
        "Replicas, load, cost and latency of InferenceDeployments, with scaling decisions as annotations.",
        _fleet_variables(m.REQUESTS_RUNNING),
        [("Replicas", replicas), ("Load", load), ("Cost", cost), ("Latency", latency)],
        (decisions,),
    )


def worker_detail() -> Json:
    variables = [
        *_fleet_variables(m.REQUESTS_RUNNING),
        query_variable(
            "pod", "Worker pod", m.REQUESTS_RUNNING, "pod", 'namespace=~"$namespace", infdep=~"$deployment"'
        ),
    ]
    batch = [
        Panel(
            "Batch size",
            "Sequences per engine step: mean and p95.",
            (
                Query(
                    f"sum by (pod) (rate({m.BATCH_SIZE}_sum{{{POD}}}{RATE})) / "
                    f"sum by (pod) (rate({m.BATCH_SIZE}_count{{{POD}}}{RATE}))",
                    "mean {{pod}}",
                ),
                Query(quantile(0.95, m.BATCH_SIZE, "pod", POD), "p95 {{pod}}"),
            ),
        ),
        Panel(
            "Running and waiting",
            "Requests in the batch and in the queue, per pod.",
            (
                Query(f"sum by (pod) ({m.REQUESTS_RUNNING}{{{POD}}})", "running {{pod}}"),
                Query(f"sum by (pod) ({m.REQUESTS_WAITING}{{{POD}}})", "waiting {{pod}}"),
            ),
        ),
        Panel(
            "Tokens in flight",
            "Prompt + generated tokens held by running requests, per pod.",
            (Query(f"sum by (pod) ({m.TOKENS_IN_FLIGHT}{{{POD}}})", "{{pod}}"),),
        ),
        Panel(
            "Preemptions",
            "Sequences preempted per second to free KV-cache blocks.",
            (Query(_rate(m.PREEMPTIONS, "pod", POD), "{{pod}}"),),
            unit="ops",
        ),
    ]
    cache = [
        Panel(
            "Prefix-cache hit rate",
            "Prompt blocks found in the prefix cache over blocks looked up.",
            (
                Query(
                    f"sum by (pod) (rate({m.PREFIX_CACHE_HITS}{{{POD}}}{RATE})) / "
                    f"clamp_min(sum by (pod) (rate({m.PREFIX_CACHE_QUERIES}{{{POD}}}{RATE})), 1e-9)",
                    "{{pod}}",
                ),
            ),
            unit="percentunit",
        ),
        Panel(
            "KV-cache blocks",
            "Free and total KV-cache blocks, per pod.",
            (
                Query(f"sum by (pod) ({m.KV_BLOCKS_FREE}{{{POD}}})", "free {{pod}}"),
                Query(f"sum by (pod) ({m.KV_BLOCKS_TOTAL}{{{POD}}})", "total {{pod}}"),
            ),
        ),
    ]
    requests = [
        Panel(
            "Finished requests",
            "Requests finished per second, by finish reason.",
            (Query(_rate(m.REQUESTS_FINISHED, "finish_reason", POD), "{{finish_reason}}"),),
            unit="reqps",
        ),
        Panel(
            "Rejected requests",
            "Requests refused per second, by reason (0 when none were refused).",
            (Query(f"{_rate(m.REQUESTS_REJECTED, 'reason', POD)} or vector(0)", "{{reason}}"),),
            unit="reqps",
        ),
        Panel(
            "Queue time",
            "Seconds a request waits before its first step, percentiles.",
            _percentiles(m.QUEUE_TIME, POD),
            unit="s",
        ),
        Panel(
            "Time per output token",
            "Decode time per generated token, percentiles.",
            _percentiles(m.TPOT, POD),
            unit="s",
        ),
    ]
    return dashboard(
        "tokenfleet-worker-detail",
        "tokenfleet / Worker detail",
        "Inside each worker: batching, queueing, preemption, prefix cache and KV-cache blocks.",
        variables,
        [("Batching", batch), ("KV cache", cache), ("Requests", requests)],
    )


def router() -> Json:
    traffic = [
        Panel(
            "Requests by status",
            "Requests answered per second, by HTTP status.",
            (Query(_rate(m.ROUTER_REQUESTS, "status"), "{{status}}"),),
            unit="reqps",
        ),
        Panel(
            "Retries",
            "Requests retried on another worker before their first byte, per second.",
            (Query(f"sum(rate({m.ROUTER_RETRIES}{{{FLEET}}}{RATE}))", "retries"),),
            unit="ops",
        ),
        Panel(
            "Held requests",
            "Requests waiting for a worker with capacity or for a first worker.",
            (Query(f"sum by (pod) ({m.ROUTER_HELD}{{{FLEET}}})", "{{pod}}"),),
        ),
        Panel(
            "Workers known",
            "Ready workers each router instance routes to.",
            (Query(f"max by (pod) ({m.ROUTER_WORKERS}{{{FLEET}}})", "{{pod}}"),),
        ),
    ]
    balance = [
        Panel(
            "Per-worker load",
            "Requests per second sent to each worker.",
            (Query(_rate(m.ROUTER_REQUESTS, "worker"), "{{worker}}"),),
            unit="reqps",
        ),
        Panel(
            "Load spread",
            "Standard deviation over mean of per-worker request rates (0 is perfectly even).",
            (
                Query(
                    f"stddev({_rate(m.ROUTER_REQUESTS, 'worker')}) / "
                    f"clamp_min(avg({_rate(m.ROUTER_REQUESTS, 'worker')}), 1e-9)",
                    "spread",
                ),
            ),
        ),
        Panel(
            "Routing strategy hits",
            "Workers picked per second, by routing strategy.",
            (Query(_rate(m.ROUTER_DECISIONS, "strategy"), "{{strategy}}"),),
            unit="ops",
        ),
    ]
    latency = [
        Panel(
            "Router time to first token",
            "From request arrival to first byte sent back, percentiles.",
            _percentiles(m.ROUTER_TTFT),
            unit="s",
        ),
        Panel(
            "Router request latency",
            "From request arrival to the end of the response, percentiles.",
            _percentiles(m.ROUTER_LATENCY),
            unit="s",
        ),
    ]
    return dashboard(
        "tokenfleet-router",
        "tokenfleet / Router",
        "The front door: request rates by status, retries, held requests and how evenly load spreads.",
        _fleet_variables(m.ROUTER_WORKERS),
        [("Traffic", traffic), ("Balance", balance), ("Latency", latency)],
    )


DASHBOARDS = {
    "fleet-overview.json": fleet_overview,
    "worker-detail.json": worker_detail,
    "router.json": router,
}
