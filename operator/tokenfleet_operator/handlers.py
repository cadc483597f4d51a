"""Every kopf registration. Each handler is a few lines: the work is in reconciler.py.

- startup: kopf settings (progress in annotations, no handler-log Events), the shared API client,
  the reconciler and the operator's metrics server, all kept in the memo;
- create/update/resume: reconcile the children;
- a daemon per resource: one autoscaling tick every `spec.autoscaling.metrics.intervalSeconds`;
- delete: forget the fleet's history (children go by owner references).
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import kopf

from tokenfleet_operator import GROUP, PLURAL, VERSION
from tokenfleet_operator.kube import KubeApi
from tokenfleet_operator.operator_metrics import OperatorMetrics
from tokenfleet_operator.reconciler import Reconciler, owner_of
from tokenfleet_operator.resource import InvalidSpec, parse_spec
from tokenfleet_operator.settings import OperatorSettings

PREFIX = "tokenfleet.io"


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, memo: kopf.Memo, **_: Any) -> None:
    operator: OperatorSettings = memo.settings
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=PREFIX)
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.posting.level = logging.WARNING  # Events are for scaling decisions, not handler chatter
    settings.watching.server_timeout = 300
    api = KubeApi.from_kubeconfig(operator.kubeconfig)
    http = httpx.AsyncClient(limits=httpx.Limits(max_connections=200))
    metrics: OperatorMetrics = memo.metrics
    memo.http = http
    memo.reconciler = Reconciler(api, http, operator, metrics)


@kopf.on.cleanup()
async def close(memo: kopf.Memo, **_: Any) -> None:
    await memo.reconciler.api.close()
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
    logger.info("event=reconciled writes=%d", writes)


@kopf.daemon(GROUP, VERSION, PLURAL, id="autoscaler", cancellation_timeout=10)
async def autoscale(
    stopped: kopf.DaemonStopped, body: kopf.Body, memo: kopf.Memo, logger: kopf.Logger, **_: Any
) -> None:
    memo.metrics.fleets.inc()
    try:
        while not stopped:
            interval = 5.0
            try:
                interval = parse_spec(body["spec"]).autoscaling.metrics.interval_seconds
                await memo.reconciler.tick(body)
            except InvalidSpec as exc:
                logger.warning("event=invalid_spec error=%r", str(exc))
            except Exception as exc:
                memo.metrics.errors.labels("tick").inc()
                logger.exception("event=tick_failed error=%r", str(exc))
            await stopped.wait(interval)
    finally:
        memo.metrics.fleets.dec()


@kopf.on.delete(GROUP, VERSION, PLURAL, optional=True)
async def forget(body: kopf.Body, memo: kopf.Memo, **_: Any) -> None:
    memo.reconciler.forget(owner_of(body))
