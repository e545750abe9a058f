"""The shared trace-totals store: PostgreSQL through psycopg 3 and a `ConnectionPool`.

Same semantics as `spancost.store.sqlite` (see the README section "Totals store:
PostgreSQL"); what differs is how PostgreSQL gives them:

- ``contributions`` and ``traces`` are declarative monthly range partitions on
  ``keyed_at``, the time the trace id was first seen, taken from the one-row-per-trace
  table ``trace_keys`` (not partitioned). Every span of a trace therefore lands in the
  partition of the trace's month, so the primary key (trace_id, span_id, keyed_at)
  deduplicates a replay whenever it arrives, even in a later month.
- ``contributions`` holds that key only, compact (the trace id a ``uuid``, the span id
  the ``bigint`` of its 8 bytes): the per-span insert is most of a write's work. A
  quarantined span also gets a row in ``quarantined_spans`` with its facts and reason;
  one whose ids cannot be keyed (``invalid_id``) only that row.
- A write locks the ``trace_keys`` row of each trace it touches, one at a time in
  sorted order (no deadlock between writers), before it reads the old trace row: the
  rollup move reads values no other writer can change under it. Rollup and quarantine
  counts, shared between traces, are updated last, also in sorted key order.
- Retention drops whole partitions (`drop_partitions_before`); it never DELETEs
  contributions or traces (only the per-trace keys and the quarantined spans).

Times are ``timestamptz`` (sessions run in UTC), span times bigint nanoseconds.
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Callable, Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg_pool import ConnectionPool

from spancost.store.base import HourRow, SpendRow, StoreError, WriteResult
from spancost.store.common import (
    PENDING_DOMAIN,
    Placement,
    RollupChanges,
    hour_window,
    labels,
    merge_assignments,
    placement,
)
from spancost.store.common import add_months as _add_months
from spancost.store.common import month_start as _month_start
from spancost.store.migrations.postgres import MIGRATIONS
from spancost.totals.aggregate import (
    Quarantined,
    SpanContribution,
    TraceDelta,
    fold,
    ns_from_utc,
    utc_from_ns,
)
from spancost.totals.naming import (
    TotalsConfig,
    TraceState,
    domain_name,
    resolve_transaction,
    transaction_name,
)

__all__ = ["PENDING_DOMAIN", "PostgresStore", "masked_dsn"]

logger = logging.getLogger(__name__)

PARTITIONED_TABLES: Final = ("contributions", "traces")
_PARTITION_NAME: Final = re.compile(r"^(?P<table>[a-z_]+)_p(?P<year>\d{4})(?P<month>\d{2})$")
# pg_advisory_xact_lock keys: migrations and partition DDL run one store at a time.
_MIGRATE_LOCK: Final = 0x5370_6E63_0001
_PARTITION_LOCK: Final = 0x5370_6E63_0002
_MASK: Final = "***"
_UNKEYABLE: Final = "invalid_id"
"""The quarantine reason of spans whose ids are no uuid and 64-bit integer."""

Cursor = psycopg.Cursor[tuple[Any, ...]]
_T = TypeVar("_T")

# Locks every trace's key row, one row after the other in trace id order (a new row is
# locked by its insert, an old one by the no-op update), and returns the month each
# trace belongs to. One statement for the whole batch.
_LOCK_TRACES: Final = """
INSERT INTO trace_keys (trace_id, keyed_at)
SELECT trace_id, %s FROM unnest(string_to_array(%s, ',')) AS batch (trace_id)
ORDER BY trace_id
ON CONFLICT (trace_id) DO UPDATE SET keyed_at = trace_keys.keyed_at
RETURNING trace_id, keyed_at
"""

# Hex ids travel as one comma-separated string each and are converted by the server:
# psycopg builds array parameters element by element in Python, which was most of the
# client's work per span. RETURNING gives the ids back in hex, as `SpanContribution.key`.
_INSERT_CONTRIBUTIONS: Final = """
INSERT INTO contributions (trace_id, span_id, keyed_at)
SELECT trace_id::uuid, ('x' || span_id)::bit(64)::bigint, keyed_at
FROM unnest(string_to_array(%s, ','), string_to_array(%s, ','), %b::timestamptz[])
    AS span (trace_id, span_id, keyed_at)
ON CONFLICT (trace_id, span_id, keyed_at) DO NOTHING
RETURNING encode(uuid_send(trace_id), 'hex'), lpad(to_hex(span_id), 16, '0')
"""

# In (trace id, span id) order: ids that cannot be keyed take no trace lock, so two
# writers of the same such spans wait on each other's rows in one order.
_INSERT_QUARANTINED: Final = """
INSERT INTO quarantined_spans (
    trace_id, span_id, keyed_at, ingested_at, reason, cost_usd, unpriced_reason,
    is_root, start_ns, end_ns, name, service, environment, account, transaction_attribute
)
SELECT trace_id, span_id, keyed_at, %s, reason, cost_usd, unpriced_reason,
    is_root, start_ns, end_ns, name, service, environment, account, transaction_attribute
FROM unnest(
    %b::text[], %b::text[], %b::timestamptz[], %b::text[], %b::float8[], %b::text[],
    %b::boolean[], %b::bigint[], %b::bigint[], %b::text[], %b::text[], %b::text[],
    %b::text[], %b::text[]
) AS span (
    trace_id, span_id, keyed_at, reason, cost_usd, unpriced_reason,
    is_root, start_ns, end_ns, name, service, environment, account, transaction_attribute
)
ORDER BY trace_id, span_id
ON CONFLICT (trace_id, span_id) DO NOTHING
RETURNING reason
"""

# Sums add; start least, end greatest; earliest and root the first by (start, span id).
# Every right-hand side of ON CONFLICT DO UPDATE sees the row as it was before. A new
# row gets its labels (transaction, domain, environment) here; an existing row keeps
# its own, and the write sets them afterwards only where they changed. One statement
# for every trace of the batch, in trace id order.
#
# ``old`` is each row as it was before (every part of a statement reads the same
# snapshot, taken after this transaction locked the traces' keys: nobody else changes
# these rows until it ends); the keyed_at range prunes partitions.
_ADD_TO_TRACES: Final = """
WITH old AS (
    SELECT trace_id, keyed_at, first_seen, domain, environment, cost_usd, span_count
    FROM traces
    WHERE trace_id = ANY(string_to_array(%s, ',')) AND keyed_at >= %s AND keyed_at <= %s
), added AS (
INSERT INTO traces (
    trace_id, keyed_at, cost_usd, span_count, priced_count, unpriced_count, start_ns, end_ns,
    first_seen, last_update,
    earliest_span_id, earliest_start_ns, earliest_service, earliest_environment,
    root_span_id, root_start_ns, root_transaction, root_service, root_environment,
    transaction_name, domain, environment, earliest_account, root_account
)
SELECT trace_id, keyed_at, cost_usd, span_count, priced_count, unpriced_count, start_ns, end_ns,
    %s, %s,
    earliest_span_id, earliest_start_ns, earliest_service, earliest_environment,
    root_span_id, root_start_ns, root_transaction, root_service, root_environment,
    transaction_name, domain, environment, earliest_account, root_account
FROM unnest(
    %b::text[], %b::timestamptz[], %b::float8[], %b::bigint[], %b::bigint[], %b::bigint[],
    %b::bigint[], %b::bigint[], %b::text[], %b::bigint[], %b::text[], %b::text[], %b::text[],
    %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[], %b::text[],
    %b::text[], %b::text[]
) AS delta (
    trace_id, keyed_at, cost_usd, span_count, priced_count, unpriced_count, start_ns, end_ns,
    earliest_span_id, earliest_start_ns, earliest_service, earliest_environment,
    root_span_id, root_start_ns, root_transaction, root_service, root_environment,
    transaction_name, domain, environment, earliest_account, root_account
)
ORDER BY trace_id
ON CONFLICT (trace_id, keyed_at) DO UPDATE SET
    cost_usd = traces.cost_usd + excluded.cost_usd,
    span_count = traces.span_count + excluded.span_count,
    priced_count = traces.priced_count + excluded.priced_count,
    unpriced_count = traces.unpriced_count + excluded.unpriced_count,
    start_ns = least(traces.start_ns, excluded.start_ns),
    end_ns = greatest(traces.end_ns, excluded.end_ns),
    last_update = excluded.last_update,
    {merge}
RETURNING trace_id, keyed_at, cost_usd, span_count, first_seen, earliest_service,
    earliest_environment, root_span_id, root_transaction, root_service, root_environment,
    transaction_name, domain, environment
)
SELECT added.trace_id, added.cost_usd, added.span_count, added.first_seen,
    added.earliest_service, added.earliest_environment, added.root_span_id,
    added.root_transaction, added.root_service, added.root_environment,
    added.transaction_name, added.domain, added.environment,
    old.trace_id IS NOT NULL, old.first_seen, old.domain, old.environment, old.cost_usd,
    old.span_count
FROM added LEFT JOIN old ON old.trace_id = added.trace_id AND old.keyed_at = added.keyed_at
"""
_ADD_TO_TRACES_SQL: Final = _ADD_TO_TRACES.format(merge=merge_assignments(existing="traces."))

_RELABEL_TRACES: Final = """
UPDATE traces SET transaction_name = label.transaction_name, domain = label.domain,
    environment = label.environment
FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[])
    AS label (trace_id, keyed_at, transaction_name, domain, environment)
WHERE traces.trace_id = label.trace_id AND traces.keyed_at = label.keyed_at
"""

# Every changed rollup row in one statement, in key order (the lock order of all writers).
_ADD_TO_ROLLUP: Final = """
INSERT INTO domain_hourly (hour, domain, environment, cost_usd, traces, spans)
SELECT * FROM unnest(
    %s::timestamptz[], %s::text[], %s::text[], %s::float8[], %s::bigint[], %s::bigint[]
) AS change (hour, domain, environment, cost_usd, traces, spans)
ORDER BY hour, domain, environment
ON CONFLICT (hour, domain, environment) DO UPDATE SET
    cost_usd = domain_hourly.cost_usd + excluded.cost_usd,
    traces = domain_hourly.traces + excluded.traces,
    spans = domain_hourly.spans + excluded.spans
"""

# A row whose last trace left is deleted rather than kept with a rounding residue.
_DELETE_EMPTY_ROLLUP: Final = """
DELETE FROM domain_hourly USING unnest(%s::timestamptz[], %s::text[], %s::text[])
    AS emptied (hour, domain, environment)
WHERE domain_hourly.hour = emptied.hour AND domain_hourly.domain = emptied.domain
    AND domain_hourly.environment = emptied.environment AND domain_hourly.traces = 0
"""

# The trace rows first seen in the window; ``keyed_at <= first_seen`` lets the planner
# skip the partitions of later months.
_TRANSACTION_TOTALS: Final = """
SELECT transaction_name, sum(cost_usd), count(*), sum(span_count) FROM traces
WHERE first_seen >= %(start)s AND first_seen < %(end)s AND keyed_at < %(end)s
    AND transaction_name IS NOT NULL
    AND coalesce(environment, '') <> ALL(%(exclude)s::text[])
    AND (%(names)s::text[] IS NULL OR transaction_name = ANY(%(names)s::text[]))
GROUP BY transaction_name
ORDER BY 2 DESC, 1
LIMIT %(limit)s
"""

_DOMAIN_TOTALS: Final = """
SELECT domain, sum(cost_usd), sum(traces), sum(spans) FROM domain_hourly
WHERE hour >= %(start)s AND hour < %(until)s AND environment <> ALL(%(exclude)s::text[])
GROUP BY domain
ORDER BY 2 DESC, 1
"""

_HOURLY_TOTALS: Final = """
SELECT hour, sum(cost_usd), sum(traces), sum(spans) FROM domain_hourly
WHERE hour >= %(start)s AND hour < %(until)s AND domain <> %(pending)s
    AND environment <> ALL(%(exclude)s::text[])
GROUP BY hour
ORDER BY hour
"""


class PostgresStore:
    """`TotalsStore` over a PostgreSQL database (see the module docstring).

    Thread-safe: every operation borrows a connection from the pool for one
    transaction. Several stores, in several processes or hosts, may share a database.
    """

    def __init__(
        self,
        dsn: str,
        config: TotalsConfig | None = None,
        *,
        max_connections: int = 4,
        connect_timeout: timedelta = timedelta(seconds=10),
    ) -> None:
        self._config = config if config is not None else TotalsConfig()
        self._dsn_for_logs = masked_dsn(dsn)
        self._password = _passwords(dsn)
        seconds = max(1, round(connect_timeout.total_seconds()))
        try:
            conninfo_to_dict(dsn)
            # Connect once up front: a wrong host or password is reported now, with
            # libpq's reason, rather than as a pool timeout on the first write.
            psycopg.connect(dsn, connect_timeout=seconds).close()
        except psycopg.Error as exc:
            raise StoreError(
                f"cannot connect to PostgreSQL totals store {self._dsn_for_logs}:"
                f" {self._scrub(str(exc))}"
            ) from None  # the cause's text may quote the DSN, password and all
        self._pool: ConnectionPool[psycopg.Connection[tuple[Any, ...]]] = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_connections,
            kwargs={"autocommit": True, "connect_timeout": seconds},
            configure=_configure,
            timeout=connect_timeout.total_seconds(),
            name="spancost-totals",
            open=True,
        )
        self._months: set[datetime] = set()
        logger.info("PostgreSQL totals store %s", self._dsn_for_logs)

    def close(self) -> None:
        self._pool.close()

    def migrate(self) -> None:
        def apply(cursor: Cursor) -> None:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATE_LOCK,))
            cursor.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations"
                " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)"
            )
            applied = {row[0] for row in cursor.execute("SELECT version FROM schema_migrations")}
            for version, statements in MIGRATIONS:
                if version in applied:
                    continue
                logger.info(
                    "applying totals schema migration %s to %s", version, self._dsn_for_logs
                )
                for statement in statements:
                    cursor.execute(statement)
                cursor.execute(
                    "INSERT INTO schema_migrations (version, applied_at) VALUES (%s, now())",
                    (version,),
                )

        self._transaction("migrate", apply)

    def ensure_partitions(self, now: datetime, months_ahead: int = 2) -> list[str]:
        """Create the monthly partitions from `now`'s month (UTC) to `months_ahead` after
        it, those missing; return the names created."""
        months = [_add_months(_month_start(now), offset) for offset in range(months_ahead + 1)]

        def create(cursor: Cursor) -> list[str]:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
            created: list[str] = []
            for table in PARTITIONED_TABLES:
                for month in months:
                    name = _partition_name(table, month)
                    cursor.execute("SELECT to_regclass(%s)", (name,))
                    if _one(cursor)[0] is not None:
                        continue
                    cursor.execute(
                        sql.SQL(
                            "CREATE TABLE {partition} PARTITION OF {table}"
                            " FOR VALUES FROM ({start}) TO ({end})"
                        ).format(
                            partition=sql.Identifier(name),
                            table=sql.Identifier(table),
                            start=sql.Literal(month),
                            end=sql.Literal(_add_months(month, 1)),
                        )
                    )
                    created.append(name)
            return created

        created = self._transaction("ensure_partitions", create)
        self._months.update(months)
        if created:
            logger.info("created totals partitions %s", ", ".join(created))
        return created

    def drop_partitions_before(self, cutoff: datetime) -> list[str]:
        """Detach and drop every monthly partition entirely before `cutoff`, with the
        ``trace_keys`` of those months; return the names dropped.

        Keep more than ``max_clock_skew`` (plus the longest trace): a span of a dropped
        trace arriving later would start the trace afresh.
        """
        boundary = _month_start(cutoff)

        def drop(cursor: Cursor) -> list[str]:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", (_PARTITION_LOCK,))
            dropped: list[str] = []
            for table in PARTITIONED_TABLES:
                cursor.execute(
                    "SELECT child.relname FROM pg_inherits"
                    " JOIN pg_class child ON child.oid = pg_inherits.inhrelid"
                    " WHERE pg_inherits.inhparent = %s::regclass ORDER BY 1",
                    (table,),
                )
                for (name,) in cursor.fetchall():
                    month = _partition_month(table, name)
                    if month is None:
                        logger.warning("leaving partition %s alone: not named by spancost", name)
                        continue
                    if month >= boundary:
                        continue
                    cursor.execute(
                        sql.SQL("ALTER TABLE {table} DETACH PARTITION {partition}").format(
                            table=sql.Identifier(table), partition=sql.Identifier(name)
                        )
                    )
                    cursor.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                    dropped.append(name)
            # One row per trace, not per span, and the (few) quarantined spans: the only
            # rows retention deletes.
            cursor.execute("DELETE FROM trace_keys WHERE keyed_at < %s", (boundary,))
            cursor.execute("DELETE FROM quarantined_spans WHERE keyed_at < %s", (boundary,))
            return dropped

        dropped = self._transaction("drop_partitions_before", drop)
        self._months = {month for month in self._months if month >= boundary}
        if dropped:
            logger.info("dropped totals partitions %s", ", ".join(dropped))
        return dropped

    def write(
        self,
        contributions: Sequence[SpanContribution],
        quarantined: Sequence[Quarantined],
        now: datetime,
    ) -> WriteResult:
        if not contributions and not quarantined:
            return WriteResult()
        if _month_start(now) not in self._months:
            self.ensure_partitions(now)
        return self._transaction(
            "write", lambda cursor: self._write(cursor, contributions, quarantined, now)
        )

    def attribute_orphans(self, now: datetime, grace: timedelta, unattributed_name: str) -> int:
        return self._transaction(
            "attribute_orphans",
            lambda cursor: self._attribute_orphans(cursor, now, grace, unattributed_name),
        )

    def domain_spend(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> dict[str, float]:
        def read(cursor: Cursor) -> dict[str, float]:
            cursor.execute(
                "SELECT domain, sum(cost_usd) FROM domain_hourly"
                " WHERE hour >= %s AND hour < %s AND domain <> %s"
                " AND environment <> ALL(%s::text[]) GROUP BY domain",
                (_hour(since), until, PENDING_DOMAIN, sorted(exclude_environments)),
            )
            return {domain: float(cost) for domain, cost in cursor.fetchall()}

        return self._transaction("domain_spend", read)

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
        parameters = {
            "start": utc_from_ns(start_ns),
            "end": utc_from_ns(end_ns),
            "exclude": sorted(exclude_environments),
            "names": None if names is None else sorted(names),
            "limit": limit,
        }
        rows = self._read("transaction_totals", _TRANSACTION_TOTALS, parameters)
        return [_spend_row(*row) for row in rows]

    def domain_totals(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[SpendRow]:
        parameters = {
            "start": _hour(since),
            "until": until,
            "exclude": sorted(exclude_environments),
        }
        rows = self._read("domain_totals", _DOMAIN_TOTALS, parameters)
        return [_spend_row(*row) for row in rows]

    def hourly_totals(
        self, since: datetime, until: datetime, exclude_environments: Collection[str] = ()
    ) -> list[HourRow]:
        parameters = {
            "start": _hour(since),
            "until": until,
            "pending": PENDING_DOMAIN,
            "exclude": sorted(exclude_environments),
        }
        rows = self._read("hourly_totals", _HOURLY_TOTALS, parameters)
        return [
            HourRow(hour.astimezone(UTC), float(cost), int(traces), int(spans))
            for hour, cost, traces, spans in rows
        ]

    def _read(
        self, operation: str, query: str, parameters: dict[str, Any]
    ) -> list[tuple[Any, ...]]:
        def run(cursor: Cursor) -> list[tuple[Any, ...]]:
            cursor.execute(query, parameters)
            return cursor.fetchall()

        return self._transaction(operation, run)

    def _transaction(self, operation: str, work: Callable[[Cursor], _T]) -> _T:
        """Run `work` in one transaction: all of it commits, or none and it raises."""
        try:
            with (
                self._pool.connection() as connection,
                connection.transaction(),
                connection.cursor() as cursor,
            ):
                return work(cursor)
        except psycopg.Error as exc:
            raise StoreError(f"totals store {operation}: {self._scrub(str(exc))}") from exc

    def _scrub(self, message: str) -> str:
        for password in self._password:
            message = message.replace(password, _MASK)
        return message

    def _write(
        self,
        cursor: Cursor,
        contributions: Sequence[SpanContribution],
        quarantined: Sequence[Quarantined],
        now: datetime,
    ) -> WriteResult:
        # The first span of each (trace id, span id), accepted ones first: what one
        # INSERT ... ON CONFLICT DO NOTHING of them all in this order would keep.
        spans: dict[tuple[str, str], tuple[SpanContribution, str | None]] = {}
        for span in contributions:
            spans.setdefault(span.key, (span, None))
        for entry in quarantined:
            spans.setdefault(entry.contribution.key, (entry.contribution, entry.reason))
        # Spans whose ids cannot be keyed are deduplicated in quarantined_spans only.
        keyed = {key: entry for key, entry in spans.items() if entry[1] != _UNKEYABLE}
        keyed_at = _lock_traces(cursor, sorted({trace_id for trace_id, _ in keyed}), now)
        inserted = _insert_contributions(cursor, [span for span, _ in keyed.values()], keyed_at)
        accepted: list[SpanContribution] = []
        quarantine: list[tuple[SpanContribution, str, datetime]] = []
        for key, (span, reason) in keyed.items():
            if key not in inserted:
                continue
            if reason is None:
                accepted.append(span)
            else:
                quarantine.append((span, reason, keyed_at[span.trace_id]))
        quarantine += [
            (span, reason, now) for span, reason in spans.values() if reason == _UNKEYABLE
        ]
        reasons = _insert_quarantined(cursor, quarantine, now)
        deltas = fold(accepted)
        rollup = RollupChanges()
        if deltas:
            self._add(
                cursor, [deltas[trace_id] for trace_id in sorted(deltas)], keyed_at, now, rollup
            )
        for quarantine_reason in sorted(reasons):
            cursor.execute(
                "INSERT INTO quarantine_counts (reason, spans) VALUES (%s, %s)"
                " ON CONFLICT (reason) DO UPDATE"
                " SET spans = quarantine_counts.spans + excluded.spans",
                (quarantine_reason, reasons[quarantine_reason]),
            )
        _apply_rollup(cursor, rollup)
        return WriteResult(
            accepted=len(accepted),
            duplicates=len(contributions) + len(quarantined) - len(accepted) - reasons.total(),
            quarantined=dict(reasons),
            traces=len(deltas),
            cost_usd=sum(delta.cost_usd for delta in deltas.values()),
        )

    def _add(
        self,
        cursor: Cursor,
        deltas: Sequence[TraceDelta],
        keyed_at: dict[str, datetime],
        now: datetime,
        rollup: RollupChanges,
    ) -> None:
        """Add each delta to its (locked) trace row as `merge` does, set the labels that
        changed, and record the rollup changes: a delta, or a trace's whole move when its
        domain or environment changed. A handful of statements for the whole batch."""
        months = [keyed_at[delta.trace_id] for delta in deltas]
        columns: list[list[Any]] = [[] for _ in range(22)]
        for delta in deltas:
            root, earliest = delta.root, delta.earliest
            root_transaction = None if root is None else transaction_name(root, self._config)
            # A new row's labels, as `labels` gives them for a row that is this delta (an
            # existing row ignores them).
            transaction, domain, environment = labels(
                self._config,
                root_span_id=None if root is None else root.span_id,
                root_transaction=root_transaction,
                root_service=None if root is None else root.service,
                root_environment=None if root is None else root.environment,
                earliest_service=earliest.service,
                earliest_environment=earliest.environment,
                current_transaction=None,
            )
            row = (
                delta.trace_id,
                keyed_at[delta.trace_id],
                delta.cost_usd,
                delta.span_count,
                delta.priced_count,
                delta.unpriced_count,
                delta.start_ns,
                delta.end_ns,
                earliest.span_id,
                earliest.start_ns,
                earliest.service,
                earliest.environment,
                None if root is None else root.span_id,
                None if root is None else root.start_ns,
                root_transaction,
                None if root is None else root.service,
                None if root is None else root.environment,
                transaction,
                domain,
                environment,
                earliest.account,
                None if root is None else root.account,
            )
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        trace_ids = ",".join(delta.trace_id for delta in deltas)
        cursor.execute(
            _ADD_TO_TRACES_SQL, (trace_ids, min(months), max(months), now, now, *columns)
        )
        relabel: list[list[Any]] = [[] for _ in range(5)]
        added = {delta.trace_id: delta for delta in deltas}
        for (
            trace_id,
            cost,
            count,
            first_seen,
            earliest_service,
            earliest_environment,
            root_span_id,
            root_transaction,
            root_service,
            root_environment,
            current,
            current_domain,
            current_environment,
            existed,
            *old,
        ) in cursor.fetchall():
            transaction, domain, environment = labels(
                self._config,
                root_span_id=root_span_id,
                root_transaction=root_transaction,
                root_service=root_service,
                root_environment=root_environment,
                earliest_service=earliest_service,
                earliest_environment=earliest_environment,
                current_transaction=current,
            )
            if (transaction, domain, environment) != (current, current_domain, current_environment):
                for column, value in zip(
                    relabel,
                    (trace_id, keyed_at[trace_id], transaction, domain, environment),
                    strict=True,
                ):
                    column.append(value)
            after = _placement(first_seen, domain, environment, cost, count)
            before = _placement(*old) if existed else None
            delta = added[trace_id]
            rollup.record(before, after, delta.cost_usd, delta.span_count)
        if relabel[0]:
            cursor.execute(_RELABEL_TRACES, relabel)

    def _attribute_orphans(
        self, cursor: Cursor, now: datetime, grace: timedelta, unattributed_name: str
    ) -> int:
        cursor.execute(
            "SELECT DISTINCT trace_id FROM traces"
            " WHERE transaction_name IS NULL AND first_seen <= %s ORDER BY trace_id",
            (now - grace,),
        )
        candidates = [trace_id for (trace_id,) in cursor.fetchall()]
        if not candidates:
            return 0
        # Lock as writers do (sorted), then read again: a root may have arrived meanwhile.
        cursor.execute(
            "SELECT trace_id FROM trace_keys WHERE trace_id = ANY(%s) ORDER BY trace_id FOR UPDATE",
            (candidates,),
        )
        cursor.execute(
            "SELECT trace_id, keyed_at, first_seen, earliest_service, environment, cost_usd,"
            " span_count FROM traces WHERE trace_id = ANY(%s) AND transaction_name IS NULL"
            " ORDER BY trace_id",
            (candidates,),
        )
        rollup = RollupChanges()
        named = 0
        for trace_id, keyed_at, first_seen, service, environment, cost, spans in cursor.fetchall():
            transaction = resolve_transaction(
                TraceState(first_seen=first_seen), now, grace, unattributed_name
            )
            if transaction is None:
                continue
            domain = domain_name(transaction, service, self._config)
            cursor.execute(
                "UPDATE traces SET transaction_name = %s, domain = %s"
                " WHERE trace_id = %s AND keyed_at = %s",
                (transaction, domain, trace_id, keyed_at),
            )
            before = _placement(first_seen, None, environment, cost, spans)
            rollup.record(before, _placement(first_seen, domain, environment, cost, spans), 0.0, 0)
            named += 1
        _apply_rollup(cursor, rollup)
        if named:
            logger.info("named %s traces without root %r", named, unattributed_name)
        return named


def masked_dsn(dsn: str) -> str:
    """`dsn` as it may be logged: the password replaced by ``***``."""
    try:
        parameters = conninfo_to_dict(dsn)
    except psycopg.Error:
        return "<unparsable DSN>"
    if "password" in parameters:
        parameters["password"] = _MASK
    return make_conninfo("", **parameters)


def _passwords(dsn: str) -> list[str]:
    """Every string in `dsn` that may be a password, to scrub from error messages
    (libpq quotes pieces of a DSN it cannot parse)."""
    found = re.findall(r"password\s*=\s*'?([^'\s]+)", dsn)
    found += re.findall(r"://[^:/@]*:([^@]+)@", dsn)
    try:
        password = conninfo_to_dict(dsn).get("password")
    except psycopg.Error:
        password = None
    if password:
        found.append(str(password))
    return sorted({piece for piece in found if piece}, key=len, reverse=True)


def _configure(connection: psycopg.Connection[tuple[Any, ...]]) -> None:
    # Month and hour boundaries are UTC whatever the server's or role's time zone.
    connection.execute("SET TIME ZONE 'UTC'")


def _lock_traces(cursor: Cursor, trace_ids: list[str], now: datetime) -> dict[str, datetime]:
    """Lock each trace's key row, in trace id order; its partition month."""
    if not trace_ids:
        return {}
    cursor.execute(_LOCK_TRACES, (now, ",".join(trace_ids)))
    keyed_at: dict[str, datetime] = dict(cursor.fetchall())
    if len(keyed_at) != len(trace_ids):
        raise StoreError("totals store: trace_keys returned fewer rows than traces locked")
    return keyed_at


def _insert_contributions(
    cursor: Cursor, spans: Sequence[SpanContribution], keyed_at: dict[str, datetime]
) -> set[tuple[str, str]]:
    """Insert each span's key (distinct keys, valid ids) unless stored; the keys inserted."""
    if not spans:
        return set()
    cursor.execute(
        _INSERT_CONTRIBUTIONS,
        (
            ",".join(span.trace_id for span in spans),
            ",".join(span.span_id for span in spans),
            [keyed_at[span.trace_id] for span in spans],
        ),
    )
    return set(cursor.fetchall())


def _insert_quarantined(
    cursor: Cursor, spans: Sequence[tuple[SpanContribution, str, datetime]], now: datetime
) -> Counter[str]:
    """Insert each (span, reason, keyed_at) unless stored; the spans inserted, by reason."""
    if not spans:
        return Counter()
    columns: list[list[Any]] = [[] for _ in range(14)]
    for span, reason, span_keyed_at in spans:
        row = (
            span.trace_id,
            span.span_id,
            span_keyed_at,
            reason,
            span.cost_usd,
            span.unpriced_reason,
            span.is_root,
            span.start_ns,
            span.end_ns,
            span.name,
            span.service,
            span.environment,
            span.account,
            span.transaction_attribute,
        )
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    cursor.execute(_INSERT_QUARANTINED, (now, *columns))
    return Counter(reason for (reason,) in cursor.fetchall())


def _one(cursor: Cursor) -> tuple[Any, ...]:
    """The one row a statement returns."""
    row = cursor.fetchone()
    if row is None:
        raise StoreError("totals store: a statement that returns a row returned none")
    return row


def _placement(
    first_seen: datetime, domain: str | None, environment: str | None, cost: float, spans: int
) -> Placement:
    return placement(ns_from_utc(first_seen), domain, environment, cost, spans)


def _apply_rollup(cursor: Cursor, rollup: RollupChanges) -> None:
    changes: list[list[Any]] = [[] for _ in range(6)]
    emptied: list[list[Any]] = [[] for _ in range(3)]
    for (hour_ns, domain, environment), cost, traces, spans in rollup:
        key = (utc_from_ns(hour_ns), domain, environment)
        for column, value in zip(changes, (*key, cost, traces, spans), strict=True):
            column.append(value)
        if traces < 0:  # the row may have lost its last trace
            for column, value in zip(emptied, key, strict=True):
                column.append(value)
    if changes[0]:
        cursor.execute(_ADD_TO_ROLLUP, changes)
    if emptied[0]:
        cursor.execute(_DELETE_EMPTY_ROLLUP, emptied)


def _spend_row(name: str, cost: float, traces: Any, spans: Any) -> SpendRow:
    return SpendRow(name, float(cost), int(traces), int(spans))


def _hour(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(minute=0, second=0, microsecond=0)


def _partition_name(table: str, month: datetime) -> str:
    return f"{table}_p{month.year:04d}{month.month:02d}"


def _partition_month(table: str, name: str) -> datetime | None:
    match = _PARTITION_NAME.match(name)
    if match is None or match["table"] != table:
        return None
    return datetime(int(match["year"]), int(match["month"]), 1, tzinfo=UTC)
