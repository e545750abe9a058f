"""Per-trace cost totals as idempotent deltas: span contributions in, per-trace sums out.

Pure: plain dataclasses and ``now`` in, decisions out; no protobuf, no database.
`spancost.totals.otlp.contributions` turns an OTLP batch into `SpanContribution`
values; a store then does, in one database transaction per batch::

    accepted, quarantined = split(contributions, now, max_skew, oldest)
    inserted = <insert every contribution keyed by (trace_id, span_id),
                ON CONFLICT DO NOTHING; quarantined ones with their reason>
    for trace_id, delta in fold(<the accepted ones actually inserted>).items():
        <add delta to the trace's row: sums add, start = least, root kept if known>

Every span therefore adds to its trace's totals once, whatever the replays (a
replayed batch inserts nothing new, so it adds nothing) and however many
collectors hold parts of the trace (their deltas add, never overwrite).

Precision: `TraceDelta.cost_usd` is ``math.fsum`` of its spans' ``cost.usd``,
the correctly rounded sum (at most half an ulp, 1.1e-16 relative, per delta).
Stores add deltas with ordinary floating point; since every cost is >= 0 there
is no cancellation, so n additions err by at most about n x 1.1e-16 relative:
under the 1e-9 the totals promise for fewer than nine million deltas per sum.
``Decimal`` would buy nothing here: the inputs are already doubles, so the only
error is in the additions, and fsum plus non-negative terms keep it far below 1e-9.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Final, Literal, NamedTuple

__all__ = [
    "QUARANTINE_REASONS",
    "QuarantineReason",
    "Quarantined",
    "SpanContribution",
    "TraceDelta",
    "fold",
    "merge",
    "ns_from_duration",
    "ns_from_utc",
    "split",
    "trace_delta",
    "utc_from_ns",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_NS_PER_US: Final = 1000
_MICROSECOND: Final = timedelta(microseconds=1)
_TRACE_ID_HEX: Final = 32
_SPAN_ID_HEX: Final = 16

QuarantineReason = Literal[
    "invalid_id", "missing_time", "end_before_start", "future", "past", "unstorable"
]
QUARANTINE_REASONS: Final[tuple[QuarantineReason, ...]] = (
    "invalid_id",
    "missing_time",
    "end_before_start",
    "future",
    "past",
    "unstorable",
)
"""Why a span is kept out of the totals, in the order `split` checks them; ``unstorable``
is the sink's: a span whose data the store refused (see `spancost.plugins.totals`)."""


def ns_from_utc(moment: datetime) -> int:
    """Nanoseconds since the Unix epoch of an aware `moment` (exact: integer arithmetic)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"datetime must be timezone-aware (UTC), got naive {moment.isoformat()}")
    return (moment - EPOCH) // _MICROSECOND * _NS_PER_US


def utc_from_ns(ns: int) -> datetime:
    """The UTC datetime of `ns` nanoseconds since the epoch (truncated to microseconds)."""
    return EPOCH + timedelta(microseconds=ns // _NS_PER_US)


def ns_from_duration(duration: timedelta) -> int:
    """Nanoseconds in `duration` (exact)."""
    return duration // _MICROSECOND * _NS_PER_US


class SpanContribution(NamedTuple):
    """What one span adds to its trace's totals, and the facts that name the trace.

    Keyed by (`trace_id`, `span_id`): a store inserts each key once, so a span
    delivered twice contributes once.

    A named tuple, not a frozen dataclass: the sink builds one for every span it
    stores, and a frozen dataclass's ``__init__`` (one ``object.__setattr__`` per
    field) took 1.9 µs of it against 0.3 µs here (issue 15). Immutable all the same;
    change one with ``_replace``.
    """

    trace_id: str
    """32 lower-case hex digits (other lengths, or all zeros, are quarantined as ``invalid_id``)."""
    span_id: str
    """16 lower-case hex digits."""
    start_ns: int
    """Start, nanoseconds since the Unix epoch (UTC); 0 when unset."""
    end_ns: int
    cost_usd: float = 0.0
    """``cost.usd``; 0.0 when the span is unpriced."""
    unpriced_reason: str | None = None
    """None when priced; else ``cost.unpriced_reason``, or ``cost_missing`` (no cost
    attribute at all) or ``cost_invalid`` (a ``cost.usd`` that is not a finite double >= 0)."""
    is_root: bool = False
    """The span has no parent: the root of its trace."""
    name: str = ""
    """The span's name."""
    service: str | None = None
    """Resource ``service.name``."""
    environment: str | None = None
    """``deployment.environment.name`` (or ``deployment.environment``), normalized."""
    account: str | None = None
    """Resource ``cloud.account.id``."""
    transaction_attribute: str | None = None
    """On a root span: the configured transaction attribute (span, else resource), if a string."""
    owner: str | None = None
    """Who sent the span: the resource's ``domains.owner.attribute`` (e.g. the Kubernetes
    namespace the collector derived from the connection), if configured and a string."""
    pod: str | None = None
    """Where it ran: the resource's ``k8s.pod.uid`` (added by ``k8s_attributes``), if a
    string; what the allocation charges a segment's busy time to."""
    segment: bool = False
    """The span is a local root: the start of a service segment (no parent, a remote
    parent, or, when the span flags do not say, a ``SERVER`` or ``CONSUMER`` span)."""
    weight: float = 1.0
    """How many spans it stands for: its sampling's adjusted count (``tracestate``
    ``ot=th:``), 1 when not sampled by probability."""
    compute: bool = False
    """Its price is a node's compute (``cost.model`` ``ec2.*``): an estimate the
    allocation replaces by the node's cost split; other prices (Lambda, Fargate, LLM
    tokens, rules) are per request and added as they are."""

    @property
    def key(self) -> tuple[str, str]:
        """What a store deduplicates on."""
        return (self.trace_id, self.span_id)

    @property
    def priced(self) -> bool:
        return self.unpriced_reason is None

    @property
    def start_utc(self) -> datetime:
        return utc_from_ns(self.start_ns)

    @property
    def end_utc(self) -> datetime:
        return utc_from_ns(self.end_ns)


@dataclass(frozen=True, slots=True)
class Quarantined:
    """A span kept out of the totals, and why."""

    contribution: SpanContribution
    reason: QuarantineReason


def _quarantine_reason(
    contribution: SpanContribution, now_ns: int, skew_ns: int, oldest_ns: int | None
) -> QuarantineReason | None:
    trace_id, span_id = contribution.trace_id, contribution.span_id
    if (
        len(trace_id) != _TRACE_ID_HEX
        or len(span_id) != _SPAN_ID_HEX
        or not trace_id.strip("0")
        or not span_id.strip("0")
    ):
        return "invalid_id"
    start, end = contribution.start_ns, contribution.end_ns
    if start <= 0 or end <= 0:
        return "missing_time"
    if end < start:
        return "end_before_start"
    if end - now_ns > skew_ns:  # end >= start: the start is checked too
        return "future"
    if oldest_ns is not None and end < oldest_ns:
        return "past"
    return None


def split(
    contributions: Iterable[SpanContribution],
    now: datetime,
    max_skew: timedelta,
    oldest: datetime | None = None,
) -> tuple[list[SpanContribution], list[Quarantined]]:
    """The contributions that may enter the totals, and the others with their reason.

    A span is accepted when its ids are valid, both its timestamps are set and in
    order, it ends no more than `max_skew` after `now` (the ingest time; exactly
    `max_skew` is accepted, a nanosecond more is ``future``) and, with `oldest`, it
    ends at or after `oldest` (else ``past``). A span is judged by its end, so a
    long job that ends now counts however long ago it started, and spans a queue
    held through an outage count however late they come, back to `oldest` (the
    sink's retention horizon). Every contribution lands in exactly one of the two
    lists, in input order.
    """
    now_ns = ns_from_utc(now)
    skew_ns = ns_from_duration(max_skew)
    if skew_ns < 0:
        raise ValueError(f"max_skew must not be negative, got {max_skew}")
    oldest_ns = None if oldest is None else ns_from_utc(oldest)
    accepted: list[SpanContribution] = []
    quarantined: list[Quarantined] = []
    for contribution in contributions:
        reason = _quarantine_reason(contribution, now_ns, skew_ns, oldest_ns)
        if reason is None:
            accepted.append(contribution)
        else:
            quarantined.append(Quarantined(contribution, reason))
    return accepted, quarantined


@dataclass(frozen=True, slots=True)
class TraceDelta:
    """What a set of distinct spans of one trace adds to the trace's row.

    Sums add (`merge`); `start_ns`/`end_ns` take the least/greatest; `root` and
    `earliest` take the span that sorts first by (start, span id), so merging is
    commutative and associative and its result does not depend on which
    collector or batch delivered which span.
    """

    trace_id: str
    cost_usd: float
    span_count: int
    priced_count: int
    unpriced_count: int
    start_ns: int
    """Earliest span start (the trace start, once every span is in)."""
    end_ns: int
    """Latest span end."""
    earliest: SpanContribution
    """The first span by (start, span id): facts for a trace whose root never arrives."""
    root: SpanContribution | None = None
    """The root span, when it is among these spans (the first one, should a trace have two)."""
    contested: bool = False
    """Root spans from more than one owner are among these spans (`naming.trace_domain`)."""

    @property
    def start_utc(self) -> datetime:
        return utc_from_ns(self.start_ns)


def _order(contribution: SpanContribution) -> tuple[int, str]:
    return (contribution.start_ns, contribution.span_id)


def _first(a: SpanContribution | None, b: SpanContribution | None) -> SpanContribution | None:
    if a is None or b is None:
        return a if b is None else b
    return a if _order(a) <= _order(b) else b


def trace_delta(trace_id: str, spans: Sequence[SpanContribution]) -> TraceDelta:
    """What `spans` (one trace's, distinct (trace id, span id), at least one) add to
    the trace's row: `fold` for spans already grouped and deduplicated."""
    if not spans:
        raise ValueError(f"trace {trace_id}: a delta needs at least one span")
    # One pass (the store's hot path folds every span it writes): earliest and root
    # are the first by (start, span id), so the earliest span's start is the trace's.
    earliest = spans[0]
    root = earliest if earliest.is_root else None
    end_ns = earliest.end_ns
    priced = 0
    contested = False
    for span in spans:
        if span.unpriced_reason is None:
            priced += 1
        span_start = span.start_ns
        end_ns = max(end_ns, span.end_ns)
        if span_start < earliest.start_ns or (
            span_start == earliest.start_ns and span.span_id < earliest.span_id
        ):
            earliest = span
        if span.is_root:
            if root is not None and span.owner != root.owner:
                contested = True
            if (
                root is None
                or span_start < root.start_ns
                or (span_start == root.start_ns and span.span_id < root.span_id)
            ):
                root = span
    return TraceDelta(
        trace_id=trace_id,
        cost_usd=math.fsum([span.cost_usd for span in spans]),
        span_count=len(spans),
        priced_count=priced,
        unpriced_count=len(spans) - priced,
        start_ns=earliest.start_ns,
        end_ns=end_ns,
        earliest=earliest,
        root=root,
        contested=contested,
    )


def fold(contributions: Iterable[SpanContribution]) -> dict[str, TraceDelta]:
    """The per-trace sums of `contributions`, by trace id.

    A key (trace id, span id) seen again is ignored (the first wins), as a
    store's ``ON CONFLICT DO NOTHING`` would: a batch that carries a span twice
    counts it once. Pass only contributions accepted by `split`.
    """
    by_trace: dict[str, dict[str, SpanContribution]] = {}
    for contribution in contributions:
        spans = by_trace.get(contribution.trace_id)
        if spans is None:
            by_trace[contribution.trace_id] = {contribution.span_id: contribution}
        elif contribution.span_id not in spans:
            spans[contribution.span_id] = contribution
    return {
        trace_id: trace_delta(trace_id, list(spans.values()))
        for trace_id, spans in by_trace.items()
    }


def merge(total: TraceDelta | None, delta: TraceDelta) -> TraceDelta:
    """`total` with `delta` added: what a store does to a trace's row (sums add, never overwrite).

    The deltas must come from disjoint sets of spans (the store's deduplication
    sees to that); merging the same delta twice counts its spans twice.
    """
    if total is None:
        return delta
    if total.trace_id != delta.trace_id:
        raise ValueError(f"cannot merge trace {delta.trace_id} into trace {total.trace_id}")
    earliest = (
        total.earliest if _order(total.earliest) <= _order(delta.earliest) else delta.earliest
    )
    return replace(
        total,
        cost_usd=total.cost_usd + delta.cost_usd,
        span_count=total.span_count + delta.span_count,
        priced_count=total.priced_count + delta.priced_count,
        unpriced_count=total.unpriced_count + delta.unpriced_count,
        start_ns=min(total.start_ns, delta.start_ns),
        end_ns=max(total.end_ns, delta.end_ns),
        earliest=earliest,
        root=_first(total.root, delta.root),
        contested=total.contested
        or delta.contested
        or (
            total.root is not None
            and delta.root is not None
            and total.root.owner != delta.root.owner
        ),
    )
