"""The totals sink's ``allocation``: report this node's usage, priced, and allocate.

Configured in the sink (``spancost.totals``), beside what it already does::

    allocation:
      node_facts:                       # as spancost.cost's: where usage comes from
        kubernetes: {node_name: ${env:K8S_NODE_NAME}, auth_type: serviceAccount}
      prices: {aws_spot: {enabled: true}}   # as spancost.cost's; default: bundled
      spot: {discount: 0.7}

Every maintenance interval (the sink's background thread, never the export path) the
reporter writes the node's and its pods' running time in the current and the previous
hour (each report holds the hour's whole time so far; the store keeps the largest),
the node-hour priced by the book as a span would be, then allocates the hours whose
usage changed. The node facts are the same watch as the cost plugin's when both name
the same node (`spancost.facts.source` shares it).

Outside Kubernetes (``node_facts.ec2_metadata``) the instance is the node and the host
its one pod (the identity document's launch time is when it started running); spans
that name no pod are this host's busy time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from spancost.allocation.core import DEFAULT_WEIGHTS
from spancost.allocation.pricing import NodePrice, price_node
from spancost.allocation.usage import NodeUsage, PodUsage, node_usage, pod_usage
from spancost.config import join_key, parse
from spancost.errors import ConfigError
from spancost.facts.model import NodeFacts, Resources
from spancost.facts.source import NodeFactsSource
from spancost.pricing.catalog import PriceBook, build_price_book
from spancost.pricing.compute import ComputeSettings
from spancost.settings.allocation import AllocationSettings
from spancost.totals.aggregate import ns_from_utc

__all__ = ["HOST_POD_PREFIX", "UsageReporter"]

logger = logging.getLogger(__name__)

HOST_POD_PREFIX: Final = "host/"
_HOUR: Final = timedelta(hours=1)


class UsageReporter:
    """See the module docstring. `close` stops its watchers and price sources."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        now: Callable[[], datetime],
        node_facts: NodeFactsSource | None = None,
        path: str = "allocation",
    ) -> None:
        """`config`: the sink's ``allocation`` (at `path`, for errors). `node_facts`: a
        source to use instead of the config's (which must then be absent); closed with
        the reporter."""
        settings = parse(AllocationSettings, config, path)
        self.weights = DEFAULT_WEIGHTS
        if (settings.node_facts is not None) == (node_facts is not None):
            raise ConfigError(
                join_key(path, "node_facts"),
                "is required: where usage comes from" if node_facts is None else "given twice",
            )
        self._book: PriceBook = build_price_book(
            config.get("prices", {}), path=join_key(path, "prices")
        )
        self._settings = ComputeSettings(
            spot_discount=settings.spot.discount,
            default_operating_system=self._book.default_operating_system,
        )
        try:
            facts = node_facts
            if settings.node_facts is not None:
                facts = NodeFactsSource.from_config(
                    settings.node_facts, join_key(path, "node_facts")
                )
        except BaseException:
            self._book.close()
            raise
        if facts is None:
            self._book.close()
            raise ConfigError(join_key(path, "node_facts"), "configures no source of usage")
        self._facts = facts
        self._started = now()

    @property
    def host_pod(self) -> str | None:
        """Outside Kubernetes, the pod that spans naming none ran in (the host)."""
        if self._facts.kube is not None:
            return None
        instance = self._host_instance()
        return None if instance is None else HOST_POD_PREFIX + instance

    def usage(self, now: datetime) -> tuple[list[tuple[NodeUsage, NodePrice]], list[PodUsage]]:
        """The node's (priced) and its pods' running time in this hour and the last."""
        hour = now.replace(minute=0, second=0, microsecond=0)
        hours = [_ns(hour - _HOUR), _ns(hour)]
        nodes: list[NodeUsage] = []
        pods: list[PodUsage] = []
        kube = self._facts.kube
        if kube is not None:
            node = kube.node()
            if node is not None:
                nodes = node_usage(node, now=now, hours=hours, since=self._started)
                pods = pod_usage(kube.pods().values(), node=node.name, now=now, hours=hours)
        else:
            host = self._host_node()
            if host is not None:
                nodes = node_usage(host, now=now, hours=hours, since=self._started)
                pods = [
                    PodUsage(n.hour_ns, HOST_POD_PREFIX + n.node, n.node, n.seconds, 1.0, 0.0,
                             "", "Host/" + n.node)
                    for n in nodes
                ]  # fmt: skip
        return [(n, price_node(n, self._book, self._settings)) for n in nodes], pods

    def report(self, store: Any, now: datetime) -> int:
        """Write the usage and allocate what changed; how many hours were allocated."""
        nodes, pods = self.usage(now)
        if nodes or pods:
            store.write_usage(nodes, pods, now)
        allocated: int = store.allocate(self.weights)
        return allocated

    def close(self) -> None:
        self._facts.close()
        self._book.close()

    def _host_instance(self) -> str | None:
        for host in self._facts.hosts:
            facts = host.facts
            if facts is not None and facts.source == "ec2_metadata":
                return facts.instance_id or "instance"
        return None

    def _host_node(self) -> NodeFacts | None:
        """The EC2 instance as a node: the host pod takes all of it (capacity 1 vCPU)."""
        for host in self._facts.hosts:
            facts = host.facts
            if facts is None or facts.source != "ec2_metadata":
                continue
            return NodeFacts(
                name=facts.instance_id or "instance",
                provider="aws",
                instance_type=facts.instance_type,
                region=facts.region,
                zone=facts.zone,
                arch=facts.arch,
                capacity=facts.capacity,
                capacity_total=Resources(cpu=1.0, memory=0),
                created=facts.launched,
            )
        return None


def _ns(moment: datetime) -> int:
    return ns_from_utc(moment)
