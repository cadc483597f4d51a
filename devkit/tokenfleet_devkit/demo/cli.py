"""`tokenfleet demo`: one command runs a whole fleet locally, from `helm install` to autoscaling under a
real trace, and tears it down again (or keeps it with --keep).

Steps: local control plane with fake GPU nodes (built first if needed) -> tokenfleet installed with
helm -> two InferenceDeployments applied (an autoscaled sim-backend fleet on H100 + L40S, and one
torch-backend worker running the tiny random Llama) -> a slice of a real trace replayed through the
routers with the openai SDK -> summary table, JSON report and PNG plot under results/demo/.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console

from tokenfleet_devkit import traces
from tokenfleet_devkit.cluster import build, control_plane
from tokenfleet_devkit.demo import fleet_spec, install, report, stage
from tokenfleet_devkit.demo.accounting import Summary, summarize
from tokenfleet_devkit.demo.monitor import FleetMonitor
from tokenfleet_devkit.demo.replay import PromptIds
from tokenfleet_devkit.demo.run import Outcome, replay
from tokenfleet_devkit.demo.view import summary_table
from tokenfleet_devkit.demo.workload import SIM_FLEET, TORCH_FLEET, Workload, WorkloadOptions, plan
from tokenfleet_operator.resource import ROUTING_STRATEGIES

DEMO_CLUSTER = "tokenfleet-demo"
DEMO_NAMESPACE = "tokenfleet-demo"
TRACES: dict[str, Callable[[], list[traces.TraceRecord]]] = {
    "azure-code": traces.load_azure_code,
    "mooncake-conversation": traces.load_mooncake,
}
RESULTS = install.REPO / "results" / "demo"
READY_TIMEOUT_S = 240.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tokenfleet demo", description=__doc__.split("\n\n")[0])
    add = p.add_argument
    add("--trace", choices=sorted(TRACES), default="azure-code", help="trace to replay (default azure-code)")
    add("--duration", type=float, default=150.0, help="seconds of replay: burst + quiet (default 150)")
    add("--quiet", type=float, default=45.0, help="seconds without traffic before the late request")
    add("--speedup", type=float, default=4.0, help="trace seconds played per wall second (default 4)")
    add("--max-rps", type=float, default=10.0, help="cap on the replayed 5-second peak rate (default 10)")
    add("--torch-share", type=float, default=0.1, help="share of requests for the torch fleet (0.1)")
    add("--strategy", choices=ROUTING_STRATEGIES, default="least-load", help="the routers' strategy")
    add("--keep", action="store_true", help="leave the cluster and fleets running at the end")
    add("--cluster-name", default=DEMO_CLUSTER, help=f"local cluster to use (default {DEMO_CLUSTER})")
    add(
        "--reuse-cluster",
        action="store_true",
        help="run inside an already running cluster in a fresh namespace; leave the cluster up",
    )
    add("--namespace", help=f"namespace for the demo (default {DEMO_NAMESPACE}, or demo-<id> with reuse)")
    add("--results-dir", type=Path, default=RESULTS, help="where the JSON report and PNG go")
    add("--seed", type=int, default=0)
    add("--down", action="store_true", help="only tear down a cluster kept by an earlier --keep run")
    return p


@dataclass(frozen=True)
class Choices:
    args: argparse.Namespace
    workload_options: WorkloadOptions
    namespace: str
    names: fleet_spec.FleetNames


def choices_from(args: argparse.Namespace) -> Choices:
    if args.duration - args.quiet < 10:
        raise ValueError("--duration must leave at least 10 seconds of burst before the --quiet period")
    options = WorkloadOptions(
        burst_s=args.duration - args.quiet,
        quiet_s=args.quiet,
        speedup=args.speedup,
        max_rps=args.max_rps,
        torch_share=args.torch_share,
        seed=args.seed,
    )
    namespace = args.namespace or (f"demo-{uuid.uuid4().hex[:6]}" if args.reuse_cluster else DEMO_NAMESPACE)
    return Choices(args, options, namespace, fleet_spec.FleetNames())


class Demo:
    def __init__(self, choices: Choices, console: Console) -> None:
        self.choices = choices
        self.console = console
        self.paths = control_plane.Paths.default(choices.args.cluster_name)
        self.own_cluster = not choices.args.reuse_cluster
        self.installation: install.Installation | None = None
        self.monitor: FleetMonitor | None = None
        self.routers: dict[str, str] = {}

    def say(self, line: str) -> None:
        self.console.print(f"[bold cyan]demo[/] {line}", highlight=False)

    def run(self) -> Summary:
        args, namespace = self.choices.args, self.choices.namespace
        records = TRACES[args.trace]()
        workload = plan(records, self.choices.workload_options)
        note = f"{args.trace}: {workload.scaling_note(self.choices.workload_options)}"
        self.say(f"workload: {len(workload.requests)} requests; {note}")
        model = stage.ensure_model(self.say)
        if not self.own_cluster and not control_plane.is_running(self.paths):
            raise install.InstallError(f"--reuse-cluster: cluster {self.paths.name} is not running")
        control_plane.up(say=self.say, paths=self.paths)
        stage.check_pod_network(self.paths, self.own_cluster, self.say)
        stage.fresh_namespace(self.paths, namespace, self.say)
        self.installation = install.install(
            self.paths, namespace, self.own_cluster, self.choices.args.results_dir, self.say, READY_TIMEOUT_S
        )
        self.say(f"operator running ({self.installation.method})")
        names = self.choices.names
        docs = [
            fleet_spec.sim_fleet(names, namespace, model, args.strategy, fleet_spec.ScalingKnobs()),
            fleet_spec.torch_fleet(names, namespace, model, args.strategy),
        ]
        stage.apply_fleets(self.paths, docs)
        self.say(f"applied InferenceDeployments {names.sim} (sim, h100 + l40s) and {names.torch} (torch)")
        self.monitor = FleetMonitor(self.paths.kubeconfig, namespace, names)
        self.routers = stage.wait_fleets_ready(self.paths, namespace, self.monitor, self.say, READY_TIMEOUT_S)
        outcome = asyncio.run(
            replay(workload, self.monitor, self.routers, PromptIds.from_model(model), self.console, note)
        )
        return self.finish(workload, outcome, note)

    def finish(self, workload: Workload, outcome: Outcome, note: str) -> Summary:
        hourly = {fleet: fleet_spec.hourly_costs(fleet) for fleet in (SIM_FLEET, TORCH_FLEET)}
        summary = summarize(outcome.results, outcome.timelines, hourly, SIM_FLEET, outcome.end_s)
        self.console.print(summary_table(summary, self.choices.names, outcome.end_s))
        results_dir: Path = self.choices.args.results_dir
        json_path, png_path = results_dir / "report.json", results_dir / "load_vs_replicas.png"
        events = {name: dict(counts) for name, counts in outcome.events.items()}
        context: dict[str, Any] = {
            "options": {k: str(v) for k, v in vars(self.choices.args).items()},
            "scaling": note,
            "installed_with": self.installation.method if self.installation else None,
            "cluster": self.paths.name,
            "namespace": self.choices.namespace,
            "operator_events": events,
            "client_http_errors": dict(outcome.counters.http_errors),
            "monitor_errors": outcome.monitor_errors,
            "planned_requests": len(workload.requests),
        }
        report.write_json(json_path, summary, outcome.results, outcome.timelines, context)
        title = f"{self.choices.names.sim} fleet under {self.choices.args.trace}: burst, quiet, late request"
        report.write_plot(png_path, outcome.results, outcome.timelines[SIM_FLEET], outcome.end_s, title, note)
        self.say(f"operator Events: {events or 'none'}")
        self.say(f"wrote {json_path} and {png_path}")
        return summary

    def teardown(self) -> None:
        if self.choices.args.keep:
            self._print_keep()
        if self.monitor is not None:
            self.monitor.close()
        if self.choices.args.keep:
            return
        self.say("tearing down")
        if self.own_cluster:
            if self.installation is not None and self.installation.process is not None:
                install.uninstall(self.paths, self.installation, self.say)
            control_plane.down(say=self.say, paths=self.paths)
            return
        stage.delete_fleets(self.paths, self.choices.namespace, self.say)
        # Interrupted mid-install, a release may exist that `installation` does not know of yet.
        installation = self.installation or install.Installation(install.HELM, self.choices.namespace)
        install.uninstall(self.paths, installation, self.say)
        stage.delete_namespace(self.paths, self.choices.namespace, self.say)

    def _router_address(self, fleet: str) -> str | None:
        if self.monitor is None:
            return None
        try:
            return self.monitor.router_address(fleet)
        except Exception:  # only for the hint printed at the end
            return None

    def _print_keep(self) -> None:
        self.say("--keep: everything stays up")
        self.say(f"  export KUBECONFIG={self.paths.kubeconfig}")
        self.say(f"  kubectl get infdep -n {self.choices.namespace}")
        for fleet in (SIM_FLEET, TORCH_FLEET):
            address = self.routers.get(fleet) or self._router_address(fleet)
            if address is None:
                continue
            model = self.choices.names.model(fleet)
            self.say(
                f"  {model}: OPENAI_BASE_URL=http://{address}/v1 (model {model!r}, reachable from this host)"
            )
        if self.own_cluster:
            self.say(f"  stop it all: tokenfleet demo --down --cluster-name {self.paths.name}")
        else:
            self.say(f"  remove it: kubectl delete namespace {self.choices.namespace}")


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    console = Console()
    if args.down:
        control_plane.down(say=console.print, paths=control_plane.Paths.default(args.cluster_name))
        return 0
    try:
        choices = choices_from(args)
    except ValueError as err:
        console.print(f"error: {err}")
        return 2
    signal.signal(signal.SIGTERM, _interrupt)  # a kill tears down too
    demo = Demo(choices, console)
    started = time.monotonic()
    code = 1
    try:
        summary = demo.run()
        code = 0 if summary.is_success else 1
        if summary.num_failed:
            demo.say(f"[red]{summary.num_failed} request(s) failed[/]")
    except KeyboardInterrupt:
        demo.say("interrupted")
        code = 130
    except (
        install.InstallError,
        control_plane.ClusterError,
        build.BuildError,
        traces.TraceMissing,
    ) as err:
        console.print(f"[red]error:[/] {err}", highlight=False)
    finally:
        # Teardown must finish: a second Ctrl-C only says so.
        signal.signal(signal.SIGINT, lambda s, f: demo.say("still tearing down, please wait"))
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            demo.teardown()
        except (control_plane.ClusterError, install.InstallError) as err:
            console.print(f"[red]teardown:[/] {err}", highlight=False)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    demo.say(f"done in {time.monotonic() - started:.0f}s")
    return code


if __name__ == "__main__":
    sys.exit(main())
