"""The launcher loop: watch selected pods, run each as a local process, reflect it into the pod.

One watch thread follows the pods; one supervision thread probes readiness, restarts exited
processes per restartPolicy, and carries out deletions (SIGTERM, grace period, SIGKILL, then the
pod object is removed, as a kubelet does).
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from tokenfleet_devkit.launcher.pod_process import (
    PodSpecError,
    ProcessSpec,
    SecretLookup,
    process_spec,
    ready_status,
)

log = logging.getLogger("tokenfleet.launcher")
LAUNCHED_MARK = "TOKENFLEET_LAUNCHED_BY"


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Running:
    spec: ProcessSpec
    proc: subprocess.Popen[bytes]
    restarts: int = 0
    ready: bool = False
    probe_failures: int = 0
    started: float = field(default_factory=time.monotonic)
    terminating_since: float | None = None
    restart_at: float | None = None  # set while waiting out the restart backoff


class Launcher:
    def __init__(self, kubeconfig: Path, selector: str, log_dir: Path) -> None:
        self.kubeconfig = kubeconfig
        self.selector = selector
        self.log_dir = log_dir
        self.api = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))
        self.procs: dict[str, Running] = {}
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.http = httpx.Client(timeout=1.0)

    # -- watch side -------------------------------------------------------------------------
    def watch_forever(self) -> None:
        while not self.stop.is_set():
            try:
                self._watch_once()
            except Exception as err:  # the API server may restart; keep following
                log.warning("event=watch_error error=%r", err)
                time.sleep(1.0)

    def _watch_once(self) -> None:
        pods = self.api.list_pod_for_all_namespaces(label_selector=self.selector)
        seen = set()
        for pod in pods.items:
            seen.add(self._on_pod(self.api.api_client.sanitize_for_serialization(pod)))
        with self.lock:
            gone = [k for k in self.procs if k not in seen]
        for key in gone:
            self._kill(key, reason="pod gone")
        stream = watch.Watch().stream(
            self.api.list_pod_for_all_namespaces,
            label_selector=self.selector,
            resource_version=pods.metadata.resource_version if pods.metadata else None,
            timeout_seconds=60,
        )
        for event in stream:
            if self.stop.is_set():
                return
            obj = self.api.api_client.sanitize_for_serialization(event["object"])
            if event["type"] == "DELETED":
                self._kill(f"{obj['metadata']['namespace']}/{obj['metadata']['name']}", reason="pod deleted")
            else:
                self._on_pod(obj)

    def _on_pod(self, pod: dict[str, Any]) -> str:
        key = f"{pod['metadata']['namespace']}/{pod['metadata']['name']}"
        with self.lock:
            running = self.procs.get(key)
        if pod["metadata"].get("deletionTimestamp"):
            if running and running.terminating_since is None:
                self._terminate(running)
            elif not running:
                self._remove_pod(
                    pod["metadata"]["namespace"], pod["metadata"]["name"], pod["metadata"]["uid"]
                )
            return key
        if running or not pod.get("status", {}).get("podIP"):
            return key
        try:
            volumes = self.log_dir / "volumes" / f"{pod['metadata']['namespace']}_{pod['metadata']['name']}"
            spec = process_spec(
                pod, self._lookup(pod["metadata"]["namespace"]), self._base_env(pod), str(volumes)
            )
        except PodSpecError as err:
            log.error("event=cannot_run pod=%s error=%s", key, err)
            return key
        self._start(spec)
        return key

    # -- processes --------------------------------------------------------------------------
    def _base_env(self, pod: dict[str, Any]) -> dict[str, str]:
        env = {k: val for k, val in os.environ.items() if not k.startswith("KUBE")}
        kubeconfig = self._service_account_kubeconfig(pod)
        if kubeconfig:
            env["KUBECONFIG"] = str(kubeconfig)
        env["PYTHONUNBUFFERED"] = "1"
        # Container commands name console scripts; find ours even when PATH lacks the venv.
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env[LAUNCHED_MARK] = str(self.kubeconfig)  # lets `cluster down` find strays after a crash
        return env

    def _start(self, spec: ProcessSpec, restarts: int = 0) -> None:
        with self.lock:
            existing = self.procs.get(spec.pod_key)
        if existing is not None and existing.proc.poll() is None:
            return  # one process per pod, whatever the interleaving of watch and supervision
        self.log_dir.mkdir(parents=True, exist_ok=True)
        for path, content in spec.files.items():  # secret volumes: readable by this user only
            Path(path).parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            Path(path).write_text(content)
            os.chmod(path, 0o600)
        logfile = self.log_dir / f"{spec.pod_key.replace('/', '_')}.log"
        with open(logfile, "ab") as out:
            proc = subprocess.Popen(
                list(spec.argv),
                env=dict(spec.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        with self.lock:
            self.procs[spec.pod_key] = Running(spec=spec, proc=proc, restarts=restarts)
        log.info("event=started pod=%s pid=%d argv0=%s", spec.pod_key, proc.pid, spec.argv[0])
        self._patch_status(spec, ready=spec.readiness is None, running=True, restarts=restarts)

    def _terminate(self, running: Running) -> None:
        running.terminating_since = time.monotonic()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.proc.pid, signal.SIGTERM)
        log.info("event=sigterm pod=%s grace=%.0fs", running.spec.pod_key, running.spec.grace_seconds)

    def _kill(self, key: str, reason: str) -> None:
        with self.lock:
            running = self.procs.pop(key, None)
        if running is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(running.proc.pid, signal.SIGKILL)
        running.proc.wait()
        log.info("event=killed pod=%s reason=%s", key, reason)

    # -- supervision side ---------------------------------------------------------------------
    def supervise_forever(self) -> None:
        while not self.stop.is_set():
            with self.lock:
                items = list(self.procs.items())
            for key, running in items:
                try:
                    self._supervise(key, running)
                except Exception as err:
                    log.warning("event=supervise_error pod=%s error=%r", key, err)
            self.stop.wait(0.25)

    def _supervise(self, key: str, running: Running) -> None:
        code = running.proc.poll()
        if running.terminating_since is not None:
            if code is None and time.monotonic() - running.terminating_since > running.spec.grace_seconds:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(running.proc.pid, signal.SIGKILL)
                return
            if code is not None:
                with self.lock:
                    self.procs.pop(key, None)
                log.info("event=exited pod=%s code=%d", key, code)
                ns, name = key.split("/", 1)
                self._remove_pod(ns, name, running.spec.uid)
            return
        if code is not None:
            self._on_exit(key, running, code)
            return
        self._probe(running)

    def _on_exit(self, key: str, running: Running, code: int) -> None:
        """Restart per restartPolicy after a backoff; the entry stays in `procs` meanwhile, so the
        watch never starts a second process for the same pod."""
        if running.restart_at is not None:
            if time.monotonic() >= running.restart_at:
                self._start(running.spec, restarts=running.restarts + 1)
            return
        log.warning("event=exited pod=%s code=%d restarts=%d", key, code, running.restarts)
        self._patch_status(
            running.spec, ready=False, running=False, restarts=running.restarts, exit_code=code
        )
        policy = running.spec.restart_policy
        if policy == "Always" or (policy == "OnFailure" and code != 0):
            running.restart_at = time.monotonic() + min(10.0, 0.5 * 2**running.restarts)
        else:
            with self.lock:
                self.procs.pop(key, None)

    def _probe(self, running: Running) -> None:
        probe = running.spec.readiness
        if probe is None or time.monotonic() - running.started < probe.initial_delay_seconds:
            return
        try:
            ok = self.http.get(probe.url).status_code < 400
        except httpx.HTTPError:
            ok = False
        running.probe_failures = 0 if ok else running.probe_failures + 1
        ready = ok or (running.ready and running.probe_failures < probe.failure_threshold)
        if ready != running.ready:
            running.ready = ready
            log.info("event=readiness pod=%s ready=%s", running.spec.pod_key, ready)
            self._patch_status(running.spec, ready=ready, running=True, restarts=running.restarts)

    # -- API writes ---------------------------------------------------------------------------
    def _patch_status(
        self, spec: ProcessSpec, ready: bool, running: bool, restarts: int, exit_code: int | None = None
    ) -> None:
        ns, name = spec.pod_key.split("/", 1)
        body = ready_status(spec, ready, running, restarts, _now(), exit_code)
        try:
            self.api.patch_namespaced_pod_status(name, ns, body)
        except ApiException as err:
            if err.status != 404:
                log.warning("event=status_patch_failed pod=%s status=%s", spec.pod_key, err.status)

    def _remove_pod(self, namespace: str, name: str, uid: str) -> None:
        options = client.V1DeleteOptions(
            grace_period_seconds=0, preconditions=client.V1Preconditions(uid=uid)
        )
        try:
            self.api.delete_namespaced_pod(name, namespace, body=options, grace_period_seconds=0)
        except ApiException as err:
            if err.status not in (404, 409):
                log.warning("event=delete_failed pod=%s/%s status=%s", namespace, name, err.status)

    def _lookup(self, namespace: str) -> SecretLookup:
        def lookup(kind: str, name: str, key: str) -> str | None:
            try:
                if kind == "secret":
                    data = self.api.read_namespaced_secret(name, namespace).data or {}
                    return base64.b64decode(data[key]).decode() if key in data else None
                return (self.api.read_namespaced_config_map(name, namespace).data or {}).get(key)
            except ApiException:
                return None

        return lookup

    def _service_account_kubeconfig(self, pod: dict[str, Any]) -> Path | None:
        """A kubeconfig carrying a token bound to this pod's service account, so the process talks
        to the API server with exactly the rights RBAC gives that account."""
        if pod["spec"].get("automountServiceAccountToken") is False:
            return None
        meta = pod["metadata"]
        sa = pod["spec"].get("serviceAccountName", "default")
        body = client.AuthenticationV1TokenRequest(
            spec=client.V1TokenRequestSpec(
                audiences=[],
                expiration_seconds=24 * 3600,
                bound_object_ref=client.V1BoundObjectReference(
                    kind="Pod", api_version="v1", name=meta["name"], uid=meta["uid"]
                ),
            )
        )
        try:
            status = self.api.create_namespaced_service_account_token(sa, meta["namespace"], body).status
        except ApiException as err:
            log.warning(
                "event=token_request_failed pod=%s/%s status=%s", meta["namespace"], meta["name"], err.status
            )
            return None
        if status is None:
            return None
        token = status.token
        base = yaml.safe_load(self.kubeconfig.read_text())
        cluster = base["clusters"][0]["cluster"]
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "pod",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [{"name": sa, "user": {"token": token}}],
            "contexts": [
                {"name": "pod", "context": {"cluster": "local", "user": sa, "namespace": meta["namespace"]}}
            ],
        }
        path = self.log_dir / "kubeconfigs" / f"{meta['namespace']}_{meta['name']}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(cfg))
        path.chmod(0o600)
        return path

    def shutdown(self) -> None:
        self.stop.set()
        with self.lock:
            keys = list(self.procs)
        for key in keys:
            self._kill(key, reason="launcher stopping")
