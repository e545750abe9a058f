"""The allocation (issue 12) in the SQLite totals store: node-hours and pod-hours
reported with their price (`write_usage`), each hour allocated again once its usage or
busy time changed (`allocate_hour`), the allocation read back (`allocated_totals`,
`allocated_domain_spend`, `reconcile`, `by_node_rows`) and node-hours priced again
(`reprice`). What is computed is `spancost.store.allocated`'s (pure); here only the
statements, each function within the caller's transaction.

The hours to allocate are ``allocation_dirty``'s rows, marked (`mark_dirty`) by
whatever changes an hour's busy time (a write, `spancost.store.sqlite_write`) or
usage; SQLite's write lock keeps an allocation and a change to its hour apart.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Collection, Iterable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from spancost.allocation.core import Weights
from spancost.allocation.usage import NodeUsage, PodUsage
from spancost.store.allocated import (
    allocated_hour,
    allocated_rows,
    reconcile_rows,
    repricings,
    window_spend,
)
from spancost.store.base import AllocatedRow, ReconcileRow, RepricedRow
from spancost.store.common import hour_window
from spancost.totals.aggregate import ns_from_utc
from spancost.totals.naming import TotalsConfig

if TYPE_CHECKING:
    from spancost.allocation.pricing import NodePrice

__all__ = [
    "allocate_hour",
    "allocated_domain_spend",
    "allocated_totals",
    "by_node_rows",
    "dirty_hours",
    "mark_dirty",
    "reconcile",
    "reprice",
    "write_usage",
]

_MARK_DIRTY: Final = "INSERT INTO allocation_dirty (hour_ns) VALUES (?) ON CONFLICT DO NOTHING"

# A node-hour reported again: the longest running time, the latest facts and price.
_ADD_NODE_USAGE: Final = """
INSERT INTO node_usage (hour_ns, node, seconds, region, instance_type, operating_system,
    capacity_type, zone, vcpu, memory_gib, hourly_usd, price_source, price_model,
    price_as_of, unpriced_reason, reported_ns)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour_ns, node) DO UPDATE SET
    seconds = max(seconds, excluded.seconds),
    region = excluded.region, instance_type = excluded.instance_type,
    operating_system = excluded.operating_system, capacity_type = excluded.capacity_type,
    zone = excluded.zone, vcpu = excluded.vcpu, memory_gib = excluded.memory_gib,
    hourly_usd = excluded.hourly_usd, price_source = excluded.price_source,
    price_model = excluded.price_model, price_as_of = excluded.price_as_of,
    unpriced_reason = excluded.unpriced_reason, reported_ns = excluded.reported_ns
"""
_ADD_POD_USAGE: Final = """
INSERT INTO pod_usage (hour_ns, pod, node, seconds, cpu, memory_gib, namespace, workload)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour_ns, pod) DO UPDATE SET
    node = excluded.node, seconds = max(seconds, excluded.seconds), cpu = excluded.cpu,
    memory_gib = excluded.memory_gib, namespace = excluded.namespace,
    workload = excluded.workload
"""

_INSERT_ALLOCATED: Final = """
INSERT INTO allocated_hourly (hour_ns, kind, domain, transaction_name, environment, namespace,
    workload, usd, busy_seconds, segments, request_usd) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
_INSERT_ALLOCATED_NODE: Final = """
INSERT INTO allocated_nodes (hour_ns, node, bill_usd, transactions_usd, untraced_usd, idle_usd)
VALUES (?, ?, ?, ?, ?, ?)
"""

_ANY_USAGE: Final = "SELECT 1 FROM node_usage WHERE hour_ns >= ? AND hour_ns < ? LIMIT 1"
_ALLOCATED_SPEND: Final = """
SELECT hour_ns, domain, sum(usd + request_usd) FROM allocated_hourly
WHERE hour_ns >= ? AND hour_ns < ? AND kind IN ('transaction', 'untraced') AND domain <> ''
    AND environment NOT IN (SELECT value FROM json_each(?))
GROUP BY hour_ns, domain
"""

# The allocation per node (`allocation_by_node`): the usage `allocate_hour` reads, for a
# window, and the per-request prices as allocated.
_BY_NODE: Final = (
    "SELECT hour_ns, node, seconds, region, instance_type, operating_system, capacity_type,"
    " zone, vcpu, memory_gib, hourly_usd, price_source, price_model, price_as_of"
    " FROM node_usage WHERE hour_ns >= ? AND hour_ns < ? ORDER BY hour_ns, node",
    "SELECT hour_ns, pod, node, seconds, cpu, memory_gib, namespace, workload FROM pod_usage"
    " WHERE hour_ns >= ? AND hour_ns < ?",
    "SELECT hour_ns, pod, domain, transaction_name, environment, seconds FROM pod_busy"
    " WHERE hour_ns >= ? AND hour_ns < ?",
    "SELECT hour_ns, domain, transaction_name, environment, request_usd FROM allocated_hourly"
    " WHERE hour_ns >= ? AND hour_ns < ? AND kind = 'transaction' AND request_usd <> 0",
)

_NODE_USAGE_COLUMNS: Final = (
    "hour_ns, node, seconds, region, instance_type, operating_system, capacity_type, zone,"
    " vcpu, memory_gib"
)
_REPRICE_NODE: Final = (
    "UPDATE node_usage SET hourly_usd = ?, price_source = ?, price_model = ?,"
    " price_as_of = ?, unpriced_reason = ? WHERE hour_ns = ? AND node = ?"
)
_RECORD_REPRICING: Final = (
    "INSERT INTO repricings (at_ns, hour_ns, node, old_hourly_usd, old_source, old_as_of,"
    " new_hourly_usd, new_source, new_as_of) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def mark_dirty(cursor: sqlite3.Cursor, hours: Iterable[int]) -> None:
    """Mark `hours` for allocation, in order."""
    for hour_ns in sorted(hours):
        cursor.execute(_MARK_DIRTY, (hour_ns,))


def write_usage(
    cursor: sqlite3.Cursor,
    nodes: Sequence[tuple[NodeUsage, NodePrice]],
    pods: Sequence[PodUsage],
    now: datetime,
) -> None:
    """Record node-hours (with their price) and pod-hours, and mark their hours."""
    now_ns = ns_from_utc(now)
    for node, price in sorted(nodes):
        cursor.execute(_ADD_NODE_USAGE, (*node, *price, now_ns))
    for pod in sorted(pods):
        cursor.execute(_ADD_POD_USAGE, pod)
    mark_dirty(cursor, {node.hour_ns for node, _ in nodes} | {pod.hour_ns for pod in pods})


def dirty_hours(cursor: sqlite3.Cursor) -> list[int]:
    """The hours marked for allocation, in order."""
    rows = cursor.execute("SELECT hour_ns FROM allocation_dirty ORDER BY hour_ns", ())
    return [row[0] for row in rows.fetchall()]


def allocate_hour(
    cursor: sqlite3.Cursor, hour_ns: int, weights: Weights, config: TotalsConfig
) -> None:
    """Allocate one hour from its usage, replacing what was there (one transaction)."""
    nodes = cursor.execute(
        "SELECT node, seconds, hourly_usd, vcpu, memory_gib FROM node_usage"
        " WHERE hour_ns = ? AND hourly_usd IS NOT NULL",
        (hour_ns,),
    ).fetchall()
    pods = cursor.execute(
        "SELECT pod, node, seconds, cpu, memory_gib, namespace, workload FROM pod_usage"
        " WHERE hour_ns = ?",
        (hour_ns,),
    ).fetchall()
    busy = cursor.execute(
        "SELECT pod, domain, transaction_name, environment, seconds, segments, request_usd"
        " FROM pod_busy WHERE hour_ns = ?",
        (hour_ns,),
    ).fetchall()
    result = allocated_hour(
        hour_ns, nodes=nodes, pods=pods, busy=busy, weights=weights, config=config
    )
    cursor.execute("DELETE FROM allocated_hourly WHERE hour_ns = ?", (hour_ns,))
    cursor.executemany(_INSERT_ALLOCATED, result.lines)
    cursor.execute("DELETE FROM allocated_nodes WHERE hour_ns = ?", (hour_ns,))
    cursor.executemany(_INSERT_ALLOCATED_NODE, result.nodes)
    cursor.execute("DELETE FROM allocation_dirty WHERE hour_ns = ?", (hour_ns,))


def allocated_totals(
    cursor: sqlite3.Cursor,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
) -> list[AllocatedRow]:
    start_ns, end_ns = hour_window(since, until)
    rows = cursor.execute(
        "SELECT kind, domain, transaction_name, environment, namespace, workload, sum(usd),"
        " sum(busy_seconds), sum(segments), sum(request_usd) FROM allocated_hourly"
        " WHERE hour_ns >= ? AND hour_ns < ?"
        " AND environment NOT IN (SELECT value FROM json_each(?))"
        " GROUP BY kind, domain, transaction_name, environment, namespace, workload"
        " ORDER BY 7 DESC, 1, 2, 3, 4, 5, 6",
        (start_ns, end_ns, json.dumps(sorted(exclude_environments))),
    ).fetchall()
    return allocated_rows(rows)


def allocated_domain_spend(
    cursor: sqlite3.Cursor,
    since: datetime,
    until: datetime,
    exclude_environments: Collection[str],
) -> dict[str, float] | None:
    since_ns, until_ns = ns_from_utc(since), ns_from_utc(until)
    start_ns, end_ns = hour_window(since, until)
    if not cursor.execute(_ANY_USAGE, (start_ns, end_ns)).fetchone():
        return None
    rows = cursor.execute(
        _ALLOCATED_SPEND, (start_ns, end_ns, json.dumps(sorted(exclude_environments)))
    ).fetchall()
    return window_spend(rows, since_ns, until_ns)


def reconcile(cursor: sqlite3.Cursor, since: datetime, until: datetime) -> list[ReconcileRow]:
    start_ns, end_ns = hour_window(since, until)
    rows = cursor.execute(
        "SELECT u.hour_ns, u.node, u.hourly_usd * u.seconds / 3600.0,"
        " coalesce(a.transactions_usd, 0), coalesce(a.untraced_usd, 0),"
        " coalesce(a.idle_usd, 0), u.price_source, u.price_as_of, u.unpriced_reason"
        " FROM node_usage u LEFT JOIN allocated_nodes a"
        " ON a.hour_ns = u.hour_ns AND a.node = u.node"
        " WHERE u.hour_ns >= ? AND u.hour_ns < ?"
        # Hours whose usage retention deleted: the bill as it was allocated.
        " UNION ALL SELECT a.hour_ns, a.node, a.bill_usd, a.transactions_usd,"
        " a.untraced_usd, a.idle_usd, NULL, NULL, NULL FROM allocated_nodes a"
        " WHERE a.hour_ns >= ? AND a.hour_ns < ? AND NOT EXISTS (SELECT 1 FROM node_usage u"
        " WHERE u.hour_ns = a.hour_ns AND u.node = a.node) ORDER BY 1, 2",
        (start_ns, end_ns, start_ns, end_ns),
    ).fetchall()
    return reconcile_rows(rows)


def by_node_rows(cursor: sqlite3.Cursor, since: datetime, until: datetime) -> list[list[Any]]:
    """What `spancost.store.allocated.by_node` takes, for the hours of a window: the
    node-hours, pod-hours, busy time and per-request prices."""
    window = hour_window(since, until)
    return [cursor.execute(query, window).fetchall() for query in _BY_NODE]


def reprice(
    cursor: sqlite3.Cursor,
    since: datetime,
    until: datetime,
    price: Callable[[NodeUsage], NodePrice | None],
    now: datetime,
) -> list[RepricedRow]:
    start_ns, end_ns = hour_window(since, until)
    now_ns = ns_from_utc(now)
    rows = cursor.execute(
        f"SELECT {_NODE_USAGE_COLUMNS}, hourly_usd, price_source, price_as_of"  # noqa: S608 - constant columns
        " FROM node_usage WHERE hour_ns >= ? AND hour_ns < ? ORDER BY hour_ns, node",
        (start_ns, end_ns),
    ).fetchall()
    changes = repricings(rows, price)
    cursor.executemany(_REPRICE_NODE, [change.update() for change in changes])
    cursor.executemany(_RECORD_REPRICING, [change.record(now_ns) for change in changes])
    mark_dirty(cursor, {change.usage.hour_ns for change in changes})
    return [change.reported() for change in changes]
