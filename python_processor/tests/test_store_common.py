"""The store-independent rollup bookkeeping both SQL stores apply."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from spancost.store.common import (
    HOUR_NS,
    PENDING_DOMAIN,
    RollupChanges,
    net_spend,
    placement,
    spend_window,
)
from spancost.totals.aggregate import utc_from_ns


def test_a_trace_that_stays_in_its_row_adds_only_its_delta() -> None:
    rollup = RollupChanges()
    before = placement(5 * HOUR_NS + 7, "payments", "prod", 1.0, 2)
    after = placement(5 * HOUR_NS + 7, "payments", "prod", 1.5, 3)
    rollup.record(before, after, 0.5, 1)
    assert list(rollup) == [((5 * HOUR_NS, "payments", "prod"), 0.5, 0, 1)]


def test_a_renamed_trace_moves_its_whole_totals_and_rows_come_sorted() -> None:
    rollup = RollupChanges()
    before = placement(HOUR_NS, None, None, 2.0, 4)  # waiting for its root
    after = placement(HOUR_NS, "checkout", "prod", 2.5, 5)
    rollup.record(before, after, 0.5, 1)
    rollup.record(None, placement(0, "search", "prod", 1.0, 1), 1.0, 1)
    assert list(rollup) == [
        ((0, "search", "prod"), 1.0, 1, 1),
        ((HOUR_NS, PENDING_DOMAIN, ""), -2.0, -1, -4),
        ((HOUR_NS, "checkout", "prod"), 2.5, 1, 5),
    ]


# -- the exact spend window ---------------------------------------------------------

T0 = 1_738_324_800 * 10**9  # 2025-01-31 12:00 UTC, an hour boundary


@settings(max_examples=400, deadline=None)
@given(
    since=st.integers(T0, T0 + 30 * HOUR_NS),
    length=st.integers(0, 30 * HOUR_NS),
    seen=st.lists(st.integers(T0 - HOUR_NS, T0 + 62 * HOUR_NS), max_size=40),
)
def test_the_spend_window_counts_exactly_the_traces_first_seen_in_it(
    since: int, length: int, seen: list[int]
) -> None:
    """Whole hours from the rollup, signed edges from the trace rows: together exactly the
    first-seen times from `since` to `until`, both included (microsecond times, as stored),
    and never more than half an hour of trace rows at the start."""
    since_us, until_us = since // 1000 * 1000, (since + length) // 1000 * 1000
    seen = [ns // 1000 * 1000 for ns in seen]
    window = spend_window(utc_from_ns(since_us), utc_from_ns(until_us))
    in_hours = sum(1 for ns in seen if window.hours_start <= ns < window.hours_end)
    edges = sum(sign for ns in seen for a, b, sign in window.edges if a <= ns < b)
    assert in_hours + edges == sum(1 for ns in seen if since_us <= ns <= until_us)
    assert window.hours_start % HOUR_NS == 0 and window.hours_end % HOUR_NS == 0
    for a, b, _ in window.edges:
        if since_us in (a, b) and window.hours_start != window.hours_end:  # the start edge
            assert b - a <= HOUR_NS // 2


def test_a_domain_whose_traces_all_fell_out_is_left_out() -> None:
    assert net_spend([("a", 2.0, 2), ("a", -2.0, -2), ("b", 0.0, 1), ("c", 1.0, 1)]) == {
        "b": 0.0,
        "c": 1.0,
    }
