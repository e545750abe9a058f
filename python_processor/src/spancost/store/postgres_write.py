"""The write path of the PostgreSQL totals store: `write` (a batch of spans, in the
caller's transaction) and `attribute_orphans`. Same semantics as the SQLite store's
(`spancost.store.sqlite_write`); what the stores share is decided once in
`spancost.store.common` and `spancost.store.busy`, and here PostgreSQL runs it:

- A span is stored once: its 8-byte id is in its trace row's ``span_ids`` (accepted),
  or it has a row in ``quarantined_spans`` (with its facts and reason). No row per
  accepted span: that insert was most of a write's work.
- A write locks the ``trace_keys`` row of each trace it touches, one at a time in
  sorted order (no deadlock between writers), then reads what is stored of those
  traces, stores only the spans not stored yet, and adds them: no other writer can
  change those traces in between. A trace nothing was stored of gets a plain INSERT
  (a broken protocol would be a unique violation, never a double count). Rollup and
  quarantine counts, shared between traces, are updated last, also in sorted key order.
- The allocation (issue 12): a write appends its spans' busy time to their trace rows
  (``traces.busy``) and files it in ``pod_busy`` under the trace's labels (the whole
  trace's moved when they changed), after the rollup and in key order, then marks the
  hours it touched (`spancost.store.postgres_allocation.mark_dirty`: the last lock).

A fixed handful of statements per batch whatever its size (the README's "Write
transaction" lists them).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple

from spancost.store import postgres_allocation
from spancost.store.base import StoreError, WriteResult
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
    TraceSpans,
    charges,
    labels,
    merge_assignments,
    orphan_labels,
    placement,
    span_facts,
    trace_facts,
    unpriced_counts,
)
from spancost.store.postgres_pool import Cursor
from spancost.totals.aggregate import (
    Quarantined,
    SpanContribution,
    TraceDelta,
    ns_from_utc,
    trace_delta,
    utc_from_ns,
)
from spancost.totals.naming import TotalsConfig

__all__ = ["attribute_orphans", "write"]

logger = logging.getLogger(__name__)

_UNKEYABLE: Final = "invalid_id"
"""The quarantine reason of spans whose ids are no uuid and 64-bit integer."""

# Locks every trace's key row, one row after the other in trace id order: a new row is
# locked by its insert, an existing one by ON CONFLICT DO UPDATE, whose WHERE false
# locks the row without writing a new version of it. RETURNING gives the new keys
# only (keyed now); nothing is stored yet of their traces. One statement for the batch.
_LOCK_TRACES: Final = """
INSERT INTO trace_keys (trace_id, keyed_at)
SELECT trace_id, %s FROM unnest(string_to_array(%s, ',')) AS batch (trace_id)
ORDER BY trace_id
ON CONFLICT (trace_id) DO UPDATE SET keyed_at = trace_keys.keyed_at WHERE false
RETURNING trace_id
"""

# What is stored of traces whose keys existed (and are now locked by this transaction):
# each key's month, its trace row's span ids and the values its rollup row was computed
# from (NULL without a row: only quarantined spans so far), and each quarantined span
# id. Hex ids travel as one comma-separated string and are split by the server:
# psycopg builds array parameters element by element in Python.
_STORED: Final = """
SELECT trace_keys.trace_id, trace_keys.keyed_at, traces.span_ids, traces.first_seen,
    traces.domain, traces.environment, traces.cost_usd, traces.span_count, NULL
FROM trace_keys LEFT JOIN traces
    ON traces.trace_id = trace_keys.trace_id AND traces.keyed_at = trace_keys.keyed_at
WHERE trace_keys.trace_id = ANY(string_to_array(%(ids)s, ','))
UNION ALL
SELECT trace_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, span_id FROM quarantined_spans
WHERE trace_id = ANY(string_to_array(%(ids)s, ','))
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

# The columns of a trace delta (`trace_facts`' order, then the labels, then its busy
# time's line): the two hex columns (trace id, the concatenated span ids) as
# comma-separated strings, the others as binary arrays.
_DELTA_COLUMNS: Final = """
    string_to_array(%s, ','), string_to_array(%s, ','), %b::timestamptz[], %b::float8[],
    %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::bigint[], %b::text[],
    %b::bigint[], %b::text[], %b::text[], %b::text[], %b::bigint[], %b::text[], %b::text[],
    %b::text[], %b::text[], %b::text[], %b::text[], %b::boolean[], %b::text[], %b::text[],
    %b::text[], %b::text[]
) AS excluded (
    trace_id, span_ids, keyed_at, cost_usd, span_count, priced_count, unpriced_count,
    start_ns, end_ns, earliest_span_id, earliest_start_ns, earliest_service,
    earliest_environment, root_span_id, root_start_ns, root_transaction, root_service,
    root_environment, earliest_account, root_account, root_owner, contested,
    transaction_name, domain, environment, busy
)"""

# Traces no store holds yet (their keys are locked, and no row was read): plain rows,
# sent by binary COPY into the partitioned table (the cheapest way in, for the client
# and the server), with their labels. A row that exists after all is a unique
# violation, never a silent overwrite. `trace_facts`' order, first_seen and last_update
# after the sums, then the labels and the busy time.
_COPY_TRACES: Final = """
COPY traces (
    trace_id, span_ids, keyed_at, cost_usd, span_count, priced_count, unpriced_count,
    start_ns, end_ns, first_seen, last_update,
    earliest_span_id, earliest_start_ns, earliest_service, earliest_environment,
    root_span_id, root_start_ns, root_transaction, root_service, root_environment,
    earliest_account, root_account, root_owner, contested, transaction_name, domain,
    environment, busy
) FROM STDIN (FORMAT BINARY)
"""

_COPY_TYPES: Final = (
    ["text", "bytea", "timestamptz", "float8"]
    + ["int8"] * 5
    + ["timestamptz", "timestamptz", "text", "int8", "text", "text", "text", "int8"]
    + ["text"] * 6
    + ["bool"]
    + ["text"] * 4
)

# Traces a store holds: sums add; start least, end greatest; earliest and root the
# first by (start, span id); the new span ids and busy time appended. Every right-hand
# side reads the row as it was before. Labels are set afterwards, where they changed:
# RETURNING gives the row as it is now, with the labels as they were.
_ADD_TO_TRACES: Final = (
    """
UPDATE traces SET
    cost_usd = traces.cost_usd + excluded.cost_usd,
    span_count = traces.span_count + excluded.span_count,
    priced_count = traces.priced_count + excluded.priced_count,
    unpriced_count = traces.unpriced_count + excluded.unpriced_count,
    start_ns = least(traces.start_ns, excluded.start_ns),
    end_ns = greatest(traces.end_ns, excluded.end_ns),
    span_ids = traces.span_ids || decode(excluded.span_ids, 'hex'),
    busy = CASE WHEN excluded.busy IS NULL THEN traces.busy
        ELSE coalesce(traces.busy, '') || excluded.busy END,
    last_update = %s,
    """
    + merge_assignments(existing="traces.")
    + """
FROM unnest("""
    + _DELTA_COLUMNS
    + """
WHERE traces.trace_id = excluded.trace_id AND traces.keyed_at = excluded.keyed_at
RETURNING traces.trace_id, traces.cost_usd, traces.span_count, traces.first_seen,
    traces.earliest_service, traces.earliest_environment, traces.root_span_id,
    traces.root_transaction, traces.root_service, traces.root_environment,
    traces.transaction_name, traces.domain, traces.environment, traces.root_owner,
    traces.contested
"""
)

# The busy time of the traces relabelled, which moves with them (this write's line
# included: the last).
_RELABEL_TRACES: Final = """
UPDATE traces SET transaction_name = label.transaction_name, domain = label.domain,
    environment = label.environment
FROM unnest(%s::text[], %s::timestamptz[], %s::text[], %s::text[], %s::text[])
    AS label (trace_id, keyed_at, transaction_name, domain, environment)
WHERE traces.trace_id = label.trace_id AND traces.keyed_at = label.keyed_at
RETURNING traces.trace_id, traces.busy
"""

# With domains.owner, the charges of traces new to the store (see _COPY_TRACES).
_COPY_CHARGES: Final = """
COPY trace_charges (
    trace_id, keyed_at, domain, environment, first_seen, cost_usd, spans, unpriced_spans
) FROM STDIN (FORMAT BINARY)
"""

_COPY_CHARGE_TYPES: Final = [
    "text", "timestamptz", "text", "text", "timestamptz", "float8", "int8", "int8"
]  # fmt: skip

# With domains.owner: what each (trace, domain, environment) is charged, in key order.
# A row holding only the spans just added is new (a row has at least one span): the
# trace counts once per domain and environment. (xmax = 0, the usual test, is not
# available on a partitioned table.)
_ADD_CHARGES: Final = """
INSERT INTO trace_charges (
    trace_id, keyed_at, domain, environment, first_seen, cost_usd, spans, unpriced_spans
)
SELECT * FROM unnest(
    string_to_array(%s, ','), %b::timestamptz[], %b::text[], %b::text[], %b::timestamptz[],
    %b::float8[], %b::bigint[], %b::bigint[]
) AS charge (
    trace_id, keyed_at, domain, environment, first_seen, cost_usd, spans, unpriced_spans
)
ORDER BY trace_id, domain, environment
ON CONFLICT (trace_id, keyed_at, domain, environment) DO UPDATE SET
    cost_usd = trace_charges.cost_usd + excluded.cost_usd,
    spans = trace_charges.spans + excluded.spans,
    unpriced_spans = trace_charges.unpriced_spans + excluded.unpriced_spans
RETURNING trace_id, domain, environment, first_seen, spans
"""

# Every changed rollup row in one statement, in key order (the lock order of all writers).
_ADD_TO_ROLLUP: Final = """
INSERT INTO domain_hourly (hour, domain, environment, cost_usd, traces, spans)
SELECT * FROM unnest(
    %b::timestamptz[], %b::text[], %b::text[], %b::float8[], %b::bigint[], %b::bigint[]
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

# Every changed pod_busy row in one statement, in key order (the lock order of all
# writers, as the rollup's).
_ADD_TO_POD_BUSY: Final = """
INSERT INTO pod_busy (hour_ns, pod, domain, transaction_name, environment, seconds, segments,
    request_usd)
SELECT * FROM unnest(
    %b::bigint[], %b::text[], %b::text[], %b::text[], %b::text[], %b::float8[], %b::float8[],
    %b::float8[]
) AS change (hour_ns, pod, domain, transaction_name, environment, seconds, segments,
    request_usd)
ORDER BY hour_ns, pod, domain, transaction_name, environment
ON CONFLICT (hour_ns, pod, domain, transaction_name, environment) DO UPDATE SET
    seconds = pod_busy.seconds + excluded.seconds,
    segments = pod_busy.segments + excluded.segments,
    request_usd = pod_busy.request_usd + excluded.request_usd
"""

# A row busy time moved away from is deleted rather than kept with a rounding residue
# (the rows were locked by the statement before).
_DELETE_EMPTY_POD_BUSY: Final = """
DELETE FROM pod_busy USING unnest(%s::bigint[], %s::text[], %s::text[], %s::text[], %s::text[])
    AS moved (hour_ns, pod, domain, transaction_name, environment)
WHERE pod_busy.hour_ns = moved.hour_ns AND pod_busy.pod = moved.pod
    AND pod_busy.domain = moved.domain AND pod_busy.transaction_name = moved.transaction_name
    AND pod_busy.environment = moved.environment
    AND abs(pod_busy.seconds) < %s AND abs(pod_busy.segments) < %s
    AND abs(pod_busy.request_usd) < %s
"""

# Unpriced spans by (hour, environment, reason), in key order.
_ADD_UNPRICED_REASONS: Final = """
INSERT INTO unpriced_reasons (hour, environment, reason, spans)
SELECT * FROM unnest(%s::timestamptz[], %s::text[], %s::text[], %s::bigint[])
    AS counted (hour, environment, reason, spans)
ORDER BY hour, environment, reason
ON CONFLICT (hour, environment, reason) DO UPDATE
    SET spans = unpriced_reasons.spans + excluded.spans
"""


def write(
    cursor: Cursor,
    config: TotalsConfig,
    contributions: Sequence[SpanContribution],
    quarantined: Sequence[Quarantined],
    now: datetime,
) -> WriteResult:
    by_trace, unkeyable = _distinct(contributions, quarantined)
    trace_ids = sorted(by_trace)
    new_keys = _lock_traces(cursor, trace_ids, now)
    keyed_at = dict.fromkeys(new_keys, now)
    stored = _read_stored(cursor, [t for t in trace_ids if t not in keyed_at], keyed_at)
    # What is not stored yet: the accepted spans by trace, the quarantined ones.
    deltas: list[TraceDelta] = []
    span_ids: dict[str, str] = {}
    stored_now: dict[str, list[SpanContribution]] = {}
    quarantine: list[tuple[SpanContribution, str, datetime]] = []
    for trace_id in trace_ids:
        held = stored.get(trace_id)
        accepted: list[SpanContribution] = []
        for span_id, (span, reason) in by_trace[trace_id].items():
            if held is not None and held.holds(span_id):
                continue
            if reason is None:
                accepted.append(span)
            else:
                quarantine.append((span, reason, keyed_at[trace_id]))
        if accepted:
            deltas.append(trace_delta(trace_id, accepted))
            span_ids[trace_id] = "".join([span.span_id for span in accepted])
            stored_now[trace_id] = accepted
    quarantine += [(span, _UNKEYABLE, now) for span in unkeyable]
    unpriced = unpriced_counts(
        (span for accepted_spans in stored_now.values() for span in accepted_spans),
        ns_from_utc(now),
    )
    reasons = _insert_quarantined(cursor, quarantine, now)
    rollup = RollupChanges()
    busy = BusyChanges()
    if deltas:
        added_busy = stored_busy(
            (span for accepted_spans in stored_now.values() for span in accepted_spans), config
        )
        batch = _Batch(now, keyed_at, stored, span_ids, added_busy, rollup, busy)
        _add(cursor, config, batch, deltas)
        if config.owner_attribute is not None:
            _charge(cursor, config, batch, stored_now)
    for quarantine_reason in sorted(reasons):
        cursor.execute(
            "INSERT INTO quarantine_counts (reason, spans) VALUES (%s, %s)"
            " ON CONFLICT (reason) DO UPDATE"
            " SET spans = quarantine_counts.spans + excluded.spans",
            (quarantine_reason, reasons[quarantine_reason]),
        )
    _apply_rollup(cursor, rollup)
    if unpriced:
        cursor.execute(_ADD_UNPRICED_REASONS, _unpriced_columns(unpriced))
    _apply_busy(cursor, busy)
    accepted_count = sum(delta.span_count for delta in deltas)
    return WriteResult(
        accepted=accepted_count,
        duplicates=len(contributions) + len(quarantined) - accepted_count - reasons.total(),
        quarantined=dict(reasons),
        traces=len(deltas),
        cost_usd=sum(delta.cost_usd for delta in deltas),
    )


def _add(cursor: Cursor, config: TotalsConfig, batch: _Batch, deltas: Sequence[TraceDelta]) -> None:
    """Insert the new traces' rows and add each other delta to its (locked) row as
    `merge` does, set the labels that changed, and record the rollup changes: a
    delta, or a trace's whole move when its domain or environment changed. Likewise
    the busy time the batch adds: filed under the trace's labels, or all of the trace's
    moved when they changed. A handful of statements for the whole batch."""
    keyed_at, stored, span_ids = batch.keyed_at, batch.stored, batch.span_ids
    added_busy, rollup, busy = batch.added_busy, batch.rollup, batch.busy
    new: list[TraceDelta] = []
    existing: list[TraceDelta] = []
    for delta in deltas:
        held = stored.get(delta.trace_id)
        (existing if held is not None and held.row is not None else new).append(delta)
    if new:
        _insert(cursor, config, batch, new)
    if not existing:
        return
    owner_mode = config.owner_attribute is not None
    columns: list[Any] = [
        ",".join([delta.trace_id for delta in existing]),
        ",".join([span_ids[delta.trace_id] for delta in existing]),
    ]
    rows = []
    for delta in existing:
        sums, spans = trace_facts(delta, config)
        added = added_busy.get(delta.trace_id)
        rows.append(
            (
                keyed_at[delta.trace_id],
                *sums,
                *spans,
                *_new_labels(config, spans),
                encode(added) if added else None,
            )
        )
    columns += map(list, zip(*rows, strict=True))
    cursor.execute(_ADD_TO_TRACES, (batch.now, *columns))
    relabel: list[list[Any]] = [[] for _ in range(5)]
    moved: dict[str, tuple[Labels, Labels]] = {}
    deltas_by_trace = {delta.trace_id: delta for delta in existing}
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
        root_owner,
        contested,
    ) in cursor.fetchall():
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
            contested=contested,
        )
        before_labels = Labels(current, current_domain, current_environment)
        after_labels = Labels(transaction, domain, environment)
        if after_labels != before_labels:
            for column, value in zip(
                relabel,
                (trace_id, keyed_at[trace_id], transaction, domain, environment),
                strict=True,
            ):
                column.append(value)
            moved[trace_id] = (before_labels, after_labels)
        elif trace_id in added_busy:
            busy.record(before_labels, after_labels, [], added_busy[trace_id])
        before = stored[trace_id].row
        if before is None:  # only rows read under the lock are updated
            raise StoreError(f"totals store: trace {trace_id} was updated but not read")
        if not owner_mode:
            after = _placement(first_seen, domain, environment, cost, count)
            delta = deltas_by_trace[trace_id]
            rollup.record(_placement(*before), after, delta.cost_usd, delta.span_count)
    if relabel[0]:
        cursor.execute(_RELABEL_TRACES, relabel)
        for trace_id, text in cursor.fetchall():
            added = added_busy.get(trace_id, [])
            before_labels, after_labels = moved[trace_id]
            busy.record(before_labels, after_labels, _stored_before(text, added), added)


def _insert(cursor: Cursor, config: TotalsConfig, batch: _Batch, new: Sequence[TraceDelta]) -> None:
    """The rows of traces nothing was stored of, by binary COPY (see `_COPY_TRACES`),
    and their rollup and busy time."""
    now, keyed_at, span_ids = batch.now, batch.keyed_at, batch.span_ids
    added_busy, rollup, busy = batch.added_busy, batch.rollup, batch.busy
    now_ns = ns_from_utc(now)
    owner_mode = config.owner_attribute is not None
    with cursor.copy(_COPY_TRACES) as copy:
        copy.set_types(_COPY_TYPES)
        for delta in new:
            sums, spans = trace_facts(delta, config)
            transaction, domain, environment = _new_labels(config, spans)
            added = added_busy.get(delta.trace_id)
            copy.write_row(
                (
                    delta.trace_id,
                    bytes.fromhex(span_ids[delta.trace_id]),
                    keyed_at[delta.trace_id],
                    *sums,
                    now,
                    now,
                    *spans,
                    transaction,
                    domain,
                    environment,
                    encode(added) if added else None,
                )
            )
            if added:
                busy.record(None, Labels(transaction, domain, environment), [], added)
            if not owner_mode:  # with domains.owner, spans are charged (_charge)
                after = placement(now_ns, domain, environment, delta.cost_usd, delta.span_count)
                rollup.record(None, after, delta.cost_usd, delta.span_count)


def _new_labels(
    config: TotalsConfig, spans: TraceSpans
) -> tuple[str | None, str | None, str | None]:
    """The (transaction, domain, environment) of a row that is this delta alone: a new
    row's labels (an existing row's are set after its update, where they changed)."""
    return labels(
        config,
        root_span_id=spans.root_span_id,
        root_transaction=spans.root_transaction,
        root_service=spans.root_service,
        root_environment=spans.root_environment,
        earliest_service=spans.earliest_service,
        earliest_environment=spans.earliest_environment,
        current_transaction=None,
        root_owner=spans.root_owner,
        contested=spans.contested,
    )


def _lock_traces(cursor: Cursor, trace_ids: list[str], now: datetime) -> list[str]:
    """Lock each trace's key row, in trace id order, creating those missing (keyed
    `now`); the trace ids whose keys were created."""
    if not trace_ids:
        return []
    cursor.execute(_LOCK_TRACES, (now, ",".join(trace_ids)))
    return [trace_id for (trace_id,) in cursor.fetchall()]


def _distinct(
    contributions: Sequence[SpanContribution], quarantined: Sequence[Quarantined]
) -> tuple[dict[str, dict[str, tuple[SpanContribution, str | None]]], list[SpanContribution]]:
    """The first span of each (trace id, span id), accepted ones first, by trace id and
    span id, each with its quarantine reason (None: accepted); and apart, the spans whose
    ids cannot be keyed (deduplicated in quarantined_spans only)."""
    by_trace: dict[str, dict[str, tuple[SpanContribution, str | None]]] = {}
    for span in contributions:
        members = by_trace.get(span.trace_id)
        if members is None:
            by_trace[span.trace_id] = {span.span_id: (span, None)}
        elif span.span_id not in members:
            members[span.span_id] = (span, None)
    unkeyable: dict[tuple[str, str], SpanContribution] = {}
    for entry in quarantined:
        span = entry.contribution
        if entry.reason == _UNKEYABLE:
            unkeyable.setdefault(span.key, span)
        else:
            by_trace.setdefault(span.trace_id, {}).setdefault(span.span_id, (span, entry.reason))
    return by_trace, list(unkeyable.values())


class _Stored:
    """What the store holds of one trace: its row (the values its rollup row was
    computed from), its span ids, its quarantined span ids."""

    __slots__ = ("quarantined", "row", "span_ids")

    def __init__(self) -> None:
        self.row: tuple[datetime, str | None, str | None, float, int] | None = None
        self.span_ids: frozenset[bytes] = frozenset()
        self.quarantined: set[str] = set()

    def holds(self, span_id: str) -> bool:
        return span_id in self.quarantined or bytes.fromhex(span_id) in self.span_ids


class _Batch(NamedTuple):
    """What a write knows of its batch while it adds it: when (`now`), each trace's
    key month, what was stored of it before, the new accepted span ids (hex,
    concatenated) and busy time by trace; and the rollup and busy changes it gathers,
    applied at the end."""

    now: datetime
    keyed_at: dict[str, datetime]
    stored: dict[str, _Stored]
    span_ids: dict[str, str]
    added_busy: dict[str, list[StoredBusy]]
    rollup: RollupChanges
    busy: BusyChanges


def _read_stored(
    cursor: Cursor, trace_ids: list[str], keyed_at: dict[str, datetime]
) -> dict[str, _Stored]:
    """What the store holds of each trace whose (locked) key existed before; the key's
    month goes into `keyed_at`."""
    if not trace_ids:
        return {}
    cursor.execute(_STORED, {"ids": ",".join(trace_ids)})
    stored: dict[str, _Stored] = {}
    rows = cursor.fetchall()
    for trace_id, month, ids, first_seen, domain, environment, cost, count, quarantined in rows:
        held = stored.get(trace_id)
        if held is None:
            held = stored[trace_id] = _Stored()
        if quarantined is not None:
            held.quarantined.add(quarantined)
            continue
        keyed_at[trace_id] = month
        if ids is not None:
            held.row = (first_seen, domain, environment, cost, count)
            held.span_ids = frozenset(ids[i : i + 8] for i in range(0, len(ids), 8))
    missing = [trace_id for trace_id in trace_ids if trace_id not in keyed_at]
    if missing:
        raise StoreError(f"totals store: trace keys locked but not found: {missing[:3]}")
    return stored


def _insert_quarantined(
    cursor: Cursor, spans: Sequence[tuple[SpanContribution, str, datetime]], now: datetime
) -> Counter[str]:
    """Insert each (span, reason, keyed_at) unless stored; the spans inserted, by reason."""
    if not spans:
        return Counter()
    columns: list[list[Any]] = [[] for _ in range(14)]
    for span, reason, span_keyed_at in spans:
        row = (span.trace_id, span.span_id, span_keyed_at, reason, *span_facts(span))
        for column, value in zip(columns, row, strict=True):
            column.append(value)
    cursor.execute(_INSERT_QUARANTINED, (now, *columns))
    return Counter(reason for (reason,) in cursor.fetchall())


def _placement(
    first_seen: datetime, domain: str | None, environment: str | None, cost: float, spans: int
) -> Placement:
    return placement(ns_from_utc(first_seen), domain, environment, cost, spans)


def _charge(
    cursor: Cursor,
    config: TotalsConfig,
    batch: _Batch,
    spans_by_trace: dict[str, list[SpanContribution]],
) -> None:
    """With ``domains.owner``: charge each trace's new spans to their owners' domains
    (`charges`), and add them to the rollup; a charge never moves. A trace without a row
    before this write has no charges yet: its rows go in by binary COPY, as new traces
    do; the others add to theirs (one statement)."""
    now, keyed_at, stored, rollup = batch.now, batch.keyed_at, batch.stored, batch.rollup
    fresh: list[tuple[str, datetime, str, str, datetime, float, int, int]] = []
    known: list[tuple[str, datetime, str, str, datetime, float, int, int]] = []
    added: dict[tuple[str, str, str], Charge] = {}
    by_trace = charges((span for spans in spans_by_trace.values() for span in spans), config)
    for trace_id, trace_charges in by_trace.items():
        held = stored.get(trace_id)
        existing = held is not None and held.row is not None
        first_seen = held.row[0] if held is not None and held.row is not None else now
        for charge in trace_charges:
            added[(trace_id, charge.domain, charge.environment)] = charge
            (known if existing else fresh).append(
                (trace_id, keyed_at[trace_id], charge.domain, charge.environment, first_seen,
                 charge.cost_usd, charge.spans, charge.unpriced_spans)
            )  # fmt: skip
    if fresh:
        with cursor.copy(_COPY_CHARGES) as copy:
            copy.set_types(_COPY_CHARGE_TYPES)
            for row in fresh:
                copy.write_row(row)
        for _, _, domain, environment, first_seen, cost, spans, _ in fresh:
            key = placement(ns_from_utc(first_seen), domain, environment, 0.0, 0)
            rollup.add(key, cost, 1, spans)
    if not known:
        return
    columns: list[Any] = [list(column) for column in zip(*known, strict=True)]
    columns[0] = ",".join(columns[0])  # hex ids: split by the server (see _STORED)
    cursor.execute(_ADD_CHARGES, columns)
    for trace_id, domain, environment, first_seen, spans in cursor.fetchall():
        charge = added[(trace_id, domain, environment)]
        key = placement(ns_from_utc(first_seen), domain, environment, 0.0, 0)
        rollup.add(key, charge.cost_usd, 1 if spans == charge.spans else 0, charge.spans)


def _unpriced_columns(counts: list[tuple[tuple[int, str, str], int]]) -> list[list[Any]]:
    """`unpriced_counts` as the columns `_ADD_UNPRICED_REASONS` takes."""
    return [
        [utc_from_ns(hour_ns) for (hour_ns, _, _), _ in counts],
        [environment for (_, environment, _), _ in counts],
        [reason for (_, _, reason), _ in counts],
        [spans for _, spans in counts],
    ]


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


def _stored_before(text: str | None, added: list[StoredBusy]) -> list[StoredBusy]:
    """A trace's busy time before this write, from its ``busy`` after it: this write
    appended `added` as the last line, under the trace's lock."""
    if not added:
        return decode(text)
    line = encode(added)
    if text is None or not text.endswith(line):
        raise StoreError("totals store: a trace's busy time lacks the line just added")
    return decode(text[: -len(line)])


def _apply_busy(cursor: Cursor, busy: BusyChanges) -> None:
    """Add `busy`'s changes to ``pod_busy`` (in key order, one statement), drop the rows
    busy time moved away from entirely, and mark the hours touched."""
    changes: list[list[Any]] = [[] for _ in range(8)]
    emptied: list[list[Any]] = [[] for _ in range(5)]
    for key, seconds, segments, request_usd in busy:
        for column, value in zip(changes, (*key, seconds, segments, request_usd), strict=True):
            column.append(value)
        if seconds < 0 or segments < 0 or request_usd < 0:  # moved away: maybe empty now
            for column, value in zip(emptied, key, strict=True):
                column.append(value)
    if not changes[0]:
        return
    cursor.execute(_ADD_TO_POD_BUSY, changes)
    if emptied[0]:
        cursor.execute(_DELETE_EMPTY_POD_BUSY, (*emptied, RESIDUE, RESIDUE, RESIDUE))
    postgres_allocation.mark_dirty(cursor, sorted(busy.hours))


def attribute_orphans(
    cursor: Cursor, config: TotalsConfig, now: datetime, grace: timedelta, unattributed_name: str
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
        " span_count, busy FROM traces"
        " WHERE trace_id = ANY(%s) AND transaction_name IS NULL ORDER BY trace_id",
        (candidates,),
    )
    rollup = RollupChanges()
    busy = BusyChanges()
    named = 0
    for (
        trace_id,
        keyed_at,
        first_seen,
        service,
        environment,
        cost,
        spans,
        stored_text,
    ) in cursor.fetchall():
        named_as = orphan_labels(
            config, first_seen, service, now=now, grace=grace, unattributed_name=unattributed_name
        )
        if named_as is None:
            continue
        transaction, domain = named_as
        cursor.execute(
            "UPDATE traces SET transaction_name = %s, domain = %s"
            " WHERE trace_id = %s AND keyed_at = %s",
            (transaction, domain, trace_id, keyed_at),
        )
        if config.owner_attribute is None:  # else charges, which never move
            before = _placement(first_seen, None, environment, cost, spans)
            after = _placement(first_seen, domain, environment, cost, spans)
            rollup.record(before, after, 0.0, 0)
        if stored_text:
            busy.record(
                Labels(None, None, environment),
                Labels(transaction, domain, environment),
                decode(stored_text),
                [],
            )
        named += 1
    _apply_rollup(cursor, rollup)
    _apply_busy(cursor, busy)
    if named:
        logger.info("named %s traces without root %r", named, unattributed_name)
    return named
