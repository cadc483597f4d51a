"""Watch-backed, in-memory copies of the objects the operator reads, so that ticks and reconciles read
memory and send the API server only the writes they need.

One `KindCache` per kind lists, then watches, every object labelled `tokenfleet.io/deployment` (in each
watched namespace, or cluster-wide), and keeps a trimmed copy of each: only the fields the operator
reads, so a large cluster costs little memory. A watch that expires resumes from its last
resourceVersion (bookmarks keep it fresh); one that is too old (410 Gone) relists. `ClusterCache`
groups the kinds the operator reads and answers by object or by fleet. The reconciler also writes
through it: the object a write returns replaces the cached one at once, so a read right after a write
sees it even before the watch delivers the event.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from tokenfleet_operator.child_meta import LABEL_DEPLOYMENT
from tokenfleet_operator.kube import DELETION_COST, HASH_ANNOTATION, KubeApi, kind_path

log = logging.getLogger("tokenfleet.operator.cache")

KINDS = ("Pod", "Deployment", "Service", "ServiceAccount", "Role", "RoleBinding")
WATCH_SECONDS = 290  # the server ends each watch after this; it is resumed, not relisted
RETRY_SECONDS = 1.0
KEPT_METADATA = ("name", "namespace", "uid", "labels", "resourceVersion", "generation", "deletionTimestamp")
KEPT_ANNOTATIONS = (HASH_ANNOTATION, DELETION_COST)
KEPT_STATUS = ("podIP", "conditions", "replicas", "readyReplicas")

Key = tuple[str, str]  # (namespace, name)


class WatchExpired(Exception):
    """The resourceVersion is too old to watch from (410 Gone): list again."""


def trimmed(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of a Pod, Deployment, Service, ... that the operator reads; the rest is dropped."""
    meta = obj.get("metadata") or {}
    out_meta = {k: meta[k] for k in KEPT_METADATA if k in meta}
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in KEPT_ANNOTATIONS}
    if annotations:
        out_meta["annotations"] = annotations
    out: dict[str, Any] = {"metadata": out_meta}
    spec = obj.get("spec") or {}
    if "replicas" in spec:
        out["spec"] = {"replicas": spec["replicas"]}
    status = {k: v for k, v in (obj.get("status") or {}).items() if k in KEPT_STATUS}
    if status:
        out["status"] = status
    return out


class KindCache:
    """Every labelled object of one kind in the watched namespaces, by (namespace, name) and by fleet."""

    def __init__(self, api: KubeApi, kind: str, namespaces: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self._api = api
        self._scopes: tuple[str | None, ...] = namespaces or (None,)  # None: every namespace
        self._objects: dict[Key, dict[str, Any]] = {}
        self._by_fleet: dict[Key, dict[str, dict[str, Any]]] = {}
        self._synced = [asyncio.Event() for _ in self._scopes]
        self.events = 0  # watch events applied, for tests and logs

    def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return self._objects.get((namespace, name))

    def of_fleet(self, namespace: str, fleet: str) -> list[dict[str, Any]]:
        return list(self._by_fleet.get((namespace, fleet), {}).values())

    def __len__(self) -> int:
        return len(self._objects)

    def put(self, obj: Mapping[str, Any]) -> None:
        kept = trimmed(obj)
        meta = kept["metadata"]
        key = (meta.get("namespace", ""), meta.get("name", ""))
        self.drop(*key)
        self._objects[key] = kept
        fleet = (meta.get("labels") or {}).get(LABEL_DEPLOYMENT)
        if fleet is not None:
            self._by_fleet.setdefault((key[0], fleet), {})[key[1]] = kept

    def drop(self, namespace: str, name: str) -> None:
        old = self._objects.pop((namespace, name), None)
        if old is None:
            return
        fleet = (old["metadata"].get("labels") or {}).get(LABEL_DEPLOYMENT)
        members = self._by_fleet.get((namespace, fleet or ""))
        if members is not None:
            members.pop(name, None)
            if not members:
                del self._by_fleet[(namespace, fleet or "")]

    async def wait_synced(self) -> None:
        for synced in self._synced:
            await synced.wait()

    async def run(self) -> None:
        """List and watch every scope until cancelled."""
        await asyncio.gather(*(self._follow(i, scope) for i, scope in enumerate(self._scopes)))

    async def _follow(self, index: int, namespace: str | None) -> None:
        version: str | None = None
        while True:
            try:
                if version is None:
                    version = await self._relist(namespace)
                    self._synced[index].set()
                version = await self._watch(namespace, version)
            except WatchExpired:
                version = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # an API server restart or a dropped connection: resume shortly
                log.warning("kind=%s namespace=%s event=watch_failed error=%r", self.kind, namespace, exc)
                await asyncio.sleep(RETRY_SECONDS)

    async def _relist(self, namespace: str | None) -> str:
        body = await self._api.list_all(kind_path(self.kind, namespace), LABEL_DEPLOYMENT)
        listed = {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in body["items"]}
        stale = [k for k in self._objects if (namespace is None or k[0] == namespace) and k not in listed]
        for key in stale:
            self.drop(*key)
        for item in body["items"]:
            self.put(item)
        return str(body["metadata"]["resourceVersion"])

    async def _watch(self, namespace: str | None, version: str) -> str:
        """Apply watch events until the server ends the watch; returns the resourceVersion to resume at."""
        path = kind_path(self.kind, namespace)
        async with self._api.watch(path, LABEL_DEPLOYMENT, version, WATCH_SECONDS) as response:
            if response.status_code == 410:
                raise WatchExpired()
            if response.status_code >= 400:
                raise httpx.HTTPStatusError(
                    f"watch {path}: {response.status_code}", request=response.request, response=response
                )
            async for line in response.aiter_lines():
                if not line:
                    continue
                event = json.loads(line)
                obj = event.get("object") or {}
                if event.get("type") == "ERROR":
                    if obj.get("code") == 410:
                        raise WatchExpired()
                    raise RuntimeError(f"watch {path}: {obj.get('message')}")
                meta = obj.get("metadata") or {}
                version = str(meta.get("resourceVersion", version))
                if event.get("type") == "DELETED":
                    self.drop(meta.get("namespace", ""), meta.get("name", ""))
                elif event.get("type") in ("ADDED", "MODIFIED"):
                    self.put(obj)
                self.events += 1
        return version


class ClusterCache:
    """The operator's view of its children and their pods, one watched cache per kind."""

    def __init__(self, api: KubeApi, namespaces: tuple[str, ...] = ()) -> None:
        self.api = api
        self.kinds = {kind: KindCache(api, kind, namespaces) for kind in KINDS}
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self, timeout: float = 120.0) -> None:
        """Start every watch and return once each has listed its objects (again: waits, starts nothing)."""
        if not self._tasks:
            self._tasks = [
                asyncio.create_task(cache.run(), name=f"watch-{kind}") for kind, cache in self.kinds.items()
            ]
        await asyncio.wait_for(
            asyncio.gather(*(cache.wait_synced() for cache in self.kinds.values())), timeout
        )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []

    def get(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return self.kinds[kind].get(namespace, name)

    def of_fleet(self, kind: str, namespace: str, fleet: str) -> list[dict[str, Any]]:
        return self.kinds[kind].of_fleet(namespace, fleet)

    def put(self, kind: str, obj: Mapping[str, Any]) -> None:
        self.kinds[kind].put(obj)

    def drop(self, kind: str, namespace: str, name: str) -> None:
        self.kinds[kind].drop(namespace, name)
