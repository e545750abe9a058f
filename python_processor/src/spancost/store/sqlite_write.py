"""The write path of the SQLite totals store: `write` (a batch of spans, in the caller's
``BEGIN IMMEDIATE`` transaction) and `attribute_orphans`. Same semantics as the
PostgreSQL store's (`spancost.store.postgres_write`); what the stores share is decided
once in `spancost.store.common` and `spancost.store.busy`, and here SQLite runs it.

Every span is a ``contributions`` row, inserted ``ON CONFLICT DO NOTHING``: a span
already stored adds nothing. The rollup ``domain_hourly`` holds every trace once, under
its CURRENT (domain, environment) and the hour it was first seen; when a late root (or
`attribute_orphans`) changes a trace's domain or environment, the trace's whole totals
move from the old key to the new one in the same transaction, so the rollup always
sums the trace rows. Traces still waiting for their root are under domain ``''``.
"""

from __future__ import annotations

import logging
import sqlite3
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Final

from spancost.store import sqlite_allocation
from spancost.store.base import WriteResult
from spancost.store.busy import (
    RESIDUE,
    BusyChanges,
    Labels,
    StoredBusy,
    decode,
    encode,
    stored_busy,
)
from spancost.store.common import (
    Charge,
    Placement,
    RollupChanges,
    charges,
    labels,
    merge_assignments,
    orphan_labels,
    placement,
    span_facts,
    trace_facts,
    unpriced_counts,
)
from spancost.totals.aggregate import (
    Quarantined,
    SpanContribution,
    TraceDelta,
    fold,
    ns_from_duration,
    ns_from_utc,
    utc_from_ns,
)
from spancost.totals.naming import TotalsConfig

__all__ = ["attribute_orphans", "write"]

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

_ADD_TO_ROLLUP: Final = """
INSERT INTO domain_hourly (domain, environment, hour_ns, cost_usd, traces, spans)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (hour_ns, domain, environment) DO UPDATE SET
    cost_usd = cost_usd + excluded.cost_usd,
    traces = traces + excluded.traces,
    spans = spans + excluded.spans
"""

_ADD_TO_POD_BUSY: Final = """
INSERT INTO pod_busy (hour_ns, pod, domain, transaction_name, environment, seconds, segments,
    request_usd)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (hour_ns, pod, domain, transaction_name, environment) DO UPDATE SET
    seconds = seconds + excluded.seconds,
    segments = segments + excluded.segments,
    request_usd = request_usd + excluded.request_usd
"""


def write(
    cursor: sqlite3.Cursor,
    config: TotalsConfig,
    contributions: Sequence[SpanContribution],
    quarantined: Sequence[Quarantined],
    now: datetime,
) -> WriteResult:
    """Store one batch (see `spancost.store.base.TotalsStore.write`): every span inserted
    unless its (trace id, span id) is stored, then the fold of the accepted ones
    inserted added to their trace rows, the rollup and ``pod_busy``."""
    now_ns = ns_from_utc(now)
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
    added_busy = stored_busy(inserted, config)
    owed = charges(inserted, config) if config.owner_attribute else None
    for delta in deltas.values():
        _add(
            cursor,
            config,
            delta,
            now_ns=now_ns,
            rollup=rollup,
            owed=None if owed is None else owed[delta.trace_id],
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
    cursor: sqlite3.Cursor,
    config: TotalsConfig,
    delta: TraceDelta,
    *,
    now_ns: int,
    rollup: RollupChanges,
    owed: list[Charge] | None,
    busy: tuple[BusyChanges, list[StoredBusy]],
) -> None:
    """Add `delta` to its trace's row (as `merge` does) and record the rollup change:
    the delta, or the trace's whole move if its domain or environment changed; with
    ``domains.owner``, what the delta's spans `owed` their owners' domains instead,
    which never moves. Likewise its busy time: the delta's under the trace's labels,
    or all of it moved when they changed."""
    before, before_labels, stored = _state(cursor, delta.trace_id)
    busy_changes, added = busy
    sums, spans = trace_facts(delta, config)
    row = cursor.execute(
        _ADD_TO_TRACE_SQL,
        (delta.trace_id, *sums, now_ns, now_ns, *spans, encode(added) if added else None),
    ).fetchone()
    cost, spans, first_seen_ns, earliest_service, earliest_environment = row[:5]
    root_span_id, root_transaction, root_service, root_environment, current = row[5:10]
    root_owner, contested = row[10:]
    transaction, domain, environment = labels(
        config,
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
        "UPDATE traces SET transaction_name = ?, domain = ?, environment = ? WHERE trace_id = ?",
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


def _apply_busy(cursor: sqlite3.Cursor, busy: BusyChanges) -> None:
    for key, seconds, segments, request_usd in busy:
        cursor.execute(_ADD_TO_POD_BUSY, (*key, seconds, segments, request_usd))
        if seconds < 0 or segments < 0 or request_usd < 0:
            # Moved away: drop what is left of the row rather than keep a rounding residue.
            cursor.execute(
                "DELETE FROM pod_busy WHERE hour_ns = ? AND pod = ? AND domain = ?"
                " AND transaction_name = ? AND environment = ? AND abs(seconds) < ?"
                " AND abs(segments) < ? AND abs(request_usd) < ?",
                (*key, RESIDUE, RESIDUE, RESIDUE),
            )
    sqlite_allocation.mark_dirty(cursor, busy.hours)


def attribute_orphans(
    cursor: sqlite3.Cursor,
    config: TotalsConfig,
    now: datetime,
    grace: timedelta,
    unattributed_name: str,
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
        named_as = orphan_labels(
            config,
            utc_from_ns(first_seen_ns),
            earliest_service,
            now=now,
            grace=grace,
            unattributed_name=unattributed_name,
        )
        if named_as is None:
            continue
        transaction, domain = named_as
        before, before_labels, stored = _state(cursor, trace_id)
        cursor.execute(
            "UPDATE traces SET transaction_name = ?, domain = ? WHERE trace_id = ?",
            (transaction, domain, trace_id),
        )
        after, after_labels, _ = _state(cursor, trace_id)
        owner_mode = config.owner_attribute is not None  # charges never move
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
