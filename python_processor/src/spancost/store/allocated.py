"""One hour's allocation as the rows a store keeps (pure): what both stores write into
``allocated_hourly`` (the lines the report and the guard read) and ``allocated_nodes``
(the reconcile: each node's bill next to its allocation); and the same lines per node
(`by_node`, the FOCUS export's), from the rows both stores read."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, NamedTuple

from spancost.allocation.core import Allocation, Busy, NodeHour, PodHour, Weights, allocate
from spancost.allocation.pricing import NodePrice
from spancost.allocation.usage import NodeUsage
from spancost.store.base import (
    AllocatedRow,
    NodeAllocation,
    NodeHourRow,
    NodeShareRow,
    ReconcileRow,
    RepricedRow,
    RequestPricedRow,
)
from spancost.store.busy import NO_POD
from spancost.totals.aggregate import utc_from_ns
from spancost.totals.naming import TotalsConfig, owner_domain

__all__ = [
    "NAMESPACE_OWNER",
    "AllocatedHour",
    "Repricing",
    "allocated_hour",
    "allocated_rows",
    "by_node",
    "reconcile_rows",
    "repricings",
    "window_spend",
]

NAMESPACE_OWNER: Final = "k8s.namespace.name"
_HOUR_NS: Final = 3600 * 10**9
"""With ``domains.owner`` on this attribute, an untraced workload's namespace says whose
domain it is."""

Line = tuple[int, str, str, str, str, str, str, float, float, float, float]
"""(hour_ns, kind, domain, transaction, environment, namespace, workload, usd,
busy_seconds, segments, request_usd): an ``allocated_hourly`` row."""
NodeLine = tuple[int, str, float, float, float, float]
"""(hour_ns, node, bill_usd, transactions_usd, untraced_usd, idle_usd)."""


class AllocatedHour(NamedTuple):
    lines: list[Line]
    nodes: list[NodeLine]


def allocated_hour(
    hour_ns: int,
    *,
    nodes: Sequence[Sequence[Any]],
    pods: Sequence[Sequence[Any]],
    busy: Sequence[Sequence[Any]],
    weights: Weights,
    config: TotalsConfig,
) -> AllocatedHour:
    """Allocate one hour from the rows a store read of it, and sum it into rows: `nodes`
    as (node, seconds, hourly_usd, vcpu, memory_gib) from ``node_usage`` (the priced
    ones), `pods` as (pod, node, seconds, cpu, memory_gib, namespace, workload) from
    ``pod_usage``, `busy` as (pod, domain, transaction, environment, seconds, segments,
    request_usd) from ``pod_busy``. A transaction's line holds its share of the nodes
    (``usd``), what its spans priced per request cost (``request_usd``: Lambda, Fargate,
    LLM tokens, rules), and its busy seconds and segments on the pods that were
    allocated and under no pod (a request's cost is the line's cost over its segments)."""
    busy_hours = [
        Busy(pod, hour_ns, transaction, domain, seconds, environment)
        for pod, domain, transaction, environment, seconds, _, _ in busy
    ]
    node_hours = [
        NodeHour(node, hour_ns, seconds, hourly, vcpu, memory)
        for node, seconds, hourly, vcpu, memory in nodes
    ]
    pod_hours = [PodHour(pod, node, hour_ns, *rest) for pod, node, *rest in pods]
    allocations, _ = allocate(node_hours, pod_hours, busy_hours, weights)
    allocated_pods = {a.pod for a in allocations if a.kind == "transaction"}
    allocated_pods.add(NO_POD)
    usd: dict[tuple[str, str, str, str, str, str], list[float]] = defaultdict(list)
    counts: dict[tuple[str, str, str], tuple[list[float], list[float], list[float]]] = {}
    for pod, domain, transaction, environment, busy_s, counted, request_usd in busy:
        label = (domain, transaction, environment)
        seconds, segments, requests = counts.setdefault(label, ([], [], []))
        requests.append(request_usd)
        if pod in allocated_pods:
            seconds.append(busy_s)
            segments.append(counted)
        if request_usd or pod == NO_POD:
            usd.setdefault(("transaction", *label, "", ""), [])
    per_node: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for a in allocations:
        per_node[a.node][a.kind].append(a.usd)
        usd[_line_key(a, config)].append(a.usd)
    lines: list[Line] = []
    for key in sorted(usd):
        kind, domain, transaction, environment, namespace, workload = key
        seconds, segments, requests = counts.get((domain, transaction, environment), ([], [], []))
        transactional = kind == "transaction"
        lines.append(
            (
                hour_ns,
                kind,
                domain,
                transaction,
                environment,
                namespace,
                workload,
                math.fsum(usd[key]),
                math.fsum(seconds) if transactional else 0.0,
                math.fsum(segments) if transactional else 0.0,
                math.fsum(requests) if transactional else 0.0,
            )
        )
    node_lines: list[NodeLine] = [
        (
            hour_ns,
            node.node,
            node.cost,
            math.fsum(per_node[node.node]["transaction"]),
            math.fsum(per_node[node.node]["untraced"]),
            math.fsum(per_node[node.node]["idle"]),
        )
        for node in sorted({n.node: n for n in node_hours}.values(), key=lambda n: n.node)
    ]
    return AllocatedHour(lines, node_lines)


def allocated_rows(rows: Iterable[Sequence[Any]]) -> list[AllocatedRow]:
    """`AllocatedRow`s of ``allocated_hourly`` summed as both stores read it: (kind,
    domain, transaction_name, environment, namespace, workload, usd, busy_seconds,
    segments, request_usd)."""
    return [
        AllocatedRow(
            kind, domain, transaction, environment, namespace, workload,
            float(usd), float(busy_seconds), float(segments), float(request_usd),
        )
        for kind, domain, transaction, environment, namespace, workload, usd, busy_seconds,
        segments, request_usd in rows
    ]  # fmt: skip


def reconcile_rows(rows: Iterable[Sequence[Any]]) -> list[ReconcileRow]:
    """`ReconcileRow`s of the rows both stores read: hour_ns, then its fields."""
    return [ReconcileRow(utc_from_ns(row[0]), *row[1:]) for row in rows]


def _line_key(a: Allocation, config: TotalsConfig) -> tuple[str, str, str, str, str, str]:
    """(kind, domain, transaction, environment, namespace, workload) of an allocation's line."""
    if a.kind == "transaction":
        return ("transaction", a.domain, a.transaction, a.environment, "", "")
    if a.kind == "untraced":
        namespace_domains = config.owner_attribute == NAMESPACE_OWNER
        domain = owner_domain(config, a.namespace) if namespace_domains else ""
        return ("untraced", domain, "", "", a.namespace, a.workload)
    return ("idle", "", "", "", "", "")


def by_node(
    nodes: Sequence[Sequence[Any]],
    pods: Sequence[Sequence[Any]],
    busy: Sequence[Sequence[Any]],
    per_request: Sequence[Sequence[Any]],
    *,
    weights: Weights,
    config: TotalsConfig,
) -> NodeAllocation:
    """A window's allocation per node and hour, from the rows a store read: `nodes` as
    (hour_ns, node, seconds, region, instance_type, operating_system, capacity_type,
    zone, vcpu, memory_gib, hourly_usd, price_source, price_model, price_as_of) from
    ``node_usage``; `pods` as (hour_ns, pod, node, seconds, cpu, memory_gib, namespace,
    workload) from ``pod_usage``; `busy` as (hour_ns, pod, domain, transaction,
    environment, seconds) from ``pod_busy``; `per_request` as (hour_ns, domain,
    transaction, environment, request_usd) from ``allocated_hourly``. The split is
    `allocated_hour`'s, its lines kept apart by node."""
    node_rows = [NodeHourRow(utc_from_ns(row[0]), *row[1:]) for row in nodes]
    allocations, _ = allocate(
        [
            NodeHour(n.node, row[0], n.seconds, n.hourly_usd, n.vcpu, n.memory_gib)
            for row, n in zip(nodes, node_rows, strict=True)
            if n.hourly_usd is not None
        ],
        [PodHour(pod, node, hour_ns, *rest) for hour_ns, pod, node, *rest in pods],
        [
            Busy(pod, hour_ns, transaction, domain, seconds, environment)
            for hour_ns, pod, domain, transaction, environment, seconds in busy
        ],
        weights,
    )
    shares: dict[tuple[int, str, str, str, str, str, str, str], list[float]] = defaultdict(list)
    for a in allocations:
        shares[(a.hour_ns, a.node, *_line_key(a, config))].append(a.usd)
    return NodeAllocation(
        nodes=node_rows,
        shares=[
            NodeShareRow(utc_from_ns(key[0]), *key[1:], usd=math.fsum(parts))
            for key, parts in sorted(shares.items())
        ],
        per_request=sorted(
            (
                RequestPricedRow(utc_from_ns(hour_ns), domain, transaction, environment, usd)
                for hour_ns, domain, transaction, environment, usd in per_request
            ),
            key=lambda row: (row.hour, row.domain, row.transaction, row.environment),
        ),
    )


def window_spend(
    rows: Iterable[tuple[int, str, float]], since_ns: int, until_ns: int
) -> dict[str, float]:
    """Spend by domain over [`since_ns`, `until_ns`] from allocated hours (hour_ns,
    domain, usd). The hour `since_ns` falls in counts for its part after it (the
    allocation knows no finer time than the hour); the others whole: an hour's
    allocation only holds the usage reported so far, so the current hour is never
    prorated again (for a window that ends in the past, its last hour is then counted
    whole)."""
    spend: dict[str, list[float]] = defaultdict(list)
    for hour_ns, domain, usd in rows:
        if hour_ns >= until_ns or hour_ns + _HOUR_NS <= since_ns:
            continue
        share = min(1.0, (hour_ns + _HOUR_NS - since_ns) / _HOUR_NS)
        spend[domain].append(usd * share)
    return {domain: math.fsum(parts) for domain, parts in spend.items()}


class Repricing(NamedTuple):
    """A node-hour whose price changes: its usage, the price it had, the one it gets."""

    usage: NodeUsage
    old_usd: float | None
    old_source: str | None
    old_as_of: str | None
    new: NodePrice

    def update(self) -> tuple[object, ...]:
        """``node_usage`` SET hourly_usd, price_source, price_model, price_as_of,
        unpriced_reason, then WHERE hour_ns, node."""
        return (*self.new, self.usage.hour_ns, self.usage.node)

    def record(self, now_ns: int) -> tuple[object, ...]:
        """A ``repricings`` row: at_ns, hour_ns, node, the old price, the new one."""
        return (now_ns, self.usage.hour_ns, self.usage.node, self.old_usd, self.old_source,
                self.old_as_of, self.new.hourly_usd, self.new.source, self.new.as_of)  # fmt: skip

    def reported(self) -> RepricedRow:
        return RepricedRow(
            utc_from_ns(self.usage.hour_ns), self.usage.node, self.old_usd, self.old_source,
            self.new.hourly_usd, self.new.source,
        )  # fmt: skip


def repricings(
    rows: Iterable[Sequence[object]], price: Callable[[NodeUsage], NodePrice | None]
) -> list[Repricing]:
    """The node-hours among `rows` (the usage's ten columns, then hourly_usd,
    price_source, price_as_of, as both stores read them) whose price `price` changes;
    one without a new price, or with the same one, keeps its own."""
    changed: list[Repricing] = []
    for row in rows:
        usage = NodeUsage(*row[:10])  # type: ignore[arg-type]
        old_usd, old_source, old_as_of = row[10:13]
        new = price(usage)
        if new is None or (new.hourly_usd, new.source, new.as_of) == (
            old_usd,
            old_source,
            old_as_of,
        ):
            continue
        changed.append(Repricing(usage, old_usd, old_source, old_as_of, new))  # type: ignore[arg-type]
    return changed
