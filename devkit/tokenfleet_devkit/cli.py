"""`tokenfleet`: the developer's front door — local cluster, models, demo, benchmarks, simulator."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from collections.abc import Callable

from tokenfleet_devkit.cluster.control_plane import CLUSTER_NAME

# Subcommands that own a whole program: name -> (module with `main(argv)`, help).
DELEGATED: dict[str, tuple[str, str]] = {
    "demo": ("tokenfleet_devkit.demo.cli", "run a whole fleet locally under a real trace (the main job)"),
    "sim": ("tokenfleet_devkit.sim.cli", "simulate a fleet on a trace with the operator's real policy"),
    "kind": ("tokenfleet_devkit.packaging.kind", "create a kind cluster with tokenfleet (needs Docker)"),
    "make-model": ("tokenfleet_worker.make_model", "write a random-weight Hugging Face checkpoint"),
}
BENCHMARKS: dict[str, str] = {
    "engine": "tokenfleet_devkit.bench.engine",
    "router": "tokenfleet_devkit.bench.router",
    "operator": "tokenfleet_devkit.bench.operator",
    "autoscaling": "tokenfleet_devkit.bench.autoscaling",
    "reliability": "tokenfleet_devkit.bench.reliability",
    "sim-validation": "tokenfleet_devkit.bench.sim_validation",
}


def _cluster(args: argparse.Namespace) -> int:
    from tokenfleet_devkit.cluster import build, control_plane

    paths = control_plane.Paths.default(args.name)
    try:
        if args.action == "up":
            control_plane.up(paths=paths, launcher=not args.no_launcher)
        elif args.action == "down":
            control_plane.down(paths=paths)
        elif args.action == "status":
            print(control_plane.status(paths))
        elif args.action == "kubeconfig":
            print(paths.kubeconfig)
        elif args.action == "build":
            build.ensure_built()
    except (control_plane.ClusterError, build.BuildError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


def _available_benchmarks() -> list[str]:
    return [name for name, mod in BENCHMARKS.items() if importlib.util.find_spec(mod) is not None]


def _bench(args: argparse.Namespace, rest: list[str]) -> int:
    available = _available_benchmarks()
    if args.name is None:
        print(f"usage: tokenfleet bench NAME [--smoke] [options]; NAME is one of: {', '.join(available)}")
        return 0 if rest and rest[0] in ("-h", "--help") else 2
    if args.name not in available:
        print(f"error: unknown benchmark {args.name!r}; available: {', '.join(available)}", file=sys.stderr)
        return 2
    main: Callable[[list[str]], int] = importlib.import_module(BENCHMARKS[args.name]).main
    return main(rest)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="tokenfleet", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    cluster = sub.add_parser("cluster", help="local Kubernetes control plane with fake GPU nodes")
    cluster.add_argument("action", choices=["up", "down", "status", "kubeconfig", "build"])
    cluster.add_argument(
        "--no-launcher", action="store_true", help="do not run fleet pods as local processes"
    )
    cluster.add_argument(
        "--name",
        default=CLUSTER_NAME,
        help=f"which cluster (each name has its own state and pod IP range; default {CLUSTER_NAME})",
    )
    bench = sub.add_parser(
        "bench", help="benchmarks: print a table and write results/<name>.json", add_help=False
    )
    bench.add_argument("name", nargs="?", help=f"one of: {', '.join(BENCHMARKS)}")
    for name, (_, text) in DELEGATED.items():
        sub.add_parser(name, help=text, add_help=False)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in DELEGATED:
        module: Callable[[list[str]], int] = importlib.import_module(DELEGATED[argv[0]][0]).main
        return module(argv[1:]) or 0
    args, rest = parser().parse_known_args(argv)
    if args.command == "cluster":
        if rest:  # An ignored option here could act on the wrong cluster, so refuse it.
            parser().error(f"unrecognized arguments: {' '.join(rest)}")
        return _cluster(args)
    if args.command == "bench":
        return _bench(args, rest)
    return 2


if __name__ == "__main__":
    sys.exit(main())
