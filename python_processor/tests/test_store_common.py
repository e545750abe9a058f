"""The store-independent rollup bookkeeping both SQL stores apply."""

from __future__ import annotations

from spancost.store.common import HOUR_NS, PENDING_DOMAIN, RollupChanges, placement


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
