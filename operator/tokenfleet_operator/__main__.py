"""`tokenfleet-operator`: run the operator (kopf, programmatically) with settings from the command line."""

from __future__ import annotations

import argparse
import logging
import os
import random
import sys

from tokenfleet_operator.settings import DEFAULT_ROUTER_IMAGE, DEFAULT_WORKER_IMAGE, OperatorSettings


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenfleet-operator",
        description="Reconcile InferenceDeployments into worker fleets and autoscale them on queue depth, "
        "KV-cache pressure and cost per token.",
    )
    scope = p.add_mutually_exclusive_group()
    scope.add_argument("--namespace", action="append", default=[], help="watch this namespace (repeatable)")
    scope.add_argument("--all-namespaces", action="store_true", help="watch every namespace (the default)")
    p.add_argument("--standalone", action="store_true", help="no peering/leader election (development)")
    p.add_argument("--peering", default="tokenfleet", help="KopfPeering object used for leader election")
    p.add_argument(
        "--priority",
        type=int,
        default=None,
        help="peering priority; the highest active replica acts (default: random)",
    )
    p.add_argument("--metrics-port", type=int, default=9090, help="port of the operator's /metrics (0: off)")
    p.add_argument("--worker-image", default=DEFAULT_WORKER_IMAGE)
    p.add_argument("--router-image", default=DEFAULT_ROUTER_IMAGE)
    p.add_argument("--kubeconfig", help="kubeconfig path (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
    p.add_argument("--scrape-timeout", type=float, default=2.0, help="seconds per worker /metrics scrape")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def settings_from_args(args: argparse.Namespace) -> OperatorSettings:
    return OperatorSettings(
        worker_image=args.worker_image,
        router_image=args.router_image,
        namespaces=tuple(args.namespace),
        is_standalone=args.standalone,
        peering_name=args.peering,
        metrics_port=args.metrics_port,
        kubeconfig=args.kubeconfig,
        scrape_timeout_seconds=args.scrape_timeout,
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    settings = settings_from_args(args)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per API call drowns the decisions
    if settings.kubeconfig:
        os.environ["KUBECONFIG"] = settings.kubeconfig  # kopf's own login reads it
    import kopf

    from tokenfleet_operator import handlers  # noqa: F401 - registers the handlers
    from tokenfleet_operator.operator_metrics import OperatorMetrics

    metrics = OperatorMetrics()
    if settings.metrics_port:
        metrics.serve(settings.metrics_port)
    # A random priority keeps two replicas from tying, so exactly one of them acts.
    priority = args.priority if args.priority is not None else random.randint(1, 1_000_000)
    kopf.run(
        standalone=settings.is_standalone,
        peering_name=None if settings.is_standalone else settings.peering_name,
        priority=priority,
        clusterwide=not settings.namespaces,
        namespaces=settings.namespaces,
        memo=kopf.Memo(settings=settings, metrics=metrics),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
