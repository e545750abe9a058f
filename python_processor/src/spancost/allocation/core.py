"""A node's cost, split so that it adds up to the bill: pods, transactions, untraced, idle.

Pure: usage and prices in, allocations out; no protobuf, no database, no clock.

For each node and UTC hour (the bill's unit; see the README, "Costs that add up to the
bill", for a worked example):

1. **The node's cost** for the hour is its hourly price times the seconds it ran in
   that hour / 3600.
2. **Each pod's cost** is what its requests reserve of the node for the seconds it ran
   on it in that hour: the node's price is split into a price per vCPU-hour and per
   GB-hour of memory by `Weights` (AWS Split Cost Allocation Data's default, 9:1: a
   vCPU weighs as much as 9 GB), over the node's capacity:
   ``per_vcpu_hour = price * w_cpu / (w_cpu * vcpu + w_mem * gb)``, and likewise per
   GB-hour. Should the pods' costs exceed the node's (requests above capacity, or
   more pod-seconds than the node ran), they are scaled down together to the node's.
3. **A pod's cost goes to the transactions it served** in that hour, in proportion to
   their busy seconds on it (each service segment's wall time on the pod within the
   hour, weighted by its sampling's adjusted count); a pod with no busy time in the
   hour is an **untraced workload**, named by its namespace and workload.
4. **Idle** is the rest: capacity no pod requested, and the time a node ran without
   the pods that reserve it.

So, per node and hour, ``sum(transactions) + sum(untraced) + idle == node cost``, to
float rounding (every step is a product or an ``fsum`` of non-negative terms).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal, NamedTuple

__all__ = [
    "DEFAULT_WEIGHTS",
    "HOUR_S",
    "Allocation",
    "Busy",
    "Kind",
    "NodeHour",
    "PodHour",
    "Unallocated",
    "Weights",
    "allocate",
    "hour_slices",
]

HOUR_S: Final = 3600.0
_HOUR_NS: Final = 3600 * 10**9

_MIN_CAPACITY: Final = 1e-6
"""A node weighing less (a millionth of a GiB) has no capacity to split by: all idle
(and no share can overflow to infinity on a denormal capacity)."""

Kind = Literal["transaction", "untraced", "idle"]
_Label = tuple[str, str, str]  # (domain, transaction, environment)


@dataclass(frozen=True, slots=True)
class Weights:
    """How a node's price divides between a vCPU and a GB of memory."""

    cpu: float = 9.0
    memory: float = 1.0

    def __post_init__(self) -> None:
        for name, value in (("cpu", self.cpu), ("memory", self.memory)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"weight {name} must be a finite number >= 0, got {value!r}")
        if self.cpu + self.memory <= 0:
            raise ValueError("at least one weight must be above 0")


DEFAULT_WEIGHTS: Final = Weights()
"""AWS Split Cost Allocation Data's default: 9 per vCPU, 1 per GB."""


@dataclass(frozen=True, slots=True)
class NodeHour:
    """A node in one hour: how long it ran then, what it cost per hour, its capacity."""

    node: str
    hour_ns: int
    seconds: float
    hourly_usd: float
    vcpu: float
    memory_gb: float

    @property
    def cost(self) -> float:
        return self.hourly_usd * self.seconds / HOUR_S


@dataclass(frozen=True, slots=True)
class PodHour:
    """A pod on a node in one hour: how long it ran there then, and what it reserved."""

    pod: str
    node: str
    hour_ns: int
    seconds: float
    cpu: float
    memory_gb: float
    namespace: str = ""
    workload: str = ""


@dataclass(frozen=True, slots=True)
class Busy:
    """Busy seconds (sampling-weighted) a transaction kept a pod in one hour."""

    pod: str
    hour_ns: int
    transaction: str
    domain: str
    seconds: float
    environment: str = ""


class Allocation(NamedTuple):
    """A share of a node's cost in one hour.

    ``transaction``: `domain` and `transaction` set, with the `pod` that served it;
    ``untraced``: `namespace`, `workload` and `pod` set; ``idle``: only the node."""

    hour_ns: int
    node: str
    kind: Kind
    usd: float
    pod: str = ""
    domain: str = ""
    transaction: str = ""
    namespace: str = ""
    workload: str = ""
    environment: str = ""


class Unallocated(NamedTuple):
    """Usage that could not be priced: a pod-hour on a node-hour nobody reported, or busy
    time on a pod-hour nobody reported (its node's agent missed the pod)."""

    hour_ns: int
    pod: str
    node: str
    seconds: float
    why: Literal["no_node", "no_pod"]


def allocate(
    nodes: Iterable[NodeHour],
    pods: Iterable[PodHour],
    busy: Iterable[Busy],
    weights: Weights = DEFAULT_WEIGHTS,
) -> tuple[list[Allocation], list[Unallocated]]:
    """Every node-hour's cost, split (see the module docstring); and what could not be.

    Rows with the same key are summed first (a node-hour's seconds and a pod-hour's
    seconds are the largest reported, since agents report the same hour again as it
    goes on; busy seconds add). Allocations come in a stable order: by hour, node, then
    transactions, untraced, idle.
    """
    node_hours = _latest_nodes(nodes)
    pod_hours = _latest_pods(pods)
    busy_by_pod: dict[tuple[int, str], dict[_Label, list[float]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for row in busy:
        if row.seconds > 0:
            label = (row.domain, row.transaction, row.environment)
            busy_by_pod[(row.hour_ns, row.pod)][label].append(row.seconds)

    pods_by_node: dict[tuple[int, str], list[PodHour]] = defaultdict(list)
    unallocated: list[Unallocated] = []
    for pod in pod_hours.values():
        if (pod.hour_ns, pod.node) in node_hours:
            pods_by_node[(pod.hour_ns, pod.node)].append(pod)
        else:
            unallocated.append(Unallocated(pod.hour_ns, pod.pod, pod.node, pod.seconds, "no_node"))
    for (hour_ns, pod_name), spans in busy_by_pod.items():
        if (hour_ns, pod_name) not in pod_hours:
            seconds = math.fsum(s for parts in spans.values() for s in parts)
            unallocated.append(Unallocated(hour_ns, pod_name, "", seconds, "no_pod"))

    result: list[Allocation] = []
    for key in sorted(node_hours):
        node = node_hours[key]
        result.extend(_node_hour(node, pods_by_node.get(key, []), busy_by_pod, weights))
    unallocated.sort()
    return result, unallocated


def _node_hour(
    node: NodeHour,
    pods: list[PodHour],
    busy_by_pod: dict[tuple[int, str], dict[_Label, list[float]]],
    weights: Weights,
) -> list[Allocation]:
    total = node.cost
    capacity = weights.cpu * node.vcpu + weights.memory * node.memory_gb
    raw: list[float] = []
    for pod in sorted(pods, key=lambda p: p.pod):
        if capacity >= _MIN_CAPACITY:
            share = (weights.cpu * pod.cpu + weights.memory * pod.memory_gb) / capacity
            raw.append(node.hourly_usd * share * pod.seconds / HOUR_S)
        else:  # capacity unknown: nothing to split by, all idle
            raw.append(0.0)
    reserved = math.fsum(raw)
    scale = total / reserved if reserved > total > 0 else (0.0 if total <= 0 else 1.0)
    allocations: list[Allocation] = []
    untraced: list[Allocation] = []
    for pod, reserved_cost in zip(sorted(pods, key=lambda p: p.pod), raw, strict=True):
        cost = reserved_cost * scale
        if cost <= 0:
            continue
        served = busy_by_pod.get((node.hour_ns, pod.pod))
        if not served:
            untraced.append(
                Allocation(
                    node.hour_ns,
                    node.node,
                    "untraced",
                    cost,
                    pod=pod.pod,
                    namespace=pod.namespace,
                    workload=pod.workload,
                )
            )
            continue
        seconds = {label: math.fsum(parts) for label, parts in served.items()}
        busy_total = math.fsum(seconds.values())
        for (domain, transaction, environment), part in sorted(seconds.items()):
            allocations.append(
                Allocation(
                    node.hour_ns,
                    node.node,
                    "transaction",
                    cost * part / busy_total,
                    pod=pod.pod,
                    domain=domain,
                    transaction=transaction,
                    environment=environment,
                )
            )
    allocated = math.fsum(a.usd for a in allocations) + math.fsum(a.usd for a in untraced)
    allocations.extend(untraced)
    idle = total - allocated
    if idle > 0:
        allocations.append(Allocation(node.hour_ns, node.node, "idle", idle))
    return allocations


def _latest_nodes(nodes: Iterable[NodeHour]) -> dict[tuple[int, str], NodeHour]:
    found: dict[tuple[int, str], NodeHour] = {}
    for node in nodes:
        key = (node.hour_ns, node.node)
        known = found.get(key)
        if known is None or node.seconds > known.seconds:
            found[key] = node
    return found


def _latest_pods(pods: Iterable[PodHour]) -> dict[tuple[int, str], PodHour]:
    found: dict[tuple[int, str], PodHour] = {}
    for pod in pods:
        key = (pod.hour_ns, pod.pod)
        known = found.get(key)
        if known is None or pod.seconds > known.seconds:
            found[key] = pod
    return found


def hour_slices(start_ns: int, end_ns: int) -> list[tuple[int, float]]:
    """The UTC hours an interval [start, end) touches, with the seconds it spent in
    each: how a segment's busy time, or a pod's or node's running time, is split at
    the hour's edges. Empty for an empty or inverted interval."""
    if end_ns <= start_ns:
        return []
    slices: list[tuple[int, float]] = []
    hour = start_ns // _HOUR_NS * _HOUR_NS
    while hour < end_ns:
        begin, finish = max(start_ns, hour), min(end_ns, hour + _HOUR_NS)
        slices.append((hour, (finish - begin) / 1e9))
        hour += _HOUR_NS
    return slices
