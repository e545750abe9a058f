"""The pure totals core: quarantine, per-trace folding, and exactness under replays."""

from __future__ import annotations

import itertools
import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spancost.totals.aggregate import (
    QUARANTINE_REASONS,
    Quarantined,
    SpanContribution,
    TraceDelta,
    fold,
    merge,
    ns_from_utc,
    split,
    trace_delta,
    utc_from_ns,
)

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
NOW_NS = ns_from_utc(NOW)
SECOND = 10**9
HOUR = 3600 * SECOND
SKEW = timedelta(hours=2)


def contribution(
    trace: int = 1,
    span: int = 1,
    *,
    start: int = NOW_NS - SECOND,
    end: int | None = None,
    cost: float = 0.0,
    unpriced: str | None = None,
    root: bool = False,
    name: str = "op",
    service: str | None = "checkout",
    owner: str | None = None,
) -> SpanContribution:
    return SpanContribution(
        trace_id=f"{trace:032x}",
        span_id=f"{span:016x}",
        start_ns=start,
        end_ns=start + SECOND // 10 if end is None else end,
        cost_usd=cost,
        unpriced_reason=unpriced,
        is_root=root,
        name=name,
        service=service,
        owner=owner,
    )


# -- time ----------------------------------------------------------------------------


def test_utc_conversions_are_exact_to_the_microsecond() -> None:
    assert NOW_NS == 1_738_324_800 * SECOND
    assert utc_from_ns(NOW_NS + 1_999) == NOW + timedelta(microseconds=1)
    assert utc_from_ns(NOW_NS).tzinfo is UTC
    paris = datetime(2025, 1, 31, 13, 0, tzinfo=timezone(timedelta(hours=1)))
    assert ns_from_utc(paris) == NOW_NS


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ns_from_utc(datetime(2025, 1, 31, 12, 0))
    with pytest.raises(ValueError, match="timezone-aware"):
        split([contribution()], datetime(2025, 1, 31, 12, 0), SKEW)


# -- quarantine ----------------------------------------------------------------------


OLDEST = NOW - timedelta(days=30)
"""The retention horizon the tests judge by: a span that ends before it is ``past``."""


def reason(
    item: SpanContribution, max_skew: timedelta = SKEW, oldest: datetime | None = OLDEST
) -> str | None:
    accepted, quarantined = split([item], NOW, max_skew, oldest)
    assert len(accepted) + len(quarantined) == 1
    return quarantined[0].reason if quarantined else None


DAY = 24 * HOUR


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (NOW_NS - SECOND, NOW_NS, None),
        (NOW_NS, NOW_NS, None),  # zero duration
        (NOW_NS - 3 * HOUR, NOW_NS, None),  # a 3-hour job that ends now: judged by its end
        (NOW_NS - 3 * HOUR, NOW_NS - 3 * HOUR, None),  # held 3 hours in a queue
        (NOW_NS - 40 * DAY, NOW_NS - 30 * DAY, None),  # ends exactly at the horizon
        (NOW_NS - 40 * DAY, NOW_NS - 30 * DAY - 1, "past"),  # a nanosecond before it
        (NOW_NS, NOW_NS + 2 * HOUR, None),  # exactly max_skew in the future
        (NOW_NS, NOW_NS + 2 * HOUR + 1, "future"),
        (NOW_NS + 2 * HOUR + 1, NOW_NS + 3 * HOUR, "future"),
        (NOW_NS - 3 * HOUR, NOW_NS + 3 * HOUR, "future"),
        (NOW_NS - 40 * DAY, NOW_NS + 2 * HOUR, None),  # long, but ends in the window
        (NOW_NS, NOW_NS - 1, "end_before_start"),
        (0, NOW_NS, "missing_time"),
        (NOW_NS, 0, "missing_time"),
        (0, 0, "missing_time"),
        (1, 2, "past"),  # 1970
    ],
)
def test_quarantine_boundaries(start: int, end: int, expected: str | None) -> None:
    assert reason(contribution(start=start, end=end)) == expected


def test_max_skew_bounds_the_future_and_oldest_the_past() -> None:
    item = contribution(start=NOW_NS, end=NOW_NS + 31 * SECOND)
    assert reason(item, timedelta(seconds=30)) == "future"
    assert reason(item, timedelta(seconds=31)) is None
    with pytest.raises(ValueError, match="max_skew"):
        split([item], NOW, timedelta(seconds=-1))
    ancient = contribution(start=1_000, end=2_000)
    assert reason(ancient, oldest=None) is None, "without a horizon nothing is past"
    assert reason(ancient, oldest=utc_from_ns(2_000)) is None
    assert reason(ancient, oldest=utc_from_ns(3_000)) == "past"


@pytest.mark.parametrize(
    ("trace_id", "span_id"),
    [
        ("", "1" * 16),
        ("0" * 32, "1" * 16),
        ("1" * 32, "0" * 16),
        ("1" * 32, ""),
        ("1" * 30, "1" * 16),
    ],
)
def test_spans_without_usable_ids_are_quarantined(trace_id: str, span_id: str) -> None:
    item = SpanContribution(trace_id=trace_id, span_id=span_id, start_ns=0, end_ns=0)
    assert reason(item) == "invalid_id"  # checked before the times


def test_split_keeps_every_span_once_in_order() -> None:
    items = [
        contribution(span=1),
        contribution(span=2, start=0),
        contribution(span=3),
        contribution(span=4, start=NOW_NS + 3 * HOUR),
        contribution(span=5, start=NOW_NS, end=NOW_NS - 1),
    ]
    accepted, quarantined = split(items, NOW, SKEW)
    assert accepted == [items[0], items[2]]
    assert quarantined == [
        Quarantined(items[1], "missing_time"),
        Quarantined(items[3], "future"),
        Quarantined(items[4], "end_before_start"),
    ]
    assert set(QUARANTINE_REASONS) >= {q.reason for q in quarantined}


# -- fold and merge ------------------------------------------------------------------


def test_fold_sums_per_trace() -> None:
    root = contribution(1, 1, start=NOW_NS - 10 * SECOND, cost=0.5, root=True, name="GET /")
    items = [
        root,
        contribution(1, 2, start=NOW_NS - 9 * SECOND, end=NOW_NS, cost=0.25),
        contribution(1, 3, unpriced="unknown_region"),
        contribution(2, 4, cost=1.0),
    ]
    deltas = fold(items)
    assert set(deltas) == {f"{1:032x}", f"{2:032x}"}
    first = deltas[f"{1:032x}"]
    assert (first.cost_usd, first.span_count, first.priced_count, first.unpriced_count) == (
        0.75,
        3,
        2,
        1,
    )
    assert first.start_ns == NOW_NS - 10 * SECOND
    assert first.end_ns == NOW_NS
    assert first.start_utc == NOW - timedelta(seconds=10)
    assert first.root == root
    assert first.earliest == root
    second = deltas[f"{2:032x}"]
    assert second.root is None  # an orphan so far
    assert second.earliest == items[3]


def test_fold_sums_exactly() -> None:
    items = [contribution(1, span, cost=0.1) for span in range(1, 11)]
    assert sum(item.cost_usd for item in items) != 1.0  # naive summation drifts
    assert fold(items)[f"{1:032x}"].cost_usd == 1.0
    tiny = [contribution(2, 1, cost=1e9), *(contribution(2, s, cost=3e-15) for s in range(2, 1002))]
    assert fold(tiny)[f"{2:032x}"].cost_usd == math.fsum(i.cost_usd for i in tiny)


def test_a_span_twice_in_one_batch_counts_once_first_wins() -> None:
    first = contribution(1, 1, cost=0.5)
    again = contribution(1, 1, cost=0.7)
    delta = fold([first, again, first])[f"{1:032x}"]
    assert (delta.cost_usd, delta.span_count) == (0.5, 1)


def test_two_roots_the_first_by_start_then_span_id_wins_in_any_order() -> None:
    late = contribution(1, 1, start=NOW_NS - SECOND, root=True, name="late")
    early_b = contribution(1, 3, start=NOW_NS - 2 * SECOND, root=True, name="early-b")
    early_a = contribution(1, 2, start=NOW_NS - 2 * SECOND, root=True, name="early-a")
    for order in ([late, early_b, early_a], [early_a, late, early_b], [early_b, early_a, late]):
        root = fold(order)[f"{1:032x}"].root
        assert root is not None
        assert root.name == "early-a"


def start_then_span_id(item: SpanContribution) -> tuple[int, str]:
    return (item.start_ns, item.span_id)


OWNERS = st.sampled_from([None, "shop", "search"])


@settings(max_examples=300, deadline=None)
@given(
    spans=st.lists(
        st.tuples(st.integers(1, 3), st.integers(1, 6), st.integers(0, 3), st.booleans(), OWNERS),
        min_size=1,
        max_size=25,
    )
)
def test_fold_agrees_with_a_plain_reading_of_its_contract(
    spans: list[tuple[int, int, int, bool, str | None]],
) -> None:
    # A repeated key carries another cost and start: the first must win.
    items = [
        contribution(
            trace,
            span_id,
            start=NOW_NS - offset * SECOND,
            root=root,
            cost=0.1 * index,
            owner=owner,
        )
        for index, (trace, span_id, offset, root, owner) in enumerate(spans)
    ]
    first: dict[tuple[str, str], SpanContribution] = {}
    for item in items:
        first.setdefault(item.key, item)
    deltas = fold(items)
    assert set(deltas) == {item.trace_id for item in first.values()}
    for trace_id, delta in deltas.items():
        members = [item for item in first.values() if item.trace_id == trace_id]
        roots = [item for item in members if item.is_root]
        assert delta.span_count == len(members)
        assert delta.cost_usd == math.fsum(item.cost_usd for item in members)
        assert delta.start_ns == min(item.start_ns for item in members)
        assert delta.end_ns == max(item.end_ns for item in members)
        assert delta.earliest is min(members, key=start_then_span_id)
        assert delta.root is (min(roots, key=start_then_span_id) if roots else None)
        assert delta.contested == (len({item.owner for item in roots}) > 1)


def test_trace_delta_is_fold_for_one_trace_and_needs_a_span() -> None:
    spans = [contribution(1, 2, cost=0.5, root=True), contribution(1, 1, cost=0.25)]
    assert trace_delta(f"{1:032x}", spans) == fold(spans)[f"{1:032x}"]
    with pytest.raises(ValueError, match="at least one span"):
        trace_delta(f"{1:032x}", [])


def test_merge_adds_and_is_order_independent() -> None:
    a = fold([contribution(1, 1, cost=0.25, start=NOW_NS - 5 * SECOND)])[f"{1:032x}"]
    b = fold([contribution(1, 2, cost=0.5, root=True, unpriced=None)])[f"{1:032x}"]
    ab, ba = merge(merge(None, a), b), merge(merge(None, b), a)
    assert ab == ba
    assert (ab.cost_usd, ab.span_count, ab.priced_count) == (0.75, 2, 2)
    assert ab.root == b.root
    assert ab.earliest == a.earliest
    other = fold([contribution(2, 1)])[f"{2:032x}"]
    with pytest.raises(ValueError, match="cannot merge"):
        merge(a, other)


def test_roots_of_two_owners_contest_a_trace_in_any_order() -> None:
    """A span claiming the root of a trace another owner started, earlier or later, in the
    same delta or another, contests the trace; roots of one owner never do."""
    real = contribution(1, 1, root=True, owner="shop", start=NOW_NS - 2 * SECOND)
    forged = contribution(1, 2, root=True, owner="search", start=NOW_NS - 9 * SECOND)
    child = contribution(1, 3, owner="search")
    again = contribution(1, 4, root=True, owner="shop")
    assert fold([real, forged])[f"{1:032x}"].contested
    assert fold([forged, real])[f"{1:032x}"].contested
    one = fold([real])[f"{1:032x}"]
    two = fold([forged, child])[f"{1:032x}"]
    assert not one.contested and not two.contested
    assert merge(one, two).contested and merge(two, one).contested
    assert not fold([real, again, child])[f"{1:032x}"].contested, "a child never contests"
    anonymous = contribution(1, 5, root=True, owner=None)
    assert fold([real, anonymous])[f"{1:032x}"].contested, "no owner is another owner"


# -- exactness under splits, replays and two collectors ------------------------------


@dataclass
class ReferenceStore:
    """What the SQL stores do, in memory: contributions keyed by (trace id, span id) are
    inserted ``ON CONFLICT DO NOTHING`` (a quarantined span too, with its reason), and
    only the accepted ones actually inserted are folded into the rows, in one step."""

    keys: dict[tuple[str, str], str | None] = field(default_factory=dict)
    rows: dict[str, TraceDelta] = field(default_factory=dict)

    def write(self, batch: list[SpanContribution], now: datetime) -> None:
        accepted, quarantined = split(batch, now, SKEW)
        for held in quarantined:
            self.keys.setdefault(held.contribution.key, held.reason)
        inserted: list[SpanContribution] = []
        for item in accepted:
            if item.key not in self.keys:
                self.keys[item.key] = None
                inserted.append(item)
        for trace_id, delta in fold(inserted).items():
            self.rows[trace_id] = merge(self.rows.get(trace_id), delta)

    @property
    def quarantine(self) -> Counter[str]:
        return Counter(reason for reason in self.keys.values() if reason is not None)


costs = st.one_of(
    st.just(0.0),
    st.floats(min_value=1e-15, max_value=1e-6),
    st.floats(min_value=0.0, max_value=1e9),
)


@st.composite
def traces(draw: st.DrawFn) -> list[SpanContribution]:
    """Unique spans of a few traces, some with their root, some orphans."""
    spans: list[SpanContribution] = []
    for trace in range(1, draw(st.integers(1, 5)) + 1):
        count = draw(st.integers(1, 8))
        has_root = draw(st.booleans())
        roots = draw(st.integers(1, 2))  # a second root: maybe another owner's claim
        for span in range(1, count + 1):
            priced = draw(st.booleans())
            spans.append(
                contribution(
                    trace,
                    span,
                    start=NOW_NS - draw(st.integers(0, HOUR)),
                    cost=draw(costs) if priced else 0.0,
                    unpriced=None if priced else "no_resource_info",
                    root=has_root and span <= roots,
                    name=f"op{span}",
                    owner=draw(OWNERS),
                )
            )
    return spans


@st.composite
def deliveries(draw: st.DrawFn, spans: list[SpanContribution]) -> list[list[SpanContribution]]:
    """`spans` cut into batches held by two collectors, delivered interleaved, some replayed
    (a retry whose first attempt committed), some batches carrying a span twice."""
    shuffled = draw(st.permutations(spans))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(spans) - 1)), max_size=len(spans))))
    bounds = [0, *(cut for cut in cuts if cut < len(spans)), len(spans)]
    batches = [list(shuffled[a:b]) for a, b in itertools.pairwise(bounds) if b > a]
    for batch in batches:
        if draw(st.integers(0, 4)) == 0:
            batch.append(draw(st.sampled_from(batch)))
    collectors: list[list[list[SpanContribution]]] = [[], []]
    for batch in batches:
        collectors[draw(st.integers(0, 1))].append(batch)
    for queue in collectors:
        for index in draw(st.lists(st.integers(0, max(0, len(queue) - 1)), max_size=4)):
            if queue:
                queue.append(queue[index])  # replayed after its first attempt
    schedule: list[list[SpanContribution]] = []
    while any(collectors):
        queue = draw(st.sampled_from([q for q in collectors if q]))
        schedule.append(queue.pop(0))
    return schedule


def assert_same_totals(actual: dict[str, TraceDelta], expected: dict[str, TraceDelta]) -> None:
    assert actual.keys() == expected.keys()
    for trace_id, want in expected.items():
        got = actual[trace_id]
        counts = (got.span_count, got.priced_count, got.unpriced_count)
        assert counts == (want.span_count, want.priced_count, want.unpriced_count)
        assert math.isclose(got.cost_usd, want.cost_usd, rel_tol=1e-9, abs_tol=0.0)
        assert (got.start_ns, got.end_ns) == (want.start_ns, want.end_ns)
        assert got.root == want.root
        assert got.earliest == want.earliest
        assert got.contested == want.contested
    total = math.fsum(delta.cost_usd for delta in actual.values())
    assert math.isclose(total, math.fsum(d.cost_usd for d in expected.values()), rel_tol=1e-9)


@settings(max_examples=300, deadline=None)
@given(data=st.data(), spans=traces())
def test_batches_replays_and_two_collectors_sum_to_one_fold_of_the_unique_spans(
    data: st.DataObject, spans: list[SpanContribution]
) -> None:
    store = ReferenceStore()
    for batch in data.draw(deliveries(spans)):
        store.write(batch, NOW)
    expected = fold(spans)
    assert_same_totals(store.rows, expected)
    assert math.isclose(
        math.fsum(d.cost_usd for d in store.rows.values()),
        math.fsum(span.cost_usd for span in spans),
        rel_tol=1e-9,
    )
    assert sum(d.span_count for d in store.rows.values()) == len(spans)


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    spans=traces(),
    late=st.lists(st.integers(0, 5 * HOUR), min_size=1, max_size=6),
)
def test_a_replay_judged_later_never_moves_a_span_between_totals_and_quarantine(
    data: st.DataObject, spans: list[SpanContribution], late: list[int]
) -> None:
    """A replay hours later is judged anew (a span once ``future`` would now be accepted):
    the first decision stands, nothing twice."""
    store = ReferenceStore()
    first_seen: dict[tuple[str, str], bool] = {}
    for index, batch in enumerate(data.draw(deliveries(spans))):
        now = NOW + timedelta(microseconds=late[index % len(late)] // 1000)
        accepted, _ = split(batch, now, SKEW)
        for item in batch:
            first_seen.setdefault(item.key, item in accepted)
        store.write(batch, now)
    in_totals = sum(delta.span_count for delta in store.rows.values())
    assert in_totals + sum(store.quarantine.values()) == len(spans)
    assert in_totals == sum(first_seen.values())
    expected = fold(span for span in spans if first_seen[span.key])
    assert_same_totals(store.rows, expected)
