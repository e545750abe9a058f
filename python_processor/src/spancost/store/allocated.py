"""One hour's allocation as the rows a store keeps (pure): what both stores write into
``allocated_hourly`` (the lines the report and the guard read) and ``allocated_nodes``
(the reconcile: each node's bill next to its allocation)."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Final, NamedTuple

from spancost.allocation.core import Busy, NodeHour, PodHour, Weights, allocate
from spancost.totals.naming import TotalsConfig, owner_domain

__all__ = ["NAMESPACE_OWNER", "AllocatedHour", "allocated_hour"]

NAMESPACE_OWNER: Final = "k8s.namespace.name"
"""With ``domains.owner`` on this attribute, an untraced workload's namespace says whose
domain it is."""

Line = tuple[int, str, str, str, str, str, str, float, float, float]
"""(hour_ns, kind, domain, transaction, environment, namespace, workload, usd,
busy_seconds, segments): an ``allocated_hourly`` row."""
NodeLine = tuple[int, str, float, float, float, float]
"""(hour_ns, node, bill_usd, transactions_usd, untraced_usd, idle_usd)."""


class AllocatedHour(NamedTuple):
    lines: list[Line]
    nodes: list[NodeLine]


def allocated_hour(
    hour_ns: int,
    *,
    nodes: Sequence[NodeHour],
    pods: Sequence[PodHour],
    busy: Sequence[Busy],
    busy_counts: Sequence[tuple[str, str, str, float, float]],
    weights: Weights,
    config: TotalsConfig,
) -> AllocatedHour:
    """Allocate one hour and sum it into rows. `busy_counts` are the hour's ``pod_busy``
    rows as (domain, transaction, environment, seconds, segments), in the order of
    `busy`: their seconds and segments are summed per transaction line over the pods
    that were allocated (a request's cost is its line's cost over its segments)."""
    allocations, _ = allocate(nodes, pods, busy, weights)
    allocated_pods = {a.pod for a in allocations if a.kind == "transaction"}
    usd: dict[tuple[str, str, str, str, str, str], list[float]] = defaultdict(list)
    seconds: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    segments: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    for row, (domain, transaction, environment, busy_s, counted) in zip(
        busy, busy_counts, strict=True
    ):
        if row.pod in allocated_pods:
            seconds[(domain, transaction, environment)].append(busy_s)
            segments[(domain, transaction, environment)].append(counted)
    namespace_domains = config.owner_attribute == NAMESPACE_OWNER
    per_node: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for a in allocations:
        per_node[a.node][a.kind].append(a.usd)
        if a.kind == "transaction":
            key = ("transaction", a.domain, a.transaction, a.environment, "", "")
        elif a.kind == "untraced":
            domain = owner_domain(config, a.namespace) if namespace_domains else ""
            key = ("untraced", domain, "", "", a.namespace, a.workload)
        else:
            key = ("idle", "", "", "", "", "")
        usd[key].append(a.usd)
    lines: list[Line] = []
    for key in sorted(usd):
        kind, domain, transaction, environment, namespace, workload = key
        label = (domain, transaction, environment)
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
                math.fsum(seconds[label]) if kind == "transaction" else 0.0,
                math.fsum(segments[label]) if kind == "transaction" else 0.0,
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
        for node in sorted({n.node: n for n in nodes}.values(), key=lambda n: n.node)
    ]
    return AllocatedHour(lines, node_lines)
