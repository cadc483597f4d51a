"""`tokenfleet-router`: run the router from the command line."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from tokenfleet_router.admission import AdmissionSettings
from tokenfleet_router.discovery import Discovery, FileDiscovery, KubernetesDiscovery, StaticDiscovery
from tokenfleet_router.load_view import SaturationLimits
from tokenfleet_router.logs import configure_logging, log_event
from tokenfleet_router.settings import RouterSettings
from tokenfleet_router.strategies import STRATEGIES

logger = logging.getLogger("tokenfleet.router")


def parse_weights(text: str) -> dict[str, float]:
    """`queue-depth=2,kv-usage=0.5` -> {"queue-depth": 2.0, "kv-usage": 0.5}."""
    weights: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        try:
            weights[name.strip()] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT, got {item!r}") from None
        if not sep:
            raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT, got {item!r}")
    return weights


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tokenfleet-router",
        description="OpenAI-compatible router in front of a fleet of tokenfleet (or vLLM/SGLang) workers.",
    )
    source = p.add_argument_group("worker discovery (choose one)")
    source.add_argument(
        "--workers", help="static comma-separated worker URLs, e.g. http://127.0.0.1:8001,..."
    )
    source.add_argument("--workers-file", type=Path, help="file of worker URLs, re-read when it changes")
    source.add_argument("--selector", help="Kubernetes label selector of worker pods, e.g. app=chat-worker")
    source.add_argument("--namespace", default="default", help="namespace of the worker pods")
    source.add_argument(
        "--kubeconfig", help="kubeconfig path (default: in-cluster config, then ~/.kube/config)"
    )
    source.add_argument("--worker-port", type=int, default=8000, help="port when a pod names none")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--strategy", choices=sorted(STRATEGIES), default="least-load")
    p.add_argument("--scorer-weights", type=parse_weights, default={}, help="e.g. queue-depth=2,kv-usage=0.5")
    p.add_argument("--session-header", default="x-session-id")
    p.add_argument("--max-held", type=int, default=1024, help="requests held while no worker can take them")
    p.add_argument(
        "--queue-timeout", type=float, default=10.0, help="seconds held when all workers are busy (429)"
    )
    p.add_argument(
        "--cold-start-timeout", type=float, default=600.0, help="seconds held with zero workers (503)"
    )
    p.add_argument("--retry-after", type=int, default=1, help="Retry-After seconds on 429/503")
    p.add_argument("--max-waiting", type=int, default=8, help="a worker with this many queued is saturated")
    p.add_argument(
        "--max-in-flight", type=int, default=0, help="per worker; 0: its max_num_seqs + max-waiting"
    )
    p.add_argument("--poll-interval", type=float, default=0.25, help="seconds between load reports")
    p.add_argument("--read-timeout", type=float, default=300.0, help="max silence from a worker mid-answer")
    p.add_argument("--api-keys-file", type=Path, help="require one of these Bearer keys on /v1/*")
    p.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024, help="larger requests get 413")
    p.add_argument("--body-timeout", type=float, default=30.0, help="seconds to receive a request body (408)")
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    return p


def settings_from_args(args: argparse.Namespace) -> RouterSettings:
    from tokenfleet_router.auth import load_api_keys

    return RouterSettings(
        strategy=args.strategy,
        scorer_weights=args.scorer_weights,
        session_header=args.session_header.lower(),
        load_poll_interval_s=args.poll_interval,
        read_timeout_s=args.read_timeout,
        admission=AdmissionSettings(
            max_held=args.max_held,
            saturated_timeout_s=args.queue_timeout,
            cold_start_timeout_s=args.cold_start_timeout,
            retry_after_s=args.retry_after,
        ),
        limits=SaturationLimits(
            max_waiting=args.max_waiting,
            max_in_flight=args.max_in_flight,
            # A report counts as stale after several missed polls, never sooner than 2 s.
            stale_after_s=max(2.0, 8 * args.poll_interval),
        ),
        api_keys=load_api_keys(args.api_keys_file) if args.api_keys_file else (),
        max_body_bytes=args.max_body_bytes,
    )


def discovery_from_args(args: argparse.Namespace) -> Discovery:
    chosen = [bool(args.workers), args.workers_file is not None, bool(args.selector)]
    if sum(chosen) != 1:
        raise ValueError("give exactly one of --workers, --workers-file or --selector")
    if args.workers:
        return StaticDiscovery(args.workers.split(","))
    if args.workers_file is not None:
        return FileDiscovery(args.workers_file)
    return KubernetesDiscovery(args.namespace, args.selector, args.worker_port, args.kubeconfig)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    try:
        settings = settings_from_args(args)
        discovery = discovery_from_args(args)
    except (ValueError, OSError) as e:
        parser.error(str(e))
    import uvicorn

    from tokenfleet_router.app import create_app

    log_event(logger, "router_starting", host=args.host, port=args.port, strategy=settings.strategy)
    uvicorn.run(
        create_app(settings, discovery, body_timeout_s=args.body_timeout),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        # uvloop and httptools when installed (`uvicorn[standard]`): about a third less router CPU a
        # request than asyncio + h11, which on a busy node is latency; plain asyncio + h11 otherwise.
        loop="auto",
        http="auto",
        timeout_graceful_shutdown=5,
        # The router reads no client address, so it skips rewriting it from X-Forwarded-For (a
        # middleware that ran on every request).
        proxy_headers=False,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
