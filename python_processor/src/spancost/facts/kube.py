"""Node and pod facts kept current by watching the Kubernetes API (one node's worth).

`KubeFacts` watches one Node (field selector ``metadata.name``) and the Pods bound to
it (``spec.nodeName``), each in a background thread with the official client:
list, then watch from the list's ``resourceVersion`` with bookmarks, so a
reconnect resumes where it left off; a ``410 Gone`` (the version is too old)
lists again. A failed request is retried with exponential backoff (up to
`MAX_BACKOFF_S`), and meanwhile the last known facts stay in use: `stale_since`
says since when they could not be confirmed. Nothing here is called per span:
readers get immutable snapshots (`node`, `pods`) by reference.

A deleted pod is kept, with its end time, for `ended_pod_ttl` seconds, because
spans of a pod arrive after it is gone.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import Any, Final

import urllib3.exceptions
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from spancost.facts.model import CapacityLabel, NodeFacts, PodFacts, node_facts, pod_facts

__all__ = ["DEFAULT_WATCH_TIMEOUT_S", "KubeFacts", "WatchStats"]

logger = logging.getLogger(__name__)

DEFAULT_WATCH_TIMEOUT_S: Final = 300.0
"""How long one watch request stays open before it is renewed (server-side timeout)."""
DEFAULT_ENDED_POD_TTL_S: Final = 3600.0
MIN_BACKOFF_S: Final = 0.5
MAX_BACKOFF_S: Final = 30.0
CONNECT_TIMEOUT_S: Final = 10.0
HTTP_GONE: Final = 410

_Handler = Callable[[str, Mapping[str, Any]], None]


@dataclass(slots=True)
class WatchStats:
    """What one watcher did, for tests and logs."""

    lists: int = 0
    watches: int = 0
    events: int = 0
    failures: int = 0
    gone: int = 0


class KubeFacts:
    """The facts of node `node_name` and of its pods, kept current in the background.

    `api` is an API client (`spancost.kubeapi.load_api_client`); it is closed by
    `close`. With `pods` false only the Node is watched.
    """

    def __init__(
        self,
        api: client.ApiClient,
        node_name: str,
        *,
        pods: bool = True,
        capacity_label: CapacityLabel | None = None,
        watch_timeout_s: float = DEFAULT_WATCH_TIMEOUT_S,
        ended_pod_ttl_s: float = DEFAULT_ENDED_POD_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not node_name:
            raise ValueError("node_name must not be empty")
        self.node_name = node_name
        self._api = api
        self._core = client.CoreV1Api(api)
        self._capacity_label = capacity_label
        self._ended_ttl = ended_pod_ttl_s
        self._clock = clock
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._node: NodeFacts | None = None
        self._pods: Mapping[str, PodFacts] = MappingProxyType({})
        self._version = 0
        self._synced = threading.Event()
        selector = f"metadata.name={node_name}"
        self._watchers = [
            _Watcher(
                "node",
                list_call=self._core.list_node,
                field_selector=selector,
                replace=self._replace_node,
                handle=self._on_node,
                stop=self._stop,
                watch_timeout_s=watch_timeout_s,
            )
        ]
        if pods:
            self._watchers.append(
                _Watcher(
                    "pods",
                    list_call=self._core.list_pod_for_all_namespaces,
                    field_selector=f"spec.nodeName={node_name}",
                    replace=self._replace_pods,
                    handle=self._on_pod,
                    stop=self._stop,
                    watch_timeout_s=watch_timeout_s,
                )
            )

    # -- readers (any thread) -----------------------------------------------------

    @property
    def version(self) -> int:
        """Bumped whenever the Node's facts change, or a pod appears or changes what it
        requests (what prices a span on it)."""
        return self._version

    def node(self) -> NodeFacts | None:
        """The node's facts; None until first listed (or if the Node does not exist)."""
        return self._node

    def pods(self) -> Mapping[str, PodFacts]:
        """The node's pods by UID, including those ended within `ended_pod_ttl_s`."""
        return self._pods

    @property
    def stale_since(self) -> float | None:
        """When the API was last found unreachable (epoch seconds), while it still is."""
        times = [w.failing_since for w in self._watchers if w.failing_since is not None]
        return min(times) if times else None

    @property
    def stats(self) -> Mapping[str, WatchStats]:
        return {w.kind: w.stats for w in self._watchers}

    def wait_synced(self, timeout: float) -> bool:
        """Block until every watcher has listed once; False on timeout."""
        deadline = time.monotonic() + timeout
        return all(w.synced.wait(max(0.0, deadline - time.monotonic())) for w in self._watchers)

    # -- life cycle ---------------------------------------------------------------

    def start(self) -> KubeFacts:
        for watcher in self._watchers:
            watcher.start()
        return self

    def close(self, timeout: float = 5.0) -> None:
        self._stop.set()
        for watcher in self._watchers:
            watcher.close(timeout)
        self._api.close()  # type: ignore[no-untyped-call]

    # -- updates (watcher threads) ------------------------------------------------

    def _replace_node(self, items: list[Mapping[str, Any]]) -> None:
        found = [node_facts(item, self._capacity_label) for item in items]
        self._set_node(found[0] if found else None)

    def _on_node(self, kind: str, item: Mapping[str, Any]) -> None:
        self._set_node(None if kind == "DELETED" else node_facts(item, self._capacity_label))

    def _set_node(self, facts: NodeFacts | None) -> None:
        previous = self._node
        if _same_node(previous, facts):
            if facts is not None:
                self._node = facts  # a newer resourceVersion, nothing that prices
            return
        self._node = facts
        self._version += 1
        if facts is None:
            logger.warning("node facts: node %s not found; keeping no facts", self.node_name)
        else:
            logger.info(
                "node facts: %s is %s in %s (%s), %s/%s, capacity %s%s, allocatable %s CPU, %s B",
                facts.name,
                facts.instance_type or "an unknown instance type",
                facts.region or "an unknown region",
                facts.zone or "?",
                facts.os or "?",
                facts.arch or "?",
                facts.capacity or "not labelled (on-demand)",
                f" (from {facts.capacity_from})" if facts.capacity_from else "",
                facts.allocatable.cpu,
                facts.allocatable.memory,
            )

    def _replace_pods(self, items: list[Mapping[str, Any]]) -> None:
        now = self._now()
        with self._lock:
            listed = {facts.uid: facts for facts in map(pod_facts, items) if facts.uid}
            # Pods gone between two lists were deleted meanwhile: keep them, ended now.
            for uid, old in self._pods.items():
                if uid not in listed:
                    listed[uid] = _ended(old, now)
            if any(_requests_changed(self._pods.get(uid), new) for uid, new in listed.items()):
                self._version += 1
            self._pods = MappingProxyType(self._expire(listed, now))

    def _on_pod(self, kind: str, item: Mapping[str, Any]) -> None:
        now = self._now()
        deleted = now if kind == "DELETED" else None
        facts = pod_facts(item, deleted_at=deleted)
        if not facts.uid:
            return
        with self._lock:
            pods = dict(self._pods)
            if _requests_changed(pods.get(facts.uid), facts):
                self._version += 1
            pods[facts.uid] = facts
            self._pods = MappingProxyType(self._expire(pods, now))

    def _expire(self, pods: dict[str, PodFacts], now: dt.datetime) -> dict[str, PodFacts]:
        horizon = now - dt.timedelta(seconds=self._ended_ttl)
        return {
            uid: facts for uid, facts in pods.items() if facts.end is None or facts.end > horizon
        }

    def _now(self) -> dt.datetime:
        return dt.datetime.fromtimestamp(self._clock(), dt.UTC)


def _same_node(a: NodeFacts | None, b: NodeFacts | None) -> bool:
    """Equal but for the resourceVersion (a status heartbeat changes nothing that prices)."""
    if a is None or b is None:
        return a is b
    return replace(a, resource_version="") == replace(b, resource_version="")


def _requests_changed(old: PodFacts | None, new: PodFacts) -> bool:
    return old is None or old.requests != new.requests


def _ended(facts: PodFacts, now: dt.datetime) -> PodFacts:
    return facts if facts.end is not None else replace(facts, end=now)


class _Watcher:
    """List, then watch, one kind of object with a field selector, forever."""

    def __init__(
        self,
        kind: str,
        *,
        list_call: Callable[..., Any],
        field_selector: str,
        replace: Callable[[list[Mapping[str, Any]]], None],
        handle: _Handler,
        stop: threading.Event,
        watch_timeout_s: float,
    ) -> None:
        self.kind = kind
        self._list = list_call
        self._selector = field_selector
        self._replace = replace
        self._handle = handle
        self._stop = stop
        self._timeout = max(1, round(watch_timeout_s))
        self.stats = WatchStats()
        self.synced = threading.Event()
        self.failing_since: float | None = None
        self._response: Any = None  # the open watch request, to cut it on close
        self._thread = threading.Thread(
            target=self._run, name=f"spancost-facts-{kind}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout: float) -> None:
        response = self._response
        if response is not None:
            response.shutdown()  # unblocks the thread's read
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        version: str | None = None
        failures = 0
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list_all()
                version = self._watch_from(version)
                failures = 0
            except ApiException as exc:
                if exc.status == HTTP_GONE:
                    self.stats.gone += 1
                    logger.info("node facts: %s watch expired (410); listing again", self.kind)
                    version = None
                    continue
                failures = self._failed(failures, f"HTTP {exc.status} {exc.reason}")
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                failures = self._failed(failures, f"{type(exc).__name__}: {exc}")
            except Exception:  # a bug must not end the watch for good
                logger.exception("node facts: %s watch failed unexpectedly", self.kind)
                failures = self._failed(failures, "unexpected error")
            if failures:
                # List again once the API answers: that list is what confirms the facts
                # (a watch resumed from an old version may stay silent for minutes).
                version = None
                delay = min(MAX_BACKOFF_S, MIN_BACKOFF_S * 2 ** (failures - 1))
                self._stop.wait(delay * random.uniform(0.8, 1.2))  # noqa: S311 - jitter

    def _failed(self, failures: int, why: str) -> int:
        if self._stop.is_set():
            return 0  # closing: the stream was cut on purpose
        self.stats.failures += 1
        if self.failing_since is None:
            self.failing_since = time.time()
            logger.warning(
                "node facts: the Kubernetes API cannot be reached for %s (%s); keeping the"
                " last known facts until it can",
                self.kind,
                why,
            )
        return failures + 1

    def _recovered(self) -> None:
        if self.failing_since is not None:
            logger.warning(
                "node facts: the Kubernetes API answers again for %s after %.0f s",
                self.kind,
                time.time() - self.failing_since,
            )
            self.failing_since = None

    def _list_all(self) -> str:
        response = self._list(
            field_selector=self._selector,
            _preload_content=False,
            _request_timeout=(CONNECT_TIMEOUT_S, CONNECT_TIMEOUT_S * 6),
        )
        try:
            document = json.loads(response.data)
        finally:
            response.release_conn()
        items = [item for item in document.get("items") or () if isinstance(item, Mapping)]
        self._replace(items)
        self.stats.lists += 1
        self._recovered()
        self.synced.set()
        return str(document.get("metadata", {}).get("resourceVersion") or "")

    def _watch_from(self, version: str) -> str:
        """Watch from `version` until the server ends the request; the version to resume at.

        Reads the event stream itself (the client's `iter_resp_lines`) rather than
        through `kubernetes.watch.Watch`, whose undeserialized mode fails on the
        server's ERROR events (410 Gone among them) instead of reporting them.
        """
        self.stats.watches += 1
        response = self._list(
            field_selector=self._selector,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._timeout,
            watch=True,
            _preload_content=False,
            # A dead connection shows as no bytes for longer than the server's timeout.
            _request_timeout=(CONNECT_TIMEOUT_S, self._timeout + CONNECT_TIMEOUT_S),
        )
        self._response = response
        try:
            for line in iter_resp_lines(response):  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    break
                version = self._apply(line, version)
        finally:
            self._response = None
            response.release_conn()
        return version

    def _apply(self, line: str, version: str) -> str:
        """Handle one line of a watch stream; the version to resume at after it."""
        if not line.strip():
            return version
        event = json.loads(line)
        kind = event.get("type") if isinstance(event, Mapping) else None
        item = event.get("object") if isinstance(event, Mapping) else None
        if not isinstance(item, Mapping):
            return version
        if kind == "ERROR":
            code = item.get("code")
            raise ApiException(
                status=code if isinstance(code, int) else 500,
                reason=str(item.get("message") or item.get("reason") or "watch error"),
            )
        metadata = item.get("metadata")
        resource_version = (
            metadata.get("resourceVersion") if isinstance(metadata, Mapping) else None
        )
        if resource_version:
            version = str(resource_version)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self.stats.events += 1
            self._handle(str(kind), item)
        return version
