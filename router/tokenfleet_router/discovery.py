"""Where the worker list comes from: a static list, a file of URLs, or Kubernetes Pods.

Each source runs until cancelled and calls `on_change(endpoints)` with the full current list
whenever it changes. The Kubernetes source LISTs the pods by label selector, then WATCHes from
that resourceVersion (no polling); when the watch times out it resumes, and on 410 Gone it lists
again. The event logic is the pure `pod_events.apply_event`; this module only does the I/O.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from tokenfleet_router.logs import log_event
from tokenfleet_router.pod_events import PodSet, WatchExpired, apply_event, state_from_list
from tokenfleet_router.types import Endpoint

OnEndpoints = Callable[[list[Endpoint]], None]
logger = logging.getLogger("tokenfleet.router.discovery")


class Discovery(Protocol):
    async def run(self, on_change: OnEndpoints) -> None: ...


def endpoints_from_urls(urls: Sequence[str]) -> list[Endpoint]:
    cleaned = [u.strip().rstrip("/") for u in urls if u.strip()]
    for url in cleaned:
        if not url.startswith(("http://", "https://")):
            raise ValueError(f"worker URL must start with http:// or https://, got {url!r}")
    return [Endpoint(name=url, url=url) for url in dict.fromkeys(cleaned)]


class StaticDiscovery:
    def __init__(self, urls: Sequence[str]) -> None:
        self.endpoints = endpoints_from_urls(urls)

    async def run(self, on_change: OnEndpoints) -> None:
        on_change(list(self.endpoints))
        await asyncio.Event().wait()


class FileDiscovery:
    """Worker URLs from a file (one per line or comma-separated), re-read when it changes."""

    def __init__(self, path: Path, interval_s: float = 0.5) -> None:
        self.path = path
        self.interval_s = interval_s

    def read(self) -> list[Endpoint]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        return endpoints_from_urls(text.replace(",", "\n").splitlines())

    async def run(self, on_change: OnEndpoints) -> None:
        current: list[Endpoint] | None = None
        while True:
            try:
                endpoints = self.read()
            except (OSError, ValueError) as e:
                log_event(logger, "workers_file_unreadable", path=str(self.path), error=str(e))
                endpoints = current or []
            if endpoints != current:
                current = endpoints
                on_change(list(endpoints))
            await asyncio.sleep(self.interval_s)


class KubernetesDiscovery:
    """Ready worker Pods matching a label selector in one namespace."""

    def __init__(
        self,
        namespace: str,
        selector: str,
        default_port: int,
        kubeconfig: str | None = None,
        watch_timeout_s: int = 60,
    ) -> None:
        self.namespace = namespace
        self.selector = selector
        self.default_port = default_port
        self.kubeconfig = kubeconfig
        self.watch_timeout_s = watch_timeout_s

    def _api(self) -> Any:
        from kubernetes import client, config

        if self.kubeconfig:
            return client.CoreV1Api(config.new_client_from_config(config_file=self.kubeconfig))
        configuration = client.Configuration()
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
        return client.CoreV1Api(client.ApiClient(configuration))

    async def run(self, on_change: OnEndpoints) -> None:
        loop = asyncio.get_running_loop()
        stop = threading.Event()

        def push(state: PodSet) -> None:
            if not stop.is_set():
                loop.call_soon_threadsafe(on_change, list(state.endpoints.values()))

        # A daemon thread, because the sync client blocks in a watch; it checks `stop` per event
        # and per watch timeout, and never holds up process exit.
        thread = threading.Thread(target=self._sync_forever, args=(push, stop), daemon=True)
        thread.start()
        try:
            await asyncio.Event().wait()
        finally:
            stop.set()

    def _list(self, api: Any) -> PodSet:
        response = api.list_namespaced_pod(
            self.namespace, label_selector=self.selector, _preload_content=False, _request_timeout=30
        )
        data = json.loads(response.data)
        return state_from_list(
            data.get("items") or [], data["metadata"]["resourceVersion"], self.default_port
        )

    def _sync_forever(self, push: Callable[[PodSet], None], stop: threading.Event) -> None:
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

        api = None
        while not stop.is_set():
            try:
                api = api or self._api()
                state = self._list(api)
                push(state)
                log_event(
                    logger, "pods_listed", endpoints=len(state.endpoints), version=state.resource_version
                )
                while not stop.is_set():
                    state = self._watch_once(api, watch.Watch(), state, push, stop)
            except WatchExpired:
                log_event(logger, "watch_expired", action="relist")
            except ApiException as e:
                if e.status != 410:
                    log_event(logger, "watch_failed", status=e.status, reason=e.reason)
                    stop.wait(2.0)
            except Exception as e:  # keep discovering through API server restarts and network errors
                log_event(logger, "watch_failed", error=type(e).__name__, detail=str(e)[:200])
                stop.wait(2.0)

    def _watch_once(
        self, api: Any, watcher: Any, state: PodSet, push: Callable[[PodSet], None], stop: threading.Event
    ) -> PodSet:
        """One watch call from `state`, until the server ends it; returns the latest state."""
        for event in watcher.stream(
            api.list_namespaced_pod,
            self.namespace,
            label_selector=self.selector,
            resource_version=state.resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self.watch_timeout_s,
            _request_timeout=self.watch_timeout_s + 15,
        ):
            updated = apply_event(
                state, {"type": event["type"], "object": event["raw_object"]}, self.default_port
            )
            if updated.endpoints != state.endpoints:
                push(updated)
            state = updated
            if stop.is_set():
                watcher.stop()
                break
        return state
