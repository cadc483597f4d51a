"""Prometheus metric names exported by tokenfleet workers and router, and read by the operator.

Names follow Prometheus conventions with the `tokenfleet_` prefix: `_total` counters, `_seconds`
histograms, `_ratio` gauges in 0..1. The prometheus-client library appends `_total` to counters
itself, so counters are listed here with the suffix and declared without it.
"""

from __future__ import annotations

PREFIX = "tokenfleet_"

# Worker gauges.
REQUESTS_WAITING = "tokenfleet_requests_waiting"
REQUESTS_RUNNING = "tokenfleet_requests_running"
TOKENS_IN_FLIGHT = "tokenfleet_tokens_in_flight"
PREFILL_TOKENS_WAITING = "tokenfleet_prefill_tokens_waiting"
KV_CACHE_USAGE = "tokenfleet_kv_cache_usage_ratio"
KV_BLOCKS_TOTAL = "tokenfleet_kv_cache_blocks_total"
KV_BLOCKS_FREE = "tokenfleet_kv_cache_blocks_free"
DRAINING = "tokenfleet_worker_draining"

# Worker counters.
PROMPT_TOKENS = "tokenfleet_prompt_tokens_total"
GENERATION_TOKENS = "tokenfleet_generation_tokens_total"
PREFIX_CACHE_QUERIES = "tokenfleet_prefix_cache_queries_total"
PREFIX_CACHE_HITS = "tokenfleet_prefix_cache_hits_total"
PREEMPTIONS = "tokenfleet_preemptions_total"
REQUESTS_FINISHED = "tokenfleet_requests_finished_total"  # label: finish_reason
REQUESTS_REJECTED = "tokenfleet_requests_rejected_total"  # label: reason

# Worker histograms.
TTFT = "tokenfleet_time_to_first_token_seconds"
ITL = "tokenfleet_inter_token_latency_seconds"
TPOT = "tokenfleet_time_per_output_token_seconds"
E2E_LATENCY = "tokenfleet_e2e_request_latency_seconds"
QUEUE_TIME = "tokenfleet_request_queue_time_seconds"
BATCH_SIZE = "tokenfleet_batch_size"

# Router.
ROUTER_REQUESTS = "tokenfleet_router_requests_total"  # labels: status, worker
ROUTER_DECISIONS = "tokenfleet_router_routing_decisions_total"  # label: strategy
ROUTER_RETRIES = "tokenfleet_router_retries_total"
ROUTER_HELD = "tokenfleet_router_requests_held"  # gauge: waiting for capacity or a first worker
ROUTER_TTFT = "tokenfleet_router_time_to_first_token_seconds"
ROUTER_LATENCY = "tokenfleet_router_request_latency_seconds"
ROUTER_WORKERS = "tokenfleet_router_workers"  # gauge: ready workers known to the router

# Operator.
OPERATOR_DECISIONS = "tokenfleet_operator_scaling_decisions_total"  # labels: direction
OPERATOR_RECONCILE = "tokenfleet_operator_reconcile_duration_seconds"
OPERATOR_ERRORS = "tokenfleet_operator_errors_total"

# Operator fleet state (labels: namespace, infdep; replicas also variant; condition also type, reason).
OPERATOR_DESIRED_REPLICAS = "tokenfleet_operator_desired_replicas"
OPERATOR_READY_REPLICAS = "tokenfleet_operator_ready_replicas"
OPERATOR_MAX_REPLICAS = "tokenfleet_operator_max_replicas"
OPERATOR_HOURLY_COST = "tokenfleet_operator_hourly_cost_dollars"
OPERATOR_HOURLY_BUDGET = "tokenfleet_operator_hourly_budget_dollars"
OPERATOR_TTFT_TARGET = "tokenfleet_operator_ttft_target_seconds"
OPERATOR_CONDITION = "tokenfleet_operator_condition"
