"""The usage the allocation needs, read from what spancost already knows (pure).

- **Busy time** (`busy_of`): from stored spans, each service segment's wall time on its
  pod, split at the hour's edges and weighted by its adjusted count, per trace (a store
  keeps it with the trace, to move it when the trace's transaction becomes known).
- **Running time** (`node_usage`, `pod_usage`): from the node and pod facts the sidecar
  watches (spancost.facts), the seconds a node and each of its pods ran in an hour, with
  what pricing and splitting need: the node's instance, capacity and the pods' requests.
  An agent reports the current and the previous hour again and again; each report of an
  hour holds its whole time so far, so the store keeps the largest and a restart or a
  second agent changes nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Final, NamedTuple

from spancost.allocation.core import hour_slices
from spancost.facts.model import NodeFacts, PodFacts
from spancost.totals.aggregate import SpanContribution, ns_from_utc

__all__ = [
    "GIB",
    "BusyEntry",
    "NodeUsage",
    "PodUsage",
    "busy_of",
    "node_usage",
    "pod_usage",
    "workload_name",
]

GIB: Final = float(1 << 30)
_HOUR_NS: Final = 3600 * 10**9


class BusyEntry(NamedTuple):
    """A trace's busy time on one pod in one hour: weighted seconds, and the segments it
    started in that hour (weighted: a sampled segment stands for its adjusted count)."""

    pod: str
    hour_ns: int
    seconds: float
    segments: float


def busy_of(spans: Iterable[SpanContribution]) -> dict[str, list[BusyEntry]]:
    """Per trace id, the busy time its segments (local roots with a pod) add, summed per
    (pod, hour), in key order. Spans without a pod or that are not local roots add none."""
    found: dict[str, dict[tuple[str, int], list[float]]] = {}
    for span in spans:
        pod = span.pod
        if not span.segment or pod is None:
            continue
        per_trace = found.setdefault(span.trace_id, {})
        first = True
        for hour_ns, seconds in hour_slices(span.start_ns, span.end_ns) or [
            (span.start_ns // _HOUR_NS * _HOUR_NS, 0.0)  # a zero-length segment still counts
        ]:
            entry = per_trace.setdefault((pod, hour_ns), [0.0, 0.0])
            entry[0] += seconds * span.weight
            if first:
                entry[1] += span.weight
                first = False
    return {
        trace_id: [
            BusyEntry(pod, hour_ns, seconds, segments)
            for (pod, hour_ns), (seconds, segments) in sorted(entries.items())
        ]
        for trace_id, entries in found.items()
    }


class NodeUsage(NamedTuple):
    """A node's running time in one hour, and what prices and splits it."""

    hour_ns: int
    node: str
    seconds: float
    region: str | None
    instance_type: str | None
    operating_system: str | None
    capacity_type: str
    zone: str | None
    vcpu: float
    memory_gib: float


class PodUsage(NamedTuple):
    """A pod's running time on a node in one hour, and what it reserved."""

    hour_ns: int
    pod: str
    node: str
    seconds: float
    cpu: float
    memory_gib: float
    namespace: str
    workload: str


def _overlap(start_ns: int, end_ns: int, hour_ns: int) -> float:
    begin, finish = max(start_ns, hour_ns), min(end_ns, hour_ns + _HOUR_NS)
    return max(0, finish - begin) / 1e9


def _ns(moment: dt.datetime | None) -> int | None:
    return None if moment is None else ns_from_utc(moment)


def node_usage(
    node: NodeFacts, *, now: dt.datetime, hours: Iterable[int], since: dt.datetime | None = None
) -> list[NodeUsage]:
    """The node's seconds in each of `hours` (UTC hour starts, ns), from when it was
    created (or `since`, when not known) to `now`. Its capacity (not its allocatable:
    the bill is for the whole instance) splits its price."""
    start = _ns(node.created) or _ns(since)
    if start is None:
        return []
    end = ns_from_utc(now)
    capacity = node.capacity_total
    return [
        NodeUsage(
            hour_ns,
            node.name,
            _overlap(start, end, hour_ns),
            node.region,
            node.instance_type,
            node.os,
            node.capacity or "on_demand",
            node.zone,
            capacity.cpu or 0.0,
            (capacity.memory or 0) / GIB,
        )
        for hour_ns in hours
        if _overlap(start, end, hour_ns) > 0
    ]


def workload_name(pod: PodFacts) -> str:
    """``Kind/name`` of the pod's workload, or ``Pod/<name>`` for a bare pod."""
    if pod.workload_kind and pod.workload_name:
        return f"{pod.workload_kind}/{pod.workload_name}"
    return f"Pod/{pod.name}"


def pod_usage(
    pods: Iterable[PodFacts], *, node: str, now: dt.datetime, hours: Iterable[int]
) -> list[PodUsage]:
    """Each pod's seconds on `node` in each of `hours`, from its start to its end (or
    `now`); a pod not started yet has none. Requests are what it reserved."""
    end_now = ns_from_utc(now)
    wanted = list(hours)
    result: list[PodUsage] = []
    for pod in pods:
        if pod.node != node or pod.started is None:
            continue
        start = ns_from_utc(pod.started)
        end = end_now if pod.end is None else min(end_now, ns_from_utc(pod.end))
        for hour_ns in wanted:
            seconds = _overlap(start, end, hour_ns)
            if seconds > 0:
                result.append(
                    PodUsage(
                        hour_ns,
                        pod.uid,
                        node,
                        seconds,
                        pod.requests.cpu or 0.0,
                        (pod.requests.memory or 0) / GIB,
                        pod.namespace,
                        workload_name(pod),
                    )
                )
    return result
