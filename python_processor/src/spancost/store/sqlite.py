"""The embedded trace-totals store: one SQLite file, stdlib ``sqlite3``, WAL.

Times are INTEGER nanoseconds since the Unix epoch, UTC (``*_ns`` columns), as in
`SpanContribution`. Every write runs in one ``BEGIN IMMEDIATE`` transaction, which
takes SQLite's write lock up front: writers (threads with their own store, or other
processes) are serialized by SQLite and wait up to ``busy_timeout`` for each other.

The rollup ``domain_hourly`` holds every trace once, under its CURRENT
(domain, environment) and the hour it was first seen; when a late root (or
`attribute_orphans`) changes a trace's domain or environment, the trace's whole
totals move from the old key to the new one in the same transaction, so the rollup
always sums the trace rows. Traces still waiting for their root are under domain
``''``.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from spancost.allocation.core import DEFAULT_WEIGHTS, Weights
from spancost.allocation.usage import NodeUsage, PodUsage
from spancost.store import sqlite_allocation
from spancost.store.allocated import (
    by_node,
)
from spancost.store.base import (
    AllocatedRow,
    HourRow,
    NodeAllocation,
    ReconcileRow,
    RepricedRow,
    SpendRow,
    WriteResult,
)
from spancost.store.busy import BusyChanges, Labels, StoredBusy, decode, encode, stored_busy
from spancost.store.common import (
    ALLOCATION_USAGE_TABLES,
    PENDING_DOMAIN,
    Charge,
    Placement,
    RollupChanges,
    charges,
    hour_window,
    labels,
    merge_assignments,
    net_spend,
    placement,
    span_facts,
    spend_window,
    trace_facts,
    unpriced_counts,
)
from spancost.store.migrations import runner
from spancost.store.migrations.sqlite import LEDGER, MIGRATIONS
from spancost.store.sqlite_connection import Connection
from spancost.totals.aggregate import (
    Quarantined,
    SpanContribution,
    TraceDelta,
    fold,
    ns_from_duration,
    ns_from_utc,
    utc_from_ns,
)
from spancost.totals.naming import (
    TotalsConfig,
    TraceState,
    resolve_transaction,
    trace_domain,
)

if TYPE_CHECKING:
    from spancost.allocation.pricing import NodePrice

__all__ = ["MIGRATIONS", "PENDING_DOMAIN", "Deleted", "SQLiteStore"]

logger = logging.getLogger(__name__)

_INSERT_CONTRIBUTION: Final = """
INSERT INTO contributions (
    trace_id, span_id, ingested_ns, quarantine_reason, cost_usd, unpriced_reason, is_root,
    start_ns, end_ns, name, service, environment, account, transaction_attribute
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trace_id, span_id) DO NOTHING
"""

# Sums add; start least, end greatest; earliest and root the first by (start, span id).
# Every right-hand side of an UPDATE sees the row as it was before the update.
_ADD_TO_TRACE: Final = """
INSERT INTO traces (
    trace_id, cost_usd, span_count, priced_count, unpriced_count, start_ns, end_ns,
    first_seen_ns, last_update_ns,
    earliest_span_id, earliest_start_ns, earliest_service, earliest_environment,
    root_span_id, root_start_ns, root_transaction, root_service, root_environment,
    earliest_account, root_account, root_owner, contested, busy
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trace_id) DO UPDATE SET
    cost_usd = cost_usd + excluded.cost_usd,
    span_count = span_count + excluded.span_count,
    priced_count = priced_count + excluded.priced_count,
    unpriced_count = unpriced_count + excluded.unpriced_count,
    start_ns = min(start_ns, excluded.start_ns),
    end_ns = max(end_ns, excluded.end_ns),
    last_update_ns = excluded.last_update_ns,
    busy = CASE WHEN excluded.busy IS NULL THEN busy ELSE coalesce(busy, '') || excluded.busy END,
    {merge}
RETURNING cost_usd, span_count, first_seen_ns, earliest_service, earliest_environment,
    root_span_id, root_transaction, root_service, root_environment, transaction_name,
    root_owner, contested
"""
_ADD_TO_TRACE_SQL: Final = _ADD_TO_TRACE.format(merge=merge_assignments(existing=""))

_ADD_TO_POD_BUSY: Final = """
INSERT INTO pod_busy (hour_ns, pod, domain, transaction_name, environment, seconds, segments,
    request_usd)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour_ns, pod, domain, transaction_name, environment) DO UPDATE SET
    seconds = seconds + excluded.seconds,
    segments = segments + excluded.segments,
    request_usd = request_usd + excluded.request_usd
"""
_BUSY_RESIDUE: Final = 1e-9
"""What is left of a moved row's seconds or segments after rounding: the row is gone."""

_ADD_TO_ROLLUP: Final = """
INSERT INTO domain_hourly (domain, environment, hour_ns, cost_usd, traces, spans)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (hour_ns, domain, environment) DO UPDATE SET
    cost_usd = cost_usd + excluded.cost_usd,
    traces = traces + excluded.traces,
    spans = spans + excluded.spans
"""

# Retention takes whole traces: a trace belongs to the time its first span (accepted or
# quarantined) was stored, as with PostgreSQL's ``keyed_at``.
_DELETE_TRACES: Final = """
DELETE FROM traces WHERE first_seen_ns < ? OR trace_id IN (
    SELECT trace_id FROM contributions GROUP BY trace_id HAVING min(ingested_ns) < ?
)
"""
_DELETE_CHARGES: Final = """
DELETE FROM trace_charges WHERE first_seen_ns < ? OR trace_id IN (
    SELECT trace_id FROM contributions GROUP BY trace_id HAVING min(ingested_ns) < ?
)
"""
_CHARGE_EXISTS: Final = (
    "SELECT 1 FROM trace_charges WHERE trace_id = ? AND domain = ? AND environment = ?"
)
_ADD_CHARGE: Final = """
INSERT INTO trace_charges (
    trace_id, domain, environment, first_seen_ns, cost_usd, spans, unpriced_spans
) VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (trace_id, domain, environment) DO UPDATE SET
    cost_usd = cost_usd + excluded.cost_usd,
    spans = spans + excluded.spans,
    unpriced_spans = unpriced_spans + excluded.unpriced_spans
"""
_DELETE_CONTRIBUTIONS: Final = """
DELETE FROM contributions WHERE trace_id IN (
    SELECT trace_id FROM contributions GROUP BY trace_id HAVING min(ingested_ns) < ?
)
"""


@dataclass(frozen=True, slots=True)
class Deleted:
    """What `SQLiteStore.delete_before` removed."""

    traces: int
    contributions: int


class SQLiteStore:
    """`TotalsStore` over one SQLite file (see the module docstring).

    One connection per store, guarded by a lock: a store may be shared by threads,
    and several stores (threads or processes) may open the same file.
    """

    def __init__(
        self,
        path: str | Path,
        config: TotalsConfig | None = None,
        *,
        busy_timeout: timedelta = timedelta(seconds=30),
    ) -> None:
        self._config = config if config is not None else TotalsConfig()
        self._connection = Connection(path, busy_timeout=busy_timeout)

    def close(self) -> None:
        self._connection.close()

    @property
    def config(self) -> TotalsConfig:
        return self._config

    def use_config(self, config: TotalsConfig) -> None:
        self._config = config

    def save_setting(self, name: str, value: str, now: datetime) -> str | None:
        def save(cursor: sqlite3.Cursor) -> str | None:
            row = cursor.execute(
                "SELECT value FROM store_settings WHERE name = ?", (name,)
            ).fetchone()
            cursor.execute(
                "INSERT INTO store_settings (name, value, updated_ns) VALUES (?, ?, ?)"
                " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                " updated_ns = excluded.updated_ns",
                (name, value, ns_from_utc(now)),
            )
            return None if row is None else str(row[0])

        return self._connection.transaction("save_setting", save)

    def setting(self, name: str) -> str | None:
        def read(cursor: sqlite3.Cursor) -> str | None:
            exists = cursor.execute(
                "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'store_settings'"
            ).fetchone()
            if exists is None:  # not migrated that far: nothing saved
                return None
            row = cursor.execute(
                "SELECT value FROM store_settings WHERE name = ?", (name,)
            ).fetchone()
            return None if row is None else str(row[0])

        return self._connection.read("setting", read)

    def migrate(self) -> None:
        self._connection.transaction(
            "migrate", runner.migrate, MIGRATIONS, LEDGER, self._connection.path
        )

    def write(
        self,
        contributions: Sequence[SpanContribution],
        quarantined: Sequence[Quarantined],
        now: datetime,
    ) -> WriteResult:
        now_ns = ns_from_utc(now)
        return self._connection.transaction(
            "write", lambda cursor: self._write(cursor, contributions, quarantined, now_ns)
        )

    def attribute_orphans(self, now: datetime, grace: timedelta, unattributed_name: str) -> int:
        return self._connection.transaction(
            "attribute_orphans",
            lambda cursor: self._attribute_orphans(cursor, now, grace, unattributed_name),
        )

    def domain_spend(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, float]:
        window = spend_window(since, until)

        def read(cursor: sqlite3.Cursor) -> list[tuple[str, str, float, int]]:
            rows: list[tuple[str, str, float, int]] = cursor.execute(
                "SELECT domain, environment, sum(cost_usd), sum(traces) FROM domain_hourly"
                " WHERE hour_ns >= ? AND hour_ns < ? AND domain != ? GROUP BY domain, environment",
                (window.hours_start, window.hours_end, PENDING_DOMAIN),
            ).fetchall()
            edge = (
                "SELECT domain, environment, sum(cost_usd), count(*) FROM trace_charges"
                " WHERE first_seen_ns >= ? AND first_seen_ns < ? GROUP BY domain, environment"
                if self._config.owner_attribute is not None
                else "SELECT domain, coalesce(environment, ''), sum(cost_usd), count(*)"
                " FROM traces WHERE first_seen_ns >= ? AND first_seen_ns < ?"
                " AND domain IS NOT NULL GROUP BY domain, environment"
            )
            for start_ns, end_ns, sign in window.edges:
                rows += [
                    (domain, environment, sign * cost, sign * traces)
                    for domain, environment, cost, traces in cursor.execute(
                        edge, (start_ns, end_ns)
                    )
                ]
            return rows

        rows = self._connection.read("domain_spend", read)
        excluded = frozenset(exclude_environments)
        return net_spend(
            (domain, cost, traces)
            for domain, environment, cost, traces in rows
            if environment not in excluded
        )

    def domain_coverage(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, tuple[int, int]]:
        start_ns, end_ns = hour_window(since, until)
        query = (
            "SELECT domain, sum(spans), sum(unpriced_spans) FROM trace_charges"
            " WHERE first_seen_ns >= ? AND first_seen_ns < ?"
            " AND environment NOT IN (SELECT value FROM json_each(?)) GROUP BY domain"
            if self._config.owner_attribute is not None
            else "SELECT domain, sum(span_count), sum(unpriced_count) FROM traces"
            " WHERE first_seen_ns >= ? AND first_seen_ns < ? AND domain IS NOT NULL"
            " AND coalesce(environment, '') NOT IN (SELECT value FROM json_each(?))"
            " GROUP BY domain"
        )
        rows = self._read(
            "domain_coverage", query, (start_ns, end_ns, json.dumps(sorted(exclude_environments)))
        )
        return {domain: (int(spans), int(unpriced)) for domain, spans, unpriced in rows}

    def unpriced_reasons(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[tuple[str, int]]:
        start_ns, end_ns = hour_window(since, until)
        rows = self._read(
            "unpriced_reasons",
            "SELECT reason, sum(spans) FROM unpriced_reasons"
            " WHERE hour_ns >= ? AND hour_ns < ?"
            " AND environment NOT IN (SELECT value FROM json_each(?))"
            " GROUP BY reason ORDER BY 2 DESC, 1",
            (start_ns, end_ns, json.dumps(sorted(exclude_environments))),
        )
        return [(reason, int(spans)) for reason, spans in rows]

    def transaction_totals(
        self,
        since: datetime,
        until: datetime,
        exclude_environments: Collection[str] = (),
        *,
        limit: int | None = None,
        names: Collection[str] | None = None,
    ) -> list[SpendRow]:
        start_ns, end_ns = hour_window(since, until)
        query = (
            "SELECT transaction_name, sum(cost_usd), count(*), sum(span_count) FROM traces"
            " WHERE first_seen_ns >= ? AND first_seen_ns < ? AND transaction_name IS NOT NULL"
            " AND coalesce(environment, '') NOT IN (SELECT value FROM json_each(?))"
            " AND (? IS NULL OR transaction_name IN (SELECT value FROM json_each(?)))"
            " GROUP BY transaction_name ORDER BY 2 DESC, 1 LIMIT ?"
        )
        wanted = None if names is None else json.dumps(sorted(names))
        parameters = (
            start_ns,
            end_ns,
            json.dumps(sorted(exclude_environments)),
            wanted,
            wanted,
            -1 if limit is None else limit,
        )
        rows = self._read("transaction_totals", query, parameters)
        return [SpendRow(name, float(cost), traces, spans) for name, cost, traces, spans in rows]

    def domain_totals(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[SpendRow]:
        query = (
            "SELECT domain, sum(cost_usd), sum(traces), sum(spans) FROM domain_hourly"
            " WHERE hour_ns >= ? AND hour_ns < ?"
            " AND environment NOT IN (SELECT value FROM json_each(?))"
            " GROUP BY domain ORDER BY 2 DESC, 1"
        )
        parameters = (
            hour_window(since, until)[0],
            ns_from_utc(until),
            json.dumps(sorted(exclude_environments)),
        )
        rows = self._read("domain_totals", query, parameters)
        return [SpendRow(name, float(cost), traces, spans) for name, cost, traces, spans in rows]

    def hourly_totals(
        self,
        since: datetime,
        until: datetime,
        exclude_environments: Collection[str] = (),
        *,
        by_domain: bool = False,
    ) -> list[HourRow]:
        grouping = "hour_ns, domain" if by_domain else "hour_ns"
        query = (
            f"SELECT {grouping}, sum(cost_usd), sum(traces), sum(spans) FROM domain_hourly"  # noqa: S608 - one of two constants
            " WHERE hour_ns >= ? AND hour_ns < ? AND domain != ?"
            " AND environment NOT IN (SELECT value FROM json_each(?))"
            f" GROUP BY {grouping} ORDER BY {grouping}"
        )
        parameters = (
            hour_window(since, until)[0],
            ns_from_utc(until),
            PENDING_DOMAIN,
            json.dumps(sorted(exclude_environments)),
        )
        rows = self._read("hourly_totals", query, parameters)
        if by_domain:
            return [
                HourRow(utc_from_ns(hour_ns), float(cost), traces, spans, domain)
                for hour_ns, domain, cost, traces, spans in rows
            ]
        return [
            HourRow(utc_from_ns(hour_ns), float(cost), traces, spans)
            for hour_ns, cost, traces, spans in rows
        ]

    # -- the allocation (issue 12) ------------------------------------------------------

    def write_usage(
        self,
        nodes: Sequence[tuple[NodeUsage, NodePrice]],
        pods: Sequence[PodUsage],
        now: datetime,
    ) -> None:
        self._connection.transaction("write_usage", sqlite_allocation.write_usage, nodes, pods, now)

    def allocate(self, weights: Weights = DEFAULT_WEIGHTS) -> int:
        hours = self._connection.read("allocate", sqlite_allocation.dirty_hours)
        for hour_ns in hours:
            self._connection.transaction(
                "allocate", sqlite_allocation.allocate_hour, hour_ns, weights, self._config
            )
        return len(hours)

    def allocated_totals(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[AllocatedRow]:
        return self._connection.read(
            "allocated_totals",
            sqlite_allocation.allocated_totals,
            since,
            until,
            exclude_environments,
        )

    def allocated_domain_spend(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, float] | None:
        return self._connection.read(
            "allocated_domain_spend",
            sqlite_allocation.allocated_domain_spend,
            since,
            until,
            exclude_environments,
        )

    def reconcile(self, since: datetime, until: datetime) -> list[ReconcileRow]:
        return self._connection.read("reconcile", sqlite_allocation.reconcile, since, until)

    def allocation_by_node(
        self, since: datetime, until: datetime, weights: Weights = DEFAULT_WEIGHTS
    ) -> NodeAllocation:
        nodes, pods, busy, per_request = self._connection.read(
            "allocation_by_node", sqlite_allocation.by_node_rows, since, until
        )
        return by_node(nodes, pods, busy, per_request, weights=weights, config=self._config)

    def reprice(
        self,
        since: datetime,
        until: datetime,
        price: Callable[[NodeUsage], NodePrice | None],
        now: datetime,
    ) -> list[RepricedRow]:
        return self._connection.transaction(
            "reprice", sqlite_allocation.reprice, since, until, price, now
        )

    def delete_before(self, cutoff: datetime) -> Deleted:
        """Retention: delete every trace first stored before `cutoff` — its row and all
        its contributions — and the allocation's usage of the hours before it, in one
        transaction; the hourly rollup, the quarantine counts and what was allocated stay
        (as with PostgreSQL, whose equivalent drops monthly partitions).

        Keep far more than ``max_clock_skew``: a span of a deleted trace arriving later
        would start the trace afresh. SQLite reuses the freed pages; the file does not
        shrink (``VACUUM`` does that, offline).
        """
        cutoff_ns = ns_from_utc(cutoff)

        def delete(cursor: sqlite3.Cursor) -> Deleted:
            for table in ALLOCATION_USAGE_TABLES:
                cursor.execute(f"DELETE FROM {table} WHERE hour_ns < ?", (cutoff_ns,))  # noqa: S608 - constant names
            cursor.execute(_DELETE_CHARGES, (cutoff_ns, cutoff_ns))
            cursor.execute(_DELETE_TRACES, (cutoff_ns, cutoff_ns))
            traces = cursor.rowcount
            cursor.execute(_DELETE_CONTRIBUTIONS, (cutoff_ns,))
            return Deleted(traces=traces, contributions=cursor.rowcount)

        deleted = self._connection.transaction("delete_before", delete)
        if deleted.traces or deleted.contributions:
            logger.info(
                "deleted %s traces and %s contributions stored before %s from %s",
                deleted.traces,
                deleted.contributions,
                cutoff.isoformat(),
                self._connection.path,
            )
        return deleted

    def _read(
        self, operation: str, query: str, parameters: Sequence[object]
    ) -> list[tuple[Any, ...]]:
        return self._connection.read(
            operation, lambda cursor: cursor.execute(query, parameters).fetchall()
        )

    def _write(
        self,
        cursor: sqlite3.Cursor,
        contributions: Sequence[SpanContribution],
        quarantined: Sequence[Quarantined],
        now_ns: int,
    ) -> WriteResult:
        inserted = [c for c in contributions if _insert(cursor, c, None, now_ns)]
        reasons: Counter[str] = Counter(
            q.reason for q in quarantined if _insert(cursor, q.contribution, q.reason, now_ns)
        )
        for reason, spans in reasons.items():
            cursor.execute(
                "INSERT INTO quarantine_counts (reason, spans) VALUES (?, ?)"
                " ON CONFLICT (reason) DO UPDATE SET spans = spans + excluded.spans",
                (reason, spans),
            )
        deltas = fold(inserted)
        rollup = RollupChanges()
        busy = BusyChanges()
        added_busy = stored_busy(inserted, self._config)
        owed = charges(inserted, self._config) if self._config.owner_attribute else None
        for delta in deltas.values():
            self._add(
                cursor,
                delta,
                now_ns,
                rollup,
                None if owed is None else owed[delta.trace_id],
                busy=(busy, added_busy.get(delta.trace_id, [])),
            )
        _apply_rollup(cursor, rollup)
        _apply_busy(cursor, busy)
        for (hour_ns, environment, reason), spans in unpriced_counts(inserted, now_ns):
            cursor.execute(
                "INSERT INTO unpriced_reasons (hour_ns, environment, reason, spans)"
                " VALUES (?, ?, ?, ?) ON CONFLICT (hour_ns, environment, reason)"
                " DO UPDATE SET spans = spans + excluded.spans",
                (hour_ns, environment, reason, spans),
            )
        return WriteResult(
            accepted=len(inserted),
            duplicates=len(contributions) + len(quarantined) - len(inserted) - reasons.total(),
            quarantined=dict(reasons),
            traces=len(deltas),
            cost_usd=sum(delta.cost_usd for delta in deltas.values()),
        )

    def _add(
        self,
        cursor: sqlite3.Cursor,
        delta: TraceDelta,
        now_ns: int,
        rollup: RollupChanges,
        owed: list[Charge] | None,
        *,
        busy: tuple[BusyChanges, list[StoredBusy]],
    ) -> None:
        """Add `delta` to its trace's row (as `merge` does) and record the rollup change:
        the delta, or the trace's whole move if its domain or environment changed; with
        ``domains.owner``, what the delta's spans `owed` their owners' domains instead,
        which never moves. Likewise its busy time: the delta's under the trace's labels,
        or all of it moved when they changed."""
        before, before_labels, stored = _state(cursor, delta.trace_id)
        busy_changes, added = busy
        sums, spans = trace_facts(delta, self._config)
        row = cursor.execute(
            _ADD_TO_TRACE_SQL,
            (delta.trace_id, *sums, now_ns, now_ns, *spans, encode(added) if added else None),
        ).fetchone()
        cost, spans, first_seen_ns, earliest_service, earliest_environment = row[:5]
        root_span_id, root_transaction, root_service, root_environment, current = row[5:10]
        root_owner, contested = row[10:]
        transaction, domain, environment = labels(
            self._config,
            root_span_id=root_span_id,
            root_transaction=root_transaction,
            root_service=root_service,
            root_environment=root_environment,
            earliest_service=earliest_service,
            earliest_environment=earliest_environment,
            current_transaction=current,
            root_owner=root_owner,
            contested=bool(contested),
        )
        cursor.execute(
            "UPDATE traces SET transaction_name = ?, domain = ?, environment = ?"
            " WHERE trace_id = ?",
            (transaction, domain, environment, delta.trace_id),
        )
        if added or stored:
            busy_changes.record(
                before_labels, Labels(transaction, domain, environment), decode(stored), added
            )
        if owed is None:
            after = placement(first_seen_ns, domain, environment, cost, spans)
            rollup.record(before, after, delta.cost_usd, delta.span_count)
            return
        for charge in owed:
            key = (delta.trace_id, charge.domain, charge.environment)
            new = cursor.execute(_CHARGE_EXISTS, key).fetchone() is None
            cursor.execute(_ADD_CHARGE, (*key, first_seen_ns, *charge[2:]))
            row = placement(first_seen_ns, charge.domain, charge.environment, 0.0, 0)
            rollup.add(row, charge.cost_usd, 1 if new else 0, charge.spans)

    def _attribute_orphans(
        self, cursor: sqlite3.Cursor, now: datetime, grace: timedelta, unattributed_name: str
    ) -> int:
        rows = cursor.execute(
            "SELECT trace_id, first_seen_ns, earliest_service FROM traces"
            " WHERE transaction_name IS NULL AND first_seen_ns <= ?",
            (ns_from_utc(now) - ns_from_duration(grace),),
        ).fetchall()
        rollup = RollupChanges()
        busy = BusyChanges()
        named = 0
        for trace_id, first_seen_ns, earliest_service in rows:
            state = TraceState(first_seen=utc_from_ns(first_seen_ns))
            transaction = resolve_transaction(state, now, grace, unattributed_name)
            if transaction is None:
                continue
            before, before_labels, stored = _state(cursor, trace_id)
            domain = trace_domain(
                self._config,
                transaction=transaction,
                service=earliest_service,
                has_root=False,
                owner=None,
                contested=False,
            )
            cursor.execute(
                "UPDATE traces SET transaction_name = ?, domain = ? WHERE trace_id = ?",
                (transaction, domain, trace_id),
            )
            after, after_labels, _ = _state(cursor, trace_id)
            owner_mode = self._config.owner_attribute is not None  # charges never move
            if before is not None and after is not None and not owner_mode:
                rollup.record(before, after, 0.0, 0)
            if stored and after_labels is not None:
                busy.record(before_labels, after_labels, decode(stored), [])
            named += 1
        _apply_rollup(cursor, rollup)
        _apply_busy(cursor, busy)
        if named:
            logger.info("named %s traces without root %r", named, unattributed_name)
        return named


def _insert(
    cursor: sqlite3.Cursor, span: SpanContribution, reason: str | None, now_ns: int
) -> bool:
    """Insert `span` unless its (trace id, span id) is stored; whether it was inserted."""
    cursor.execute(
        _INSERT_CONTRIBUTION,
        (span.trace_id, span.span_id, now_ns, reason, *span_facts(span)),
    )
    return cursor.rowcount == 1


def _state(
    cursor: sqlite3.Cursor, trace_id: str
) -> tuple[Placement | None, Labels | None, str | None]:
    """A stored trace's rollup placement, labels and busy time (Nones: not stored)."""
    row = cursor.execute(
        "SELECT first_seen_ns, domain, environment, cost_usd, span_count, transaction_name,"
        " busy FROM traces WHERE trace_id = ?",
        (trace_id,),
    ).fetchone()
    if row is None:
        return None, None, None
    first_seen_ns, domain, environment, cost, spans, transaction, busy = row
    return (
        placement(first_seen_ns, domain, environment, cost, spans),
        Labels(transaction, domain, environment),
        busy,
    )


def _apply_busy(cursor: sqlite3.Cursor, busy: BusyChanges) -> None:
    for key, seconds, segments, request_usd in busy:
        cursor.execute(_ADD_TO_POD_BUSY, (*key, seconds, segments, request_usd))
        if seconds < 0 or segments < 0 or request_usd < 0:
            # Moved away: drop what is left of the row rather than keep a rounding residue.
            cursor.execute(
                "DELETE FROM pod_busy WHERE hour_ns = ? AND pod = ? AND domain = ?"
                " AND transaction_name = ? AND environment = ? AND abs(seconds) < ?"
                " AND abs(segments) < ? AND abs(request_usd) < ?",
                (*key, _BUSY_RESIDUE, _BUSY_RESIDUE, _BUSY_RESIDUE),
            )
    sqlite_allocation.mark_dirty(cursor, busy.hours)


def _apply_rollup(cursor: sqlite3.Cursor, rollup: RollupChanges) -> None:
    for (hour_ns, domain, environment), cost, traces, spans in rollup:
        cursor.execute(_ADD_TO_ROLLUP, (domain, environment, hour_ns, cost, traces, spans))
        if traces < 0:
            # The last trace gone: drop the row rather than keep a rounding residue of cost.
            cursor.execute(
                "DELETE FROM domain_hourly WHERE hour_ns = ? AND domain = ? AND environment = ?"
                " AND traces = 0",
                (hour_ns, domain, environment),
            )
