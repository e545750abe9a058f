"""What the SQL stores share, free of any database: how a trace row merges,
what a trace is labelled after a write, and the per-domain rollup bookkeeping.

Each store only says how to run it in its own SQL dialect.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

from spancost.store.base import SpendRow
from spancost.totals.aggregate import SpanContribution, TraceDelta, ns_from_utc
from spancost.totals.naming import (
    CONTESTED,
    TotalsConfig,
    TraceState,
    owner_domain,
    resolve_transaction,
    trace_domain,
    transaction_name,
)

__all__ = [
    "ALLOCATION_USAGE_TABLES",
    "DEFAULT_RETENTION_MONTHS",
    "HOUR_NS",
    "PENDING_DOMAIN",
    "UNKNOWN_ENVIRONMENT",
    "Charge",
    "Placement",
    "RollupChanges",
    "TraceSpans",
    "add_months",
    "charges",
    "hour_window",
    "labels",
    "merge_assignments",
    "month_start",
    "net_spend",
    "orphan_labels",
    "placement",
    "retention_cutoff",
    "span_facts",
    "spend_rows",
    "spend_window",
    "trace_facts",
    "unpriced_counts",
]

HOUR_NS: Final = 3600 * 10**9
DEFAULT_RETENTION_MONTHS: Final = 13
"""Whole months kept before the current one (``spancost db maintain``; the sink refuses
spans that end before them as ``past``)."""
ALLOCATION_USAGE_TABLES: Final = ("pod_busy", "pod_usage", "node_usage", "allocation_dirty")
"""What retention deletes of the allocation, by ``hour_ns`` (its usage: what repricing
would need); its results (``allocated_*``) stay, like the hourly rollup."""
PENDING_DOMAIN: Final = ""
"""The rollup's domain of traces whose root has not arrived and that are not yet unattributed."""
UNKNOWN_ENVIRONMENT: Final = ""
"""The rollup's environment of traces without ``deployment.environment``."""

_EARLIEST_COLUMNS: Final = (
    "earliest_span_id",
    "earliest_start_ns",
    "earliest_service",
    "earliest_environment",
    "earliest_account",
)
_ROOT_COLUMNS: Final = (
    "root_start_ns",
    "root_transaction",
    "root_service",
    "root_environment",
    "root_account",
    "root_owner",
    "root_span_id",
)


def merge_assignments(existing: str) -> str:
    """The ``SET`` items of the trace upsert that keep the earliest span and the root:
    each the first by (start, span id), a new root only replacing an absent or a later
    one; and that mark the trace contested once it holds roots of two owners (as
    `spancost.totals.merge` does). `existing` qualifies the stored row's columns
    (``"traces."``, or ``""``)."""
    earlier = (
        "(excluded.earliest_start_ns, excluded.earliest_span_id)"
        f" < ({existing}earliest_start_ns, {existing}earliest_span_id)"
    )
    root_earlier = (
        f"excluded.root_span_id IS NOT NULL AND ({existing}root_span_id IS NULL"
        " OR (excluded.root_start_ns, excluded.root_span_id)"
        f" < ({existing}root_start_ns, {existing}root_span_id))"
    )

    def take_if(condition: str, columns: Sequence[str]) -> list[str]:
        return [
            f"{column} = CASE WHEN {condition} THEN excluded.{column} ELSE {existing}{column} END"
            for column in columns
        ]

    contested = (
        f"contested = ({existing}contested OR excluded.contested"
        f" OR ({existing}root_span_id IS NOT NULL AND excluded.root_span_id IS NOT NULL"
        f" AND {existing}root_owner IS DISTINCT FROM excluded.root_owner))"
    )
    return ",\n    ".join(
        [*take_if(earlier, _EARLIEST_COLUMNS), *take_if(root_earlier, _ROOT_COLUMNS), contested]
    )


class TraceSpans(NamedTuple):
    """A delta's earliest span and root (None without one), as a trace row's columns."""

    earliest_span_id: str
    earliest_start_ns: int
    earliest_service: str | None
    earliest_environment: str | None
    root_span_id: str | None
    root_start_ns: int | None
    root_transaction: str | None
    root_service: str | None
    root_environment: str | None
    earliest_account: str | None
    root_account: str | None
    root_owner: str | None
    contested: bool


def trace_facts(
    delta: TraceDelta, config: TotalsConfig
) -> tuple[tuple[float, int, int, int, int, int], TraceSpans]:
    """What a delta adds to its trace's row, in the column order both stores use: the
    sums (cost_usd, span_count, priced_count, unpriced_count, start_ns, end_ns), then,
    after the row's first-seen and last-update times, its spans' facts."""
    root, earliest = delta.root, delta.earliest
    sums = (
        delta.cost_usd,
        delta.span_count,
        delta.priced_count,
        delta.unpriced_count,
        delta.start_ns,
        delta.end_ns,
    )
    if root is None:
        return sums, TraceSpans(
            earliest.span_id,
            earliest.start_ns,
            earliest.service,
            earliest.environment,
            None,
            None,
            None,
            None,
            None,
            earliest.account,
            None,
            None,
            delta.contested,
        )
    return sums, TraceSpans(
        earliest.span_id,
        earliest.start_ns,
        earliest.service,
        earliest.environment,
        root.span_id,
        root.start_ns,
        transaction_name(root, config),
        root.service,
        root.environment,
        earliest.account,
        root.account,
        root.owner,
        delta.contested,
    )


class Charge(NamedTuple):
    """What a trace's spans of one paying domain and environment add (owner mode:
    ``domains.owner``, where every span is charged to its owner's domain)."""

    domain: str
    environment: str
    cost_usd: float
    spans: int
    unpriced_spans: int


def charges(spans: Iterable[SpanContribution], config: TotalsConfig) -> dict[str, list[Charge]]:
    """Per trace id, its accepted spans grouped by the domain that pays for them
    (`owner_domain` of each span's owner) and their environment, in key order. One
    pass over a whole batch (the store's hot path, with ``domains.owner``)."""
    groups: dict[tuple[str, str | None, str | None], tuple[list[float], list[int]]] = {}
    for span in spans:
        key = (span.trace_id, span.owner, span.environment)
        group = groups.get(key)
        if group is None:
            group = groups[key] = ([], [0])
        group[0].append(span.cost_usd)
        if span.unpriced_reason is not None:
            group[1][0] += 1
    merged: dict[tuple[str, str, str], tuple[list[float], int]] = {}
    for (trace_id, owner, environment), (costs, unpriced) in groups.items():
        key = (trace_id, owner_domain(config, owner), environment or UNKNOWN_ENVIRONMENT)
        known = merged.get(key)
        merged[key] = (costs, unpriced[0]) if known is None else (
            known[0] + costs, known[1] + unpriced[0]
        )  # fmt: skip
    result: dict[str, list[Charge]] = {}
    for (trace_id, domain, environment), (costs, unpriced_spans) in sorted(merged.items()):
        result.setdefault(trace_id, []).append(
            Charge(domain, environment, math.fsum(costs), len(costs), unpriced_spans)
        )
    return result


def unpriced_counts(
    accepted: Iterable[SpanContribution], now_ns: int
) -> list[tuple[tuple[int, str, str], int]]:
    """The unpriced spans a write stored, counted by (the hour it was stored in, the
    environment or ``''``, cost.unpriced_reason), in key order."""
    hour_ns = now_ns // HOUR_NS * HOUR_NS
    counts: dict[tuple[int, str, str], int] = {}
    for span in accepted:
        reason = span.unpriced_reason
        if reason is not None:
            key = (hour_ns, span.environment or UNKNOWN_ENVIRONMENT, reason)
            counts[key] = counts.get(key, 0) + 1
    return sorted(counts.items())


def span_facts(span: SpanContribution) -> tuple[object, ...]:
    """What a store keeps of a quarantined span besides its ids, key time and reason, in
    the column order both stores use: cost_usd, unpriced_reason, is_root, start_ns,
    end_ns, name, service, environment, account, transaction_attribute."""
    return (
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


def labels(
    config: TotalsConfig,
    *,
    root_span_id: str | None,
    root_transaction: str | None,
    root_service: str | None,
    root_environment: str | None,
    earliest_service: str | None,
    earliest_environment: str | None,
    current_transaction: str | None,
    root_owner: str | None = None,
    contested: bool = False,
) -> tuple[str | None, str | None, str | None]:
    """A trace's (transaction, domain, environment) after a write: the root's when it
    has arrived (``(contested)`` when roots of two owners did); before that, an orphan
    keeps the name it was given (or none yet). The domain is `trace_domain`'s."""
    transaction = root_transaction if root_transaction is not None else current_transaction
    has_root = root_span_id is not None
    if contested and has_root:
        transaction = CONTESTED
    service = root_service if has_root else earliest_service
    environment = root_environment if has_root else earliest_environment
    domain = (
        None
        if transaction is None
        else trace_domain(
            config,
            transaction=transaction,
            service=service,
            has_root=has_root,
            owner=root_owner,
            contested=contested,
        )
    )
    return transaction, domain, environment


def orphan_labels(
    config: TotalsConfig,
    first_seen: datetime,
    service: str | None,
    *,
    now: datetime,
    grace: timedelta,
    unattributed_name: str,
) -> tuple[str, str] | None:
    """The (transaction, domain) `attribute_orphans` gives a trace still without root,
    first seen at `first_seen`, its earliest span from `service`: the unattributed name
    once `grace` has passed (`resolve_transaction`), and its domain as a trace without
    root; None while it may still wait for its root."""
    transaction = resolve_transaction(
        TraceState(first_seen=first_seen), now, grace, unattributed_name
    )
    if transaction is None:
        return None
    domain = trace_domain(
        config,
        transaction=transaction,
        service=service,
        has_root=False,
        owner=None,
        contested=False,
    )
    return transaction, domain


def hour_window(since: datetime, until: datetime) -> tuple[int, int]:
    """The whole UTC hours, as Unix nanoseconds [start, end), that a window from `since`
    to `until` covers: `since` rounded down and `until` rounded up to the hour.

    The rollup buckets traces by the hour they were first seen, so a query of the trace
    rows over these bounds and one of the rollup's buckets from ``start`` to before
    `until` count the same traces.
    """
    start = ns_from_utc(since) // HOUR_NS * HOUR_NS
    end = -(-ns_from_utc(until) // HOUR_NS) * HOUR_NS
    return start, max(start, end)


class SpendWindow(NamedTuple):
    """An exact window of first-seen times as the hourly rollup and the trace rows answer
    for it: the rollup's hours [hours_start, hours_end), plus or minus (`sign`) the
    trace rows first seen in each of `edges` ([start, end) ns, `sign`)."""

    hours_start: int
    hours_end: int
    edges: tuple[tuple[int, int, int], ...]


_HALF_HOUR_NS: Final = HOUR_NS // 2


def spend_window(since: datetime, until: datetime) -> SpendWindow:
    """The traces first seen from `since` to `until`, both included, exactly, reading as
    few trace rows as it can: the rollup's hours from the one `since` falls in to the one
    `until` falls in, then

    - at the start, the trace rows of the part of its hour on the shorter side of
      `since`: those before it taken away, or (the hour left out) those after it added;
    - at the end, the trace rows first seen after `until` in its hour taken away: none
      when `until` is now, which is how the guard asks (nothing is first seen later).

    So at most half an hour of trace rows is read. A window within one hour is all
    trace rows."""
    start, end = ns_from_utc(since), ns_from_utc(until) + 1
    if end <= start:
        return SpendWindow(start, start, ())
    start_hour = start // HOUR_NS * HOUR_NS
    end_hour = (end - 1) // HOUR_NS * HOUR_NS
    if start_hour == end_hour:
        return SpendWindow(start_hour, start_hour, ((start, end, 1),))
    edges: list[tuple[int, int, int]] = []
    hours_start = start_hour
    if start - start_hour <= _HALF_HOUR_NS:
        edges.append((start_hour, start, -1))
    else:
        hours_start = start_hour + HOUR_NS
        edges.append((start, hours_start, 1))
    edges.append((end, end_hour + HOUR_NS, -1))
    return SpendWindow(
        hours_start, end_hour + HOUR_NS, tuple((a, b, sign) for a, b, sign in edges if a < b)
    )


def net_spend(rows: Iterable[tuple[str, float, int]]) -> dict[str, float]:
    """Cost by domain from `spend_window`'s parts, (domain, cost, traces) each, signed:
    a domain whose traces all fell out of the window is left out."""
    cost: dict[str, float] = {}
    traces: dict[str, int] = {}
    for domain, amount, count in rows:
        cost[domain] = cost.get(domain, 0.0) + amount
        traces[domain] = traces.get(domain, 0) + count
    return {domain: max(0.0, amount) for domain, amount in cost.items() if traces[domain] > 0}


def spend_rows(rows: Iterable[Sequence[Any]]) -> list[SpendRow]:
    """`SpendRow`s of (name, cost, traces, spans) rows as either store sums them
    (PostgreSQL's sums of bigint are numeric)."""
    return [
        SpendRow(name, float(cost), int(traces), int(spans)) for name, cost, traces, spans in rows
    ]


def month_start(moment: datetime) -> datetime:
    """The first instant of `moment`'s UTC month (`moment` must be aware)."""
    if moment.tzinfo is None:
        raise ValueError(f"datetime must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return moment.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def add_months(month: datetime, months: int) -> datetime:
    """`month` (a month's first instant) moved by `months`, either way."""
    index = month.year * 12 + month.month - 1 + months
    return month.replace(year=index // 12, month=index % 12 + 1)


def retention_cutoff(now: datetime, retention_months: int) -> datetime:
    """The first instant kept: the current UTC month and `retention_months` whole months
    before it are kept, everything first stored earlier goes."""
    return add_months(month_start(now), -retention_months)


RollupKey = tuple[int, str, str]


class Placement(NamedTuple):
    """Where a trace sits in the hourly rollup, and what it put there.

    A named tuple rather than a frozen dataclass: a write builds one or two per trace,
    and a tuple is several times cheaper to build."""

    hour_ns: int
    domain: str
    environment: str
    cost_usd: float
    spans: int

    @property
    def key(self) -> RollupKey:
        return (self.hour_ns, self.domain, self.environment)


def placement(
    first_seen_ns: int, domain: str | None, environment: str | None, cost: float, spans: int
) -> Placement:
    """A trace's rollup row: the UTC hour it was first seen, its current domain and
    environment (pending / unknown when it has none yet), and its totals."""
    return Placement(
        hour_ns=first_seen_ns // HOUR_NS * HOUR_NS,
        domain=PENDING_DOMAIN if domain is None else domain,
        environment=UNKNOWN_ENVIRONMENT if environment is None else environment,
        cost_usd=cost,
        spans=spans,
    )


class RollupChanges:
    """One transaction's rollup changes, summed per row and applied at its end.

    Applying them in key order keeps two writers from locking the same rollup rows
    in opposite orders; a row whose trace count went down may be left empty, and
    the store deletes it rather than keep a rounding residue of cost.
    """

    def __init__(self) -> None:
        self._changes: dict[RollupKey, tuple[float, int, int]] = {}

    def add(self, row: Placement, cost: float, traces: int, spans: int) -> None:
        old_cost, old_traces, old_spans = self._changes.get(row.key, (0.0, 0, 0))
        self._changes[row.key] = (old_cost + cost, old_traces + traces, old_spans + spans)

    def record(self, before: Placement | None, after: Placement, cost: float, spans: int) -> None:
        """A trace got `cost` and `spans` more: add them to its row, or, when its row
        changed (domain, environment), move its whole totals to the new row."""
        if before is not None and before.key == after.key:
            self.add(after, cost, 0, spans)
            return
        if before is not None:
            self.add(before, -before.cost_usd, -1, -before.spans)
        self.add(after, after.cost_usd, 1, after.spans)

    def __iter__(self) -> Iterator[tuple[RollupKey, float, int, int]]:
        """(key, cost, traces, spans) per changed row, in key order."""
        for key in sorted(self._changes):
            cost, traces, spans = self._changes[key]
            yield key, cost, traces, spans
