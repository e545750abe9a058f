"""``spancost.cost``'s ``node_facts``: where the facts that price compute come from.

The pricing core reads resource attributes (``host.type``, ``cloud.region``, ...).
Applications rarely send them, and a sender that did could choose its own price.
With ``node_facts`` the sidecar knows them itself and they take precedence over
what a sender wrote:

- ``kubernetes``: the Node this agent runs on (``node_name``, from the downward
  API) and its pods, watched (`spancost.facts.kube`). A resource whose
  ``k8s.node.name`` is that node, or that has none (a DaemonSet agent only hears
  from its own node), is priced as that node;
- ``ec2_metadata`` / ``ecs_metadata``: the instance or task the sidecar runs on
  (`spancost.facts.host`), for resources the Kubernetes facts do not cover.

`overlay_from_node` and `overlay_from_hosts` (pure) turn facts into the attribute
values that replace the sender's; a fact that is not known leaves the sender's
value in place.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol, TypeVar

from spancost.allocation.core import DEFAULT_WEIGHTS, Weights
from spancost.errors import ConfigError
from spancost.facts.host import (
    ECS_METADATA_VARIABLE,
    HostFacts,
    HostWatcher,
    fetch_ec2,
    fetch_ecs,
)
from spancost.facts.model import CapacityLabel, NodeFacts, PodFacts
from spancost.settings.node_facts import (
    Ec2MetadataSettings,
    HostMetadataSettings,
    KubernetesSettings,
    NodeFactsSettings,
)
from spancost.vocabulary.keys import (
    AWS_ECS_LAUNCHTYPE,
    AWS_ECS_TASK_CPU,
    AWS_ECS_TASK_MEMORY,
    CLOUD_AVAILABILITY_ZONE,
    CLOUD_PLATFORM,
    CLOUD_PROVIDER,
    CLOUD_REGION,
    HOST_ARCH,
    HOST_TYPE,
    OS_TYPE,
)
from spancost.vocabulary.otlp import Value

if TYPE_CHECKING:  # the Kubernetes client is imported only where node facts need it
    from spancost.facts.kube import KubeFacts

__all__ = [
    "HostSource",
    "NodeFactsSource",
    "NodeWatch",
    "Overlay",
    "overlay_from_hosts",
    "overlay_from_node",
]

logger = logging.getLogger(__name__)

ORIGIN_KUBERNETES: Final = "kubernetes"
_GIB: Final = float(1 << 30)
_W = TypeVar("_W")
_OVERLAY_CACHE_LIMIT: Final = 16


@dataclass(frozen=True, slots=True)
class Overlay:
    """Resource attribute values that replace the sender's; `spot` None: not known."""

    values: Mapping[str, Value]
    spot: bool | None
    origin: str


def overlay_from_node(node: NodeFacts) -> Overlay:
    """What a Node's facts say about the resources of its pods."""
    values: dict[str, Value] = {}
    if node.provider is not None:
        values[CLOUD_PROVIDER] = node.provider
        if node.provider == "aws":
            # On a node, a pod is priced as the node, whatever platform it claims.
            values[CLOUD_PLATFORM] = "aws_eks"
    _put(values, HOST_TYPE, node.instance_type)
    _put(values, CLOUD_REGION, node.region)
    _put(values, CLOUD_AVAILABILITY_ZONE, node.zone)
    _put(values, OS_TYPE, node.os)
    _put(values, HOST_ARCH, node.arch)
    spot = None if node.capacity is None else node.capacity == "spot"
    return Overlay(values, spot, ORIGIN_KUBERNETES)


def overlay_from_hosts(hosts: tuple[HostFacts, ...]) -> Overlay:
    """What an instance's and a task's metadata say about the resources they run.

    An ECS task on EC2 needs both: the task says ``aws_ecs`` and its launch type,
    the instance its type. A fact the first in `hosts` (ECS before EC2) gives wins.
    """
    values: dict[str, Value] = {}
    spot: bool | None = None
    for host in reversed(hosts):
        values[CLOUD_PROVIDER] = host.provider
        _put(values, CLOUD_PLATFORM, host.platform)
        _put(values, HOST_TYPE, host.instance_type)
        _put(values, CLOUD_REGION, host.region)
        _put(values, CLOUD_AVAILABILITY_ZONE, host.zone)
        _put(values, HOST_ARCH, host.arch)
        _put(values, AWS_ECS_LAUNCHTYPE, host.ecs_launch_type)
        if host.task_cpu is not None:
            values[AWS_ECS_TASK_CPU] = f"{host.task_cpu:g} vCPU"
        if host.task_memory_mib is not None:
            values[AWS_ECS_TASK_MEMORY] = f"{host.task_memory_mib:g} MiB"
        if host.capacity is not None:
            spot = host.capacity == "spot"
    return Overlay(values, spot, "+".join(host.source for host in hosts))


def _put(values: dict[str, Value], key: str, value: str | None) -> None:
    if value is not None:
        values[key] = value


class _Shared:
    """Watchers shared by every plugin of one sidecar that configures the same one (the
    cost plugin and the totals sink watch the same node): one watch, counted users."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[Hashable, list[Any]] = {}  # key -> [watcher, users]

    def acquire(self, key: Hashable, make: Callable[[], _W]) -> tuple[_W, bool]:
        """The watcher for `key`, made (and then True) if nobody holds it yet."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry[1] += 1
                return entry[0], False
            watcher = make()
            self._entries[key] = [watcher, 1]
            return watcher, True

    def release(self, watcher: object) -> bool:
        """One user less of `watcher`; closes it with the last. False: not shared here."""
        with self._lock:
            found = [key for key, entry in self._entries.items() if entry[0] is watcher]
            if not found:
                return False
            entry = self._entries[found[0]]
            entry[1] -= 1
            if entry[1] > 0:
                return True
            del self._entries[found[0]]
        entry[0].close()
        return True


_SHARED: Final = _Shared()


class NodeWatch(Protocol):
    """What `NodeFactsSource` needs of `KubeFacts` (a test stands in with its own)."""

    @property
    def node_name(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def stale_since(self) -> float | None: ...
    def node(self) -> NodeFacts | None: ...
    def pods(self) -> Mapping[str, PodFacts]: ...
    def close(self) -> None: ...


class HostSource(Protocol):
    """What `NodeFactsSource` needs of `HostWatcher`."""

    @property
    def facts(self) -> HostFacts | None: ...
    @property
    def version(self) -> int: ...
    def close(self) -> None: ...


class NodeFactsSource:
    """The configured sources, asked in order: Kubernetes, ECS, EC2."""

    def __init__(self, kube: NodeWatch | None, hosts: Sequence[HostSource]) -> None:
        self.kube = kube
        self.hosts = hosts
        self._overlays: dict[object, Overlay] = {}

    @classmethod
    def from_config(
        cls, settings: NodeFactsSettings, path: str = "node_facts"
    ) -> NodeFactsSource | None:
        """The sources `settings` (``node_facts``, at `path`) configure, started; None for none.

        Waits up to ``kubernetes.sync_timeout`` for the node's first list, so that the
        first spans are priced (not an error when it passes: the watch keeps trying).
        """
        hosts: list[HostWatcher] = []
        kube: KubeFacts | None = None
        if settings.ecs_metadata is not None:
            hosts += _ecs(settings.ecs_metadata, f"{path}.ecs_metadata")
        if settings.ec2_metadata is not None:
            hosts += _ec2(settings.ec2_metadata)
        if settings.kubernetes is not None:
            kube = _kube(settings.kubernetes, f"{path}.kubernetes")
        if kube is None and not hosts:
            return None
        if kube is not None:
            assert settings.kubernetes is not None
            timeout = settings.kubernetes.sync_timeout
            if not kube.wait_synced(timeout):
                logger.warning(
                    "node facts: node %s not listed within %gs; spans are priced from their"
                    " own attributes until it is (counted as node_facts/missing)",
                    kube.node_name,
                    timeout,
                )
        return cls(kube, hosts)

    @property
    def version(self) -> tuple[int, ...]:
        """Changes whenever an overlay would."""
        kube = self.kube.version if self.kube is not None else 0
        return (kube, *(host.version for host in self.hosts))

    @property
    def stale(self) -> bool:
        """The Kubernetes facts in use could not be confirmed lately (the API is unreachable)."""
        return self.kube is not None and self.kube.stale_since is not None

    def overlay(self, node_name: str | None) -> Overlay | None:
        """The overlay for a resource on `node_name` (None: it names no node)."""
        kube = self.kube
        if kube is not None and (node_name is None or node_name == kube.node_name):
            node = kube.node()
            if node is not None:
                return self._cached(node)
        if node_name is None:
            found = tuple(host.facts for host in self.hosts if host.facts is not None)
            if found:
                return self._cached(found)
        return None

    def pod_share(self, pod_uid: str | None, weights: Weights = DEFAULT_WEIGHTS) -> float | None:
        """The share of this node that pod `pod_uid` reserves: its CPU and memory requests
        weighted as the allocation weighs them, over the node's capacity; None when the
        pod or the node's capacity is not known."""
        kube = self.kube
        if kube is None or pod_uid is None:
            return None
        node, pod = kube.node(), kube.pods().get(pod_uid)
        if node is None or pod is None or pod.end is not None:
            return None
        capacity = node.capacity_total
        total = weights.cpu * (capacity.cpu or 0.0) + weights.memory * (
            (capacity.memory or 0) / _GIB
        )
        if total <= 0:
            return None
        requested = weights.cpu * (pod.requests.cpu or 0.0) + weights.memory * (
            (pod.requests.memory or 0) / _GIB
        )
        return min(1.0, requested / total)

    @property
    def expects_node(self) -> bool:
        """Whether a resource without facts lacks them (Kubernetes facts are configured and
        the node is not known yet), rather than being somewhere no source covers."""
        return self.kube is not None

    def _cached(self, facts: NodeFacts | tuple[HostFacts, ...]) -> Overlay:
        overlay = self._overlays.get(facts)
        if overlay is None:
            if len(self._overlays) > _OVERLAY_CACHE_LIMIT:
                self._overlays.clear()
            if isinstance(facts, NodeFacts):
                overlay = overlay_from_node(facts)
            else:
                overlay = overlay_from_hosts(facts)
            self._overlays[facts] = overlay
        return overlay

    def close(self) -> None:
        """Stop the watchers, or leave them to the other plugins that share them."""
        if self.kube is not None and not _SHARED.release(self.kube):
            self.kube.close()
        for host in self.hosts:
            if not _SHARED.release(host):
                host.close()


def _kube(settings: KubernetesSettings, path: str) -> KubeFacts:
    # The client (30 MiB of a sidecar's memory) only for a config that watches a node.
    from spancost.facts.kube import KubeFacts  # noqa: PLC0415
    from spancost.kubeapi import KubeError, load_api_client  # noqa: PLC0415 - optional

    node_name = settings.node_name.strip()
    auth_type = settings.auth_type
    watch_timeout = settings.watch_timeout
    label = None
    if settings.capacity_label is not None:
        capacity = settings.capacity_label
        label = CapacityLabel(
            capacity.key.strip(),
            frozenset(v.strip().casefold() for v in capacity.spot_values),
            frozenset(v.strip().casefold() for v in capacity.on_demand_values),
        )
    pods = settings.pods
    kubeconfig = os.environ.get("KUBECONFIG") if auth_type == "kubeConfig" else None
    key = ("kubernetes", node_name, auth_type, kubeconfig, pods, label, watch_timeout)

    def make() -> KubeFacts:
        try:
            api = load_api_client(
                auth_type="serviceAccount" if auth_type == "serviceAccount" else "kubeConfig"
            )
        except KubeError as exc:
            raise ConfigError(f"{path}.auth_type", str(exc)) from exc
        return KubeFacts(
            api, node_name, pods=pods, capacity_label=label, watch_timeout_s=watch_timeout
        ).start()

    return _SHARED.acquire(key, make)[0]


def _ec2(settings: Ec2MetadataSettings) -> list[HostWatcher]:
    if not settings.enabled:
        return []
    endpoint, refresh, timeout = settings.endpoint.strip(), settings.refresh, settings.timeout
    watcher, _ = _SHARED.acquire(
        ("ec2_metadata", endpoint, refresh, timeout),
        lambda: HostWatcher(
            "ec2_metadata", lambda: fetch_ec2(endpoint, timeout_s=timeout), refresh
        ).start(),
    )
    return [watcher]


def _ecs(settings: HostMetadataSettings, path: str) -> list[HostWatcher]:
    if not settings.enabled:
        return []
    # The ECS agent sets the variable in every container: read where the sidecar runs.
    endpoint = (settings.endpoint or os.environ.get(ECS_METADATA_VARIABLE, "")).strip()
    refresh, timeout = settings.refresh, settings.timeout
    if not endpoint.startswith(("http://", "https://")):
        raise ConfigError(
            f"{path}.endpoint",
            f"must be an http(s) URL; ${ECS_METADATA_VARIABLE} (set by the ECS agent in"
            f" every container) is {os.environ.get(ECS_METADATA_VARIABLE)!r}",
        )
    watcher, _ = _SHARED.acquire(
        ("ecs_metadata", endpoint, refresh, timeout),
        lambda: HostWatcher(
            "ecs_metadata", lambda: fetch_ecs(endpoint, timeout_s=timeout), refresh
        ).start(),
    )
    return [watcher]
