"""A real Prometheus (the Debian package) for the dashboard end-to-end test, fed by file-SD targets
that a background thread keeps in step with the fleet's pods."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import yaml

from tests.conftest import Cluster
from tests.packaging.fleet_tools import free_port
from tests.waiting import wait_for
from tokenfleet_devkit.packaging import dashboard_model, file_sd, sync
from tokenfleet_devkit.packaging.dashboards import DASHBOARDS
from tokenfleet_devkit.packaging.promql import PrometheusClient, parse_label_values, substitute

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"


class TargetWriter:
    """Re-lists the namespace's fleet pods every `every` seconds and rewrites the file-SD files."""

    def __init__(self, cluster: Cluster, namespace: str, sd_dir: Path, every: float = 1.0) -> None:
        self.cluster, self.namespace, self.sd_dir, self.every = cluster, namespace, sd_dir, every
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="file-sd", daemon=True)

    def write_once(self) -> None:
        listing = self.cluster.kubectl("get", "pods", "-n", self.namespace, "-o", "json", check=False)
        if listing.returncode != 0:
            return
        pods = json.loads(listing.stdout)["items"]
        for component in file_sd.JOBS:
            file_sd.write_targets(self.sd_dir / f"{component}.json", file_sd.target_groups(pods, component))

    def _loop(self) -> None:
        while not self.stop.is_set():
            self.write_once()
            self.stop.wait(self.every)

    def __enter__(self) -> TargetWriter:
        self.write_once()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


@contextlib.contextmanager
def running_prometheus(workdir: Path, sd_dir: Path) -> Iterator[PrometheusClient]:
    """Prometheus on 127.0.0.1 with a free port, scraping every 1 s; stopped on exit."""
    config = workdir / "prometheus.yml"
    config.write_text(yaml.safe_dump(file_sd.scrape_config(sd_dir, interval="1s", rule_files=[sync.ALERTS])))
    port = free_port()
    log = (workdir / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--storage.tsdb.retention.time=1h",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    client = PrometheusClient(f"http://127.0.0.1:{port}")
    try:
        wait_for("Prometheus ready", lambda: proc.poll() is not None or client.is_ready(), timeout=60)
        if proc.poll() is not None:
            raise AssertionError(f"prometheus exited: {(workdir / 'prometheus.log').read_text()[-2000:]}")
        yield client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


LOAD_REQUESTS, LOAD_SECONDS, CONCURRENCY = 60, 12.0, 6
SHARED_PREFIX = "You are a helpful assistant for the tokenfleet dashboards test. " * 4


def drive_load(router_url: str, model: str) -> dict[str, int]:
    """Bounded in count and time: streamed chat completions with a shared prompt prefix and sessions."""
    client = openai.OpenAI(base_url=f"{router_url}/v1", api_key="unused", timeout=30, max_retries=0)
    deadline = time.monotonic() + LOAD_SECONDS
    outcomes: dict[str, int] = {}

    def one(i: int) -> str:
        if time.monotonic() > deadline:
            return "skipped"
        try:
            stream = client.chat.completions.create(
                model=model,
                max_tokens=24,
                stream=True,
                messages=[{"role": "user", "content": f"{SHARED_PREFIX} question {i}"}],
                extra_headers={"x-session-id": f"s{i % 5}"},
            )
            for _ in stream:
                pass
            return "ok"
        except openai.APIStatusError as err:
            return str(err.status_code)
        except openai.APIError as err:
            return type(err).__name__

    with ThreadPoolExecutor(CONCURRENCY) as pool:
        for outcome in pool.map(one, range(LOAD_REQUESTS)):
            outcomes[outcome] = outcomes.get(outcome, 0) + 1
    return outcomes


def empty_queries(prom: PrometheusClient, variables: dict[str, str], since: float) -> list[str]:
    failures: list[str] = []
    for file_name, build in DASHBOARDS.items():
        board = build()
        for var in board["templating"]["list"]:
            if var["type"] == "query":
                series, label = parse_label_values(substitute(var["query"]["query"], variables))
                values = prom.label_values(label, series)
                if not values:
                    failures.append(f"{file_name} variable ${var['name']}: {var['query']['query']}")
        for title, expr in dashboard_model.panel_queries(board):
            if not prom.query(substitute(expr, variables)):
                failures.append(f"{file_name} panel {title!r}: {expr}")
        for annotation in board["annotations"]["list"]:
            if "expr" in annotation:
                expr = substitute(annotation["expr"], variables)
                if not prom.query_range(expr, since, time.time(), 5):
                    failures.append(f"{file_name} annotation {annotation['name']!r}: {annotation['expr']}")
    return failures
