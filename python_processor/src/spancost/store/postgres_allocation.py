"""The allocation (issue 12) in the PostgreSQL totals store: node-hours and pod-hours
reported with their price (`write_usage`), each hour allocated again once its usage or
busy time changed (`allocate_hour`), the allocation read back (`allocated_totals`,
`allocated_domain_spend`, `reconcile`, `by_node_rows`) and node-hours priced again
(`reprice`). What is computed is `spancost.store.allocated`'s (pure); here only the
statements, each function within the caller's transaction.

The hours to allocate are ``allocation_dirty``'s rows. Whatever changes an hour's busy
time (a write, `spancost.store.postgres_write`) or usage marks the hour with
`mark_dirty`, which locks its row until the transaction commits; `allocate_hour` locks
that row before it reads the hour.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
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
from spancost.store.postgres_pool import Cursor
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

# Marks the hours for allocation and locks each one's row until this transaction
# commits, in hour order, the last lock any transaction takes: an existing row is
# locked by ON CONFLICT DO UPDATE, whose WHERE false writes no new version of it. So
# the allocator, which locks the row before it reads the hour, waits for every change
# to the hour in flight, and a change made while it works cannot commit before it:
# that change's mark waits, then (the allocator having deleted the row) inserts it
# again, and the hour is allocated anew.
_MARK_DIRTY: Final = """
INSERT INTO allocation_dirty (hour_ns)
SELECT hour_ns FROM unnest(%s::bigint[]) AS hour (hour_ns) ORDER BY hour_ns
ON CONFLICT (hour_ns) DO UPDATE SET hour_ns = excluded.hour_ns WHERE false
"""

# A node-hour reported again: the longest running time, the latest facts and price.
_ADD_NODE_USAGE: Final = """
INSERT INTO node_usage (hour_ns, node, seconds, region, instance_type, operating_system,
    capacity_type, zone, vcpu, memory_gib, hourly_usd, price_source, price_model,
    price_as_of, unpriced_reason, reported_ns)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (hour_ns, node) DO UPDATE SET
    seconds = greatest(node_usage.seconds, excluded.seconds),
    region = excluded.region, instance_type = excluded.instance_type,
    operating_system = excluded.operating_system, capacity_type = excluded.capacity_type,
    zone = excluded.zone, vcpu = excluded.vcpu, memory_gib = excluded.memory_gib,
    hourly_usd = excluded.hourly_usd, price_source = excluded.price_source,
    price_model = excluded.price_model, price_as_of = excluded.price_as_of,
    unpriced_reason = excluded.unpriced_reason, reported_ns = excluded.reported_ns
"""

_ADD_POD_USAGE: Final = """
INSERT INTO pod_usage (hour_ns, pod, node, seconds, cpu, memory_gib, namespace, workload)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (hour_ns, pod) DO UPDATE SET
    node = excluded.node, seconds = greatest(pod_usage.seconds, excluded.seconds),
    cpu = excluded.cpu, memory_gib = excluded.memory_gib, namespace = excluded.namespace,
    workload = excluded.workload
"""

_INSERT_ALLOCATED: Final = """
INSERT INTO allocated_hourly (hour_ns, kind, domain, transaction_name, environment, namespace,
    workload, usd, busy_seconds, segments, request_usd)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
"""

_INSERT_ALLOCATED_NODE: Final = """
INSERT INTO allocated_nodes (hour_ns, node, bill_usd, transactions_usd, untraced_usd, idle_usd)
VALUES (%s, %s, %s, %s, %s, %s)
"""

_ANY_USAGE: Final = "SELECT 1 FROM node_usage WHERE hour_ns >= %s AND hour_ns < %s LIMIT 1"
_ALLOCATED_SPEND: Final = """
SELECT hour_ns, domain, sum(usd + request_usd) FROM allocated_hourly
WHERE hour_ns >= %s AND hour_ns < %s AND kind IN ('transaction', 'untraced') AND domain <> ''
    AND environment <> ALL(%s::text[])
GROUP BY hour_ns, domain
"""

_ALLOCATED_TOTALS: Final = """
SELECT kind, domain, transaction_name, environment, namespace, workload, sum(usd),
    sum(busy_seconds), sum(segments), sum(request_usd)
FROM allocated_hourly
WHERE hour_ns >= %(start)s AND hour_ns < %(end)s AND environment <> ALL(%(exclude)s::text[])
GROUP BY kind, domain, transaction_name, environment, namespace, workload
ORDER BY 7 DESC, 1, 2, 3, 4, 5, 6
"""

_RECONCILE: Final = """
SELECT u.hour_ns, u.node, u.hourly_usd * u.seconds / 3600.0,
    coalesce(a.transactions_usd, 0), coalesce(a.untraced_usd, 0), coalesce(a.idle_usd, 0),
    u.price_source, u.price_as_of, u.unpriced_reason
FROM node_usage u LEFT JOIN allocated_nodes a ON a.hour_ns = u.hour_ns AND a.node = u.node
WHERE u.hour_ns >= %(start)s AND u.hour_ns < %(end)s
UNION ALL  -- hours whose usage retention deleted: the bill as it was allocated
SELECT a.hour_ns, a.node, a.bill_usd, a.transactions_usd, a.untraced_usd, a.idle_usd,
    NULL, NULL, NULL
FROM allocated_nodes a
WHERE a.hour_ns >= %(start)s AND a.hour_ns < %(end)s
    AND NOT EXISTS (SELECT 1 FROM node_usage u WHERE u.hour_ns = a.hour_ns AND u.node = a.node)
ORDER BY 1, 2
"""

# The allocation per node (`allocation_by_node`): the usage `allocate_hour` reads, for a
# window, and the per-request prices as allocated.
_BY_NODE: Final = (
    "SELECT hour_ns, node, seconds, region, instance_type, operating_system, capacity_type,"
    " zone, vcpu, memory_gib, hourly_usd, price_source, price_model, price_as_of"
    " FROM node_usage WHERE hour_ns >= %(start)s AND hour_ns < %(end)s ORDER BY hour_ns, node",
    "SELECT hour_ns, pod, node, seconds, cpu, memory_gib, namespace, workload FROM pod_usage"
    " WHERE hour_ns >= %(start)s AND hour_ns < %(end)s",
    "SELECT hour_ns, pod, domain, transaction_name, environment, seconds FROM pod_busy"
    " WHERE hour_ns >= %(start)s AND hour_ns < %(end)s",
    "SELECT hour_ns, domain, transaction_name, environment, request_usd FROM allocated_hourly"
    " WHERE hour_ns >= %(start)s AND hour_ns < %(end)s AND kind = 'transaction'"
    " AND request_usd <> 0",
)

# The node-hours of a window, with their prices, locked in the order write_usage locks
# them (Python's: code points, which "C" sorts by).
_NODE_USAGE_FOR_REPRICE: Final = """
SELECT hour_ns, node, seconds, region, instance_type, operating_system, capacity_type, zone,
    vcpu, memory_gib, hourly_usd, price_source, price_as_of
FROM node_usage WHERE hour_ns >= %s AND hour_ns < %s
ORDER BY hour_ns, node COLLATE "C"
FOR UPDATE
"""

_REPRICE_NODE: Final = (
    "UPDATE node_usage SET hourly_usd = %s, price_source = %s, price_model = %s,"
    " price_as_of = %s, unpriced_reason = %s WHERE hour_ns = %s AND node = %s"
)
_RECORD_REPRICING: Final = (
    "INSERT INTO repricings (at_ns, hour_ns, node, old_hourly_usd, old_source, old_as_of,"
    " new_hourly_usd, new_source, new_as_of) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
)


def mark_dirty(cursor: Cursor, hours: list[int]) -> None:
    """Mark `hours` for allocation, locking them until commit (see `_MARK_DIRTY`)."""
    if hours:
        cursor.execute(_MARK_DIRTY, (hours,))


def write_usage(
    cursor: Cursor,
    nodes: Sequence[tuple[NodeUsage, NodePrice]],
    pods: Sequence[PodUsage],
    now: datetime,
) -> None:
    """Record node-hours (with their price) and pod-hours, and mark their hours."""
    now_ns = ns_from_utc(now)
    hours = sorted({node.hour_ns for node, _ in nodes} | {pod.hour_ns for pod in pods})
    # A statement a row, in key order, as SQLite applies them (a report that names a
    # row twice keeps the longer time and the later facts); a node's report is small.
    cursor.executemany(_ADD_NODE_USAGE, [(*node, *price, now_ns) for node, price in sorted(nodes)])
    cursor.executemany(_ADD_POD_USAGE, sorted(pods))
    mark_dirty(cursor, hours)


def dirty_hours(cursor: Cursor) -> list[int]:
    """The hours marked for allocation, in order."""
    cursor.execute("SELECT hour_ns FROM allocation_dirty ORDER BY hour_ns", {})
    return [hour_ns for (hour_ns,) in cursor.fetchall()]


def allocate_hour(cursor: Cursor, hour_ns: int, weights: Weights, config: TotalsConfig) -> bool:
    """Allocate one hour from its usage, replacing what was there (one transaction);
    False when another allocator did it meanwhile."""
    cursor.execute("SELECT hour_ns FROM allocation_dirty WHERE hour_ns = %s FOR UPDATE", (hour_ns,))
    if cursor.fetchone() is None:
        return False
    cursor.execute(
        "SELECT node, seconds, hourly_usd, vcpu, memory_gib FROM node_usage"
        " WHERE hour_ns = %s AND hourly_usd IS NOT NULL ORDER BY node",
        (hour_ns,),
    )
    nodes = cursor.fetchall()
    cursor.execute(
        "SELECT pod, node, seconds, cpu, memory_gib, namespace, workload FROM pod_usage"
        " WHERE hour_ns = %s ORDER BY pod",
        (hour_ns,),
    )
    pods = cursor.fetchall()
    cursor.execute(
        "SELECT pod, domain, transaction_name, environment, seconds, segments, request_usd"
        " FROM pod_busy WHERE hour_ns = %s"
        " ORDER BY pod, domain, transaction_name, environment",
        (hour_ns,),
    )
    busy = cursor.fetchall()
    result = allocated_hour(
        hour_ns, nodes=nodes, pods=pods, busy=busy, weights=weights, config=config
    )
    cursor.execute("DELETE FROM allocated_hourly WHERE hour_ns = %s", (hour_ns,))
    cursor.executemany(_INSERT_ALLOCATED, result.lines)
    cursor.execute("DELETE FROM allocated_nodes WHERE hour_ns = %s", (hour_ns,))
    cursor.executemany(_INSERT_ALLOCATED_NODE, result.nodes)
    cursor.execute("DELETE FROM allocation_dirty WHERE hour_ns = %s", (hour_ns,))
    return True


def allocated_totals(
    cursor: Cursor, since: datetime, until: datetime, exclude_environments: Collection[str]
) -> list[AllocatedRow]:
    start_ns, end_ns = hour_window(since, until)
    parameters = {"start": start_ns, "end": end_ns, "exclude": sorted(exclude_environments)}
    cursor.execute(_ALLOCATED_TOTALS, parameters)
    return allocated_rows(cursor.fetchall())


def allocated_domain_spend(
    cursor: Cursor, since: datetime, until: datetime, exclude_environments: Collection[str]
) -> dict[str, float] | None:
    since_ns, until_ns = ns_from_utc(since), ns_from_utc(until)
    start_ns, end_ns = hour_window(since, until)
    cursor.execute(_ANY_USAGE, (start_ns, end_ns))
    if cursor.fetchone() is None:
        return None
    cursor.execute(_ALLOCATED_SPEND, (start_ns, end_ns, sorted(exclude_environments)))
    return window_spend(cursor.fetchall(), since_ns, until_ns)


def reconcile(cursor: Cursor, since: datetime, until: datetime) -> list[ReconcileRow]:
    start_ns, end_ns = hour_window(since, until)
    cursor.execute(_RECONCILE, {"start": start_ns, "end": end_ns})
    return reconcile_rows(cursor.fetchall())


def by_node_rows(cursor: Cursor, since: datetime, until: datetime) -> list[list[Any]]:
    """What `spancost.store.allocated.by_node` takes, for the hours of a window: the
    node-hours, pod-hours, busy time and per-request prices."""
    start_ns, end_ns = hour_window(since, until)
    # One snapshot for the four reads, so nodes, pods and busy time agree.
    cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
    found: list[list[Any]] = []
    for query in _BY_NODE:
        cursor.execute(query, {"start": start_ns, "end": end_ns})
        found.append(cursor.fetchall())
    return found


def reprice(
    cursor: Cursor,
    since: datetime,
    until: datetime,
    price: Callable[[NodeUsage], NodePrice | None],
    now: datetime,
) -> list[RepricedRow]:
    start_ns, end_ns = hour_window(since, until)
    now_ns = ns_from_utc(now)
    # Locked, so that a report of the same node-hour waits rather than has its facts
    # priced by the facts read here.
    cursor.execute(_NODE_USAGE_FOR_REPRICE, (start_ns, end_ns))
    changes = repricings(cursor.fetchall(), price)
    cursor.executemany(_REPRICE_NODE, [change.update() for change in changes])
    cursor.executemany(_RECORD_REPRICING, [change.record(now_ns) for change in changes])
    mark_dirty(cursor, sorted({change.usage.hour_ns for change in changes}))
    return [change.reported() for change in changes]
