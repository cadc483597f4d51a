"""Every kopf registration. Each handler is a few lines: the work is in reconciler.py.

- startup: kopf settings (progress in annotations, no handler-log Events), the API clients, the
  watch-backed cache of children and pods (synced before any handler runs), and the reconciler, all
  kept in the memo;
- create/update/resume: reconcile the children;
- a daemon per resource: one autoscaling tick every `spec.autoscaling.metrics.intervalSeconds`;
- delete: forget the fleet's history (children go by owner references).
"""

from __future__ import annotations

import logging
import random
import time
from typing import Any

import httpx
import kopf

from tokenfleet_operator import GROUP, PLURAL, VERSION
from tokenfleet_operator.kube import KubeApi, KubeError
from tokenfleet_operator.operator_metrics import OperatorMetrics
from tokenfleet_operator.reconciler import Reconciler, owner_of
from tokenfleet_operator.resource import DEFAULT_METRICS_INTERVAL, InvalidSpec, parse_spec
from tokenfleet_operator.settings import OperatorSettings
from tokenfleet_operator.watch_cache import ClusterCache

PREFIX = "tokenfleet.io"
RETRY_SECONDS = 5


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator: OperatorSettings = memo.settings
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.level = logging.WARNING  # Events are for scaling decisions, not handler chatter
    settings.watching.server_timeout = 300
    api = KubeApi.from_kubeconfig(operator.kubeconfig)
    children_api = KubeApi.from_kubeconfig(operator.kubeconfig)
    # Watches hold a connection each for minutes: a client of their own, without a pool limit.
    watch_api = KubeApi.from_kubeconfig(operator.kubeconfig, max_connections=None)
    cache = ClusterCache(watch_api, operator.namespaces)
    metrics: OperatorMetrics = memo.metrics
    cache.api.on_request = lambda verb: metrics.api_requests.labels(verb).inc()
    await cache.start()
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=200))
    memo.http = http
    memo.cache = cache
    memo.reconciler = Reconciler(api, http, operator, metrics, cache, children_api=children_api)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.cache.stop()
    await memo.cache.api.close()
    await memo.reconciler.api.close()
    await memo.reconciler.children_api.close()
    await memo.http.aclose()


@kopf.on.resume(GROUP, VERSION, PLURAL)
@kopf.on.create(GROUP, VERSION, PLURAL)
@kopf.on.update(GROUP, VERSION, PLURAL, field="spec")
async def reconcile_children(body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any) -> None:
    try:
        writes = await memo.reconciler.reconcile(body)
    except InvalidSpec as exc:
        memo.metrics.errors.labels("spec").inc()
        raise kopf.PermanentError(str(exc)) from exc
    except (KubeError, httpx.HTTPError) as exc:
        # An overloaded or restarting API server: try again soon, not after kopf's default minute.
        memo.metrics.errors.labels("apply").inc()
        raise kopf.TemporaryError(f"applying children failed: {exc!r}", delay=RETRY_SECONDS) from exc
    logger.info("event=reconciled writes=%d", writes)


def tick_interval(body: kopf.Body) -> float:
    try:
        return float(parse_spec(body["spec"]).autoscaling.metrics.interval_seconds)
    except InvalidSpec:
        return float(DEFAULT_METRICS_INTERVAL)


@kopf.daemon(GROUP, VERSION, PLURAL, id="autoscaler", cancellation_timeout=10)
async def autoscale(
    stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    memo.metrics.fleets.inc()
    try:
        # Start at a random point of the interval, so many fleets do not all tick at the same moment.
        await stopped.wait(random.uniform(0.0, tick_interval(body)))
        while not stopped:
            started = time.monotonic()
            try:
                await memo.reconciler.tick(body)
            except InvalidSpec as exc:
                logger.warning("event=invalid_spec error=%r", str(exc))
            except Exception as exc:
                memo.metrics.errors.labels("tick").inc()
                logger.exception("event=tick_failed error=%r", exc)
            # Fixed rate: the tick's own time (scrapes, status patch) must not stretch the interval that the
            # policy's windows and the simulator assume (measured: 2.2-2.8 s a tick for intervalSeconds 2).
            await stopped.wait(max(0.0, tick_interval(body) - (time.monotonic() - started)))
    finally:
        memo.metrics.fleets.dec()


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def forget(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.forget(owner_of(body))
