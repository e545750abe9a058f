"""The SQLite totals store: migrations, exactness under replays and concurrent writers,
quarantine, orphans and late roots, and the hourly per-domain rollup."""

from __future__ import annotations

import math
import sqlite3
import tempfile
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spancost.store.sqlite as sqlite_module
import spancost.store.sqlite_write as write_module
from spancost.store import SQLiteStore, StoreError, TotalsStore
from spancost.store.migrations.sqlite import MIGRATIONS
from spancost.totals import split
from spancost.totals.aggregate import SpanContribution, ns_from_utc
from tests.store_data import (
    CONFIG,
    COVERAGE,
    GRACE,
    NOW,
    NOW_NS,
    OWNED_CONFIG,
    OWNED_COVERAGE,
    OWNED_LABELS,
    OWNED_SPEND,
    REASONS,
    ROLLING_EDGES,
    SECOND,
    SKEW,
    odd_contributions,
    span,
    write,
    write_coverage,
    write_owned_traces,
    write_rolling_edges,
    write_thirty_hours,
)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "totals.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteStore]:
    opened = SQLiteStore(db, CONFIG)
    opened.migrate()
    yield opened
    opened.close()


def query(db: Path, sql: str, *parameters: object) -> list[tuple[object, ...]]:
    """Rows of `sql`; one mapping argument binds named parameters."""
    bound = (
        parameters[0] if len(parameters) == 1 and isinstance(parameters[0], dict) else parameters
    )
    connection = sqlite3.connect(db)
    try:
        return connection.execute(sql, bound).fetchall()
    finally:
        connection.close()


def trace_row(db: Path, trace: int) -> dict[str, object]:
    connection = sqlite3.connect(db)
    connection.row_factory = sqlite3.Row
    try:
        row = connection.execute(
            "SELECT * FROM traces WHERE trace_id = ?", (f"{trace:032x}",)
        ).fetchone()
    finally:
        connection.close()
    assert row is not None
    return dict(row)


def rollup(db: Path) -> dict[tuple[object, ...], tuple[object, ...]]:
    rows = query(
        db, "SELECT domain, environment, hour_ns, cost_usd, traces, spans FROM domain_hourly"
    )
    return {row[:3]: row[3:] for row in rows}


def assert_rollup_matches_traces(db: Path) -> None:
    """Every rollup row sums exactly the trace rows under its key, and nothing else exists."""
    expected = query(
        db,
        "SELECT coalesce(domain, ''), coalesce(environment, ''),"
        " first_seen_ns / 3600000000000 * 3600000000000,"
        " sum(cost_usd), count(*), sum(span_count) FROM traces GROUP BY 1, 2, 3",
    )
    actual = rollup(db)
    assert set(actual) == {row[:3] for row in expected}
    for row in expected:
        cost, traces, spans = actual[row[:3]]
        assert math.isclose(float(cost), float(row[3]), rel_tol=1e-9, abs_tol=1e-12)  # type: ignore[arg-type]
        assert (traces, spans) == row[4:]


# -- migrations ----------------------------------------------------------------------


def test_migrate_creates_the_schema_once_and_can_be_rerun(db: Path) -> None:
    first = SQLiteStore(db, CONFIG)
    first.migrate()
    first.migrate()
    second = SQLiteStore(db, CONFIG)
    second.migrate()
    tables = {row[0] for row in query(db, "SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {
        "schema_migrations",
        "contributions",
        "traces",
        "domain_hourly",
        "quarantine_counts",
    } <= tables
    assert query(db, "SELECT version FROM schema_migrations ORDER BY 1") == [
        (version,) for version, _ in MIGRATIONS
    ]
    assert query(db, "PRAGMA journal_mode") == [("wal",)]
    first.close()
    second.close()


def test_write_before_migrate_raises_a_store_error(db: Path) -> None:
    unmigrated = SQLiteStore(db, CONFIG)
    with pytest.raises(StoreError, match="totals store write: no such table"):
        unmigrated.write([span(1, 1)], [], NOW)
    unmigrated.close()


def test_the_store_satisfies_the_protocol(store: SQLiteStore) -> None:
    typed: TotalsStore = store
    assert typed.domain_spend(NOW - timedelta(hours=24), NOW) == {}


# -- exactness -----------------------------------------------------------------------

costs = st.floats(min_value=0.0, max_value=1e3, allow_nan=False, allow_infinity=False)
traces_strategy = st.lists(
    st.lists(
        st.tuples(costs, st.booleans(), st.booleans(), st.integers(0, 3)),
        min_size=1,
        max_size=6,
    ),
    min_size=1,
    max_size=6,
)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(traces=traces_strategy, data=st.data())
def test_totals_are_exact_across_batches_replays_and_two_writers(
    traces: list[list[tuple[float, bool, bool, int]]], data: st.DataObject
) -> None:
    spans: list[SpanContribution] = []
    for trace, members in enumerate(traces, start=1):
        for index, (cost, priced, root, offset) in enumerate(members, start=1):
            spans.append(
                span(
                    trace,
                    index,
                    start=NOW_NS - (offset + 1) * SECOND,
                    cost=cost if priced else 0.0,
                    unpriced=None if priced else "no_rule",
                    root=root and index == 1,
                    service=data.draw(st.sampled_from(["worker", "search-api", None])),
                    environment=data.draw(st.sampled_from(["production", "staging", None])),
                )
            )
    # A quarantined span per example (missing time), in its own trace.
    spans.append(span(999, 1, start=0))
    order = data.draw(st.permutations(spans))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(order)), max_size=4)))
    batches = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    replays = data.draw(st.lists(st.sampled_from(batches), max_size=3))
    assignments = [data.draw(st.integers(0, 1)) for _ in batches + replays]

    with tempfile.TemporaryDirectory() as directory:
        db = Path(directory) / "totals.db"
        stores = [SQLiteStore(db, CONFIG), SQLiteStore(db, CONFIG)]
        stores[0].migrate()
        work: list[list[list[SpanContribution]]] = [[], []]
        for batch, writer in zip(batches + replays, assignments, strict=True):
            work[writer].append(batch)
        errors: list[BaseException] = []

        def run(index: int) -> None:
            try:
                for batch in work[index]:
                    write(stores[index], batch)
            except BaseException as exc:  # reported by the main thread
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(index,)) for index in (0, 1)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert not errors
        # Replays after everything committed (an exporter retrying an acknowledged batch).
        for batch in replays:
            write(stores[1], batch)

        accepted = [s for s in spans if s.trace_id != f"{999:032x}"]
        totals = query(
            db,
            "SELECT sum(cost_usd), sum(span_count), sum(priced_count), sum(unpriced_count)"
            " FROM traces",
        )[0]
        assert math.isclose(
            float(totals[0]),  # type: ignore[arg-type]
            math.fsum(s.cost_usd for s in accepted),
            rel_tol=1e-9,
            abs_tol=1e-12,
        )
        assert totals[1:] == (
            len(accepted),
            sum(1 for s in accepted if s.priced),
            sum(1 for s in accepted if not s.priced),
        )
        assert query(db, "SELECT count(*) FROM traces") == [(len(traces),)]
        assert query(db, "SELECT reason, spans FROM quarantine_counts") == [("missing_time", 1)]
        assert_rollup_matches_traces(db)
        for opened in stores:
            opened.close()


def test_four_threads_on_two_stores_writing_the_same_spans_count_each_once(db: Path) -> None:
    stores = [SQLiteStore(db, CONFIG), SQLiteStore(db, CONFIG)]
    stores[0].migrate()
    spans = [
        span(trace, index, cost=0.1 * index, root=index == 1)
        for trace in range(1, 41)
        for index in range(1, 6)
    ]
    errors: list[BaseException] = []

    def run(worker: int) -> None:
        mine = spans[worker::2] + spans  # overlapping halves, then everything again
        try:
            for start in range(0, len(mine), 7):
                write(stores[worker % 2], mine[start : start + 7])
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(worker,)) for worker in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    cost, count = query(db, "SELECT sum(cost_usd), sum(span_count) FROM traces")[0]
    assert count == len(spans)
    assert math.isclose(float(cost), math.fsum(s.cost_usd for s in spans), rel_tol=1e-9)  # type: ignore[arg-type]
    assert_rollup_matches_traces(db)
    for opened in stores:
        opened.close()


# -- quarantine ----------------------------------------------------------------------


def test_quarantined_spans_are_stored_with_their_reason_counted_once_and_kept_out(
    store: SQLiteStore, db: Path
) -> None:
    batch = [
        span(1, 1, cost=2.0, root=True),
        span(1, 2, cost=100.0, start=NOW_NS + 3 * 3600 * SECOND),  # future
        span(1, 3, cost=100.0, start=NOW_NS - 3 * 3600 * SECOND),  # past
        span(2, 1, cost=5.0, start=0),  # missing_time
        span(0, 1, cost=7.0),  # invalid_id
    ]
    # The retention horizon two hours back, so that a span ending three hours ago is past.
    accepted, quarantined = split(batch, NOW, SKEW, NOW - timedelta(hours=2))
    result = store.write(accepted, quarantined, NOW)
    assert result.accepted == 1
    assert result.quarantined == {"future": 1, "past": 1, "missing_time": 1, "invalid_id": 1}
    assert result.traces == 1
    assert result.cost_usd == 2.0
    # Replayed an hour later: judged again, inserts nothing, counts nothing.
    later = NOW + timedelta(hours=1)
    accepted, quarantined = split(batch, later, SKEW, later - timedelta(hours=2))
    replay = store.write(accepted, quarantined, later)
    assert (replay.accepted, replay.quarantined, replay.duplicates) == (0, {}, 5)

    assert sorted(query(db, "SELECT reason, spans FROM quarantine_counts")) == [
        ("future", 1),
        ("invalid_id", 1),
        ("missing_time", 1),
        ("past", 1),
    ]
    assert query(db, "SELECT count(*) FROM contributions WHERE quarantine_reason IS NOT NULL") == [
        (4,)
    ]
    row = trace_row(db, 1)
    assert (row["cost_usd"], row["span_count"]) == (2.0, 1)
    assert query(db, "SELECT count(*) FROM traces") == [(1,)]
    assert store.domain_spend(NOW - timedelta(hours=24), later) == {"op": 2.0}


# -- names, orphans and the rollup ---------------------------------------------------


def test_trace_row_merges_like_the_core(store: SQLiteStore, db: Path) -> None:
    write(store, [span(1, 5, start=NOW_NS - 10 * SECOND, cost=1.5, unpriced=None)])
    later = NOW + timedelta(minutes=1)
    write(
        store,
        [
            span(1, 3, start=NOW_NS - 20 * SECOND, cost=0.0, unpriced="no_rule"),
            span(1, 9, start=NOW_NS - 5 * SECOND, root=True, name="GET /", cost=0.5),
        ],
        later,
    )
    row = trace_row(db, 1)
    assert row["cost_usd"] == 2.0
    assert (row["span_count"], row["priced_count"], row["unpriced_count"]) == (3, 2, 1)
    assert row["start_ns"] == NOW_NS - 20 * SECOND
    assert row["end_ns"] == NOW_NS - 4 * SECOND
    assert row["earliest_span_id"] == f"{3:016x}"
    assert row["root_span_id"] == f"{9:016x}"
    assert row["first_seen_ns"] == NOW_NS
    assert row["last_update_ns"] == ns_from_utc(later)
    assert (row["transaction_name"], row["domain"]) == ("GET /", "GET /")
    # A second root that starts earlier wins, as `merge` takes the first by (start, span id).
    write(store, [span(1, 10, start=NOW_NS - 30 * SECOND, root=True, transaction="checkout")])
    row = trace_row(db, 1)
    assert (row["root_span_id"], row["transaction_name"], row["domain"]) == (
        f"{10:016x}",
        "checkout",
        "payments",
    )
    # A later root does not replace it.
    write(store, [span(1, 11, start=NOW_NS - 1 * SECOND, root=True, name="other")])
    assert trace_row(db, 1)["transaction_name"] == "checkout"
    assert_rollup_matches_traces(db)


def test_spans_no_database_could_hold_as_sent_are_stored_once_made_storable(
    store: SQLiteStore, db: Path
) -> None:
    for _ in range(2):  # and a replay adds nothing
        write(store, odd_contributions())
    assert query(
        db,
        "SELECT transaction_name, root_service, span_count, cost_usd, unpriced_count FROM traces",
    ) == [("pay\ufffd", "web\ufffd", 3, 2.0, 1)]
    assert query(
        db,
        "SELECT span_id, quarantine_reason, start_ns FROM contributions"
        " WHERE quarantine_reason IS NOT NULL",
    ) == [(f"{3:016x}", "future", 2**63 - 1)]


def test_orphans_are_unattributed_after_the_grace_and_no_sooner(
    store: SQLiteStore, db: Path
) -> None:
    write(store, [span(1, 1, cost=3.0, service="search-api"), span(2, 1, cost=4.0)])
    assert store.domain_spend(NOW - timedelta(hours=24), NOW + GRACE) == {}  # pending
    assert trace_row(db, 1)["transaction_name"] is None

    just_before = NOW + GRACE - timedelta(microseconds=1)
    assert store.attribute_orphans(just_before, GRACE, "(unattributed)") == 0
    assert store.attribute_orphans(NOW + GRACE, GRACE, "(unattributed)") == 2
    assert store.attribute_orphans(NOW + GRACE, GRACE, "(unattributed)") == 0
    assert (trace_row(db, 1)["transaction_name"], trace_row(db, 1)["domain"]) == (
        "(unattributed)",
        "discovery",  # by the earliest span's service
    )
    assert store.domain_spend(NOW - timedelta(hours=24), NOW + GRACE) == {
        "discovery": 3.0,
        "(unattributed)": 4.0,
    }
    # More orphan spans keep the name and add to the same rollup row.
    write(store, [span(2, 2, cost=1.0)], NOW + GRACE)
    assert store.domain_spend(NOW - timedelta(hours=24), NOW + GRACE) == {
        "discovery": 3.0,
        "(unattributed)": 5.0,
    }
    assert_rollup_matches_traces(db)


def test_a_late_root_renames_the_trace_and_moves_its_rollup_exactly(
    store: SQLiteStore, db: Path
) -> None:
    write(store, [span(1, 2, cost=0.1), span(1, 3, cost=0.2), span(2, 2, cost=10.0)])
    store.attribute_orphans(NOW + GRACE, GRACE, "(unattributed)")
    window = (NOW - timedelta(hours=24), NOW + timedelta(hours=1))
    assert store.domain_spend(*window) == {"(unattributed)": pytest.approx(10.3)}

    late = NOW + timedelta(minutes=30)
    write(
        store,
        [span(1, 1, cost=0.3, root=True, transaction="checkout", environment="production")],
        late,
    )
    row = trace_row(db, 1)
    assert (row["transaction_name"], row["domain"], row["span_count"]) == (
        "checkout",
        "payments",
        3,
    )
    spend = store.domain_spend(*window)
    assert spend == {"payments": pytest.approx(0.6, rel=1e-12), "(unattributed)": 10.0}
    assert rollup(db)[
        ("(unattributed)", "production", NOW_NS // 3600 // SECOND * 3600 * SECOND)
    ] == (
        10.0,
        1,
        1,
    )
    assert_rollup_matches_traces(db)


def test_the_last_trace_leaving_a_rollup_row_removes_it(store: SQLiteStore, db: Path) -> None:
    write(store, [span(1, 2, cost=0.1), span(1, 3, cost=0.2)])
    store.attribute_orphans(NOW + GRACE, GRACE, "(unattributed)")
    write(store, [span(1, 1, root=True, name="GET /", cost=0.0)], NOW + GRACE)
    assert {key[0] for key in rollup(db)} == {"GET /"}
    assert_rollup_matches_traces(db)


def test_a_root_in_another_environment_moves_the_trace_between_environments(
    store: SQLiteStore, db: Path
) -> None:
    write(store, [span(1, 2, cost=1.0, environment="staging")])
    write(store, [span(1, 1, cost=1.0, root=True, name="GET /", environment="production")])
    assert trace_row(db, 1)["environment"] == "production"
    assert store.domain_spend(NOW - timedelta(hours=1), NOW, {"staging"}) == {"GET /": 2.0}
    assert_rollup_matches_traces(db)


def test_rolling_24h_domain_spend_equals_the_trace_rows_without_excluded_environments(
    store: SQLiteStore, db: Path
) -> None:
    write_thirty_hours(store)

    since, until = NOW - timedelta(hours=24), NOW
    spend = store.domain_spend(since, until, {"staging", "dev"})
    since_hour = ns_from_utc(since) // (3600 * SECOND) * (3600 * SECOND)
    expected = query(
        db,
        "SELECT domain, sum(cost_usd) FROM traces"
        " WHERE first_seen_ns / :hour * :hour BETWEEN :since AND :until - 1"
        " AND coalesce(environment, '') NOT IN ('staging', 'dev') GROUP BY domain",
        {"hour": 3600 * SECOND, "since": since_hour, "until": ns_from_utc(until)},
    )
    assert spend.keys() == {row[0] for row in expected}
    for domain, cost in expected:
        assert math.isclose(spend[str(domain)], float(cost), rel_tol=1e-9)  # type: ignore[arg-type]
    assert "payments" in spend  # checkout → payments by transaction
    everything = store.domain_spend(since, until)
    assert sum(everything.values()) > sum(spend.values())
    assert_rollup_matches_traces(db)


# -- failures ------------------------------------------------------------------------


def test_a_failure_after_the_contribution_insert_leaves_nothing_and_raises(
    store: SQLiteStore, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fold(*_args: object) -> object:
        raise RuntimeError("injected after the insert")

    monkeypatch.setattr(write_module, "fold", broken_fold)
    with pytest.raises(RuntimeError, match="injected"):
        write(store, [span(1, 1, root=True), span(2, 1, start=0)])
    assert query(db, "SELECT count(*) FROM contributions") == [(0,)]
    assert query(db, "SELECT count(*) FROM quarantine_counts") == [(0,)]
    monkeypatch.undo()
    write(store, [span(1, 1, root=True), span(2, 1, start=0)])  # the retry adds it once
    assert trace_row(db, 1)["span_count"] == 1


def test_a_database_error_midway_rolls_back_and_raises_a_store_error(
    store: SQLiteStore, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(write_module, "_ADD_TO_ROLLUP", "INSERT INTO no_such_table VALUES (?)")
    with pytest.raises(StoreError, match="no such table: no_such_table") as raised:
        write(store, [span(1, 1, root=True, cost=1.0)])
    assert isinstance(raised.value.__cause__, sqlite3.Error)
    for table in ("contributions", "traces", "domain_hourly"):
        assert query(db, f"SELECT count(*) FROM {table}") == [(0,)]  # noqa: S608 - fixed names
    monkeypatch.undo()
    write(store, [span(1, 1, root=True, cost=1.0)])
    assert store.domain_spend(NOW - timedelta(hours=1), NOW) == {"op": 1.0}


# -- retention -----------------------------------------------------------------------


def test_delete_before_takes_whole_traces_by_when_their_first_span_was_stored(
    store: SQLiteStore, db: Path
) -> None:
    early, cutoff, late = NOW - timedelta(hours=3), NOW - timedelta(hours=1), NOW
    # Trace 1: stored early. Trace 2: a span quarantined early (so the trace is keyed
    # early, as PostgreSQL's keyed_at), its accepted spans stored after the cutoff.
    # Trace 3: stored late. Each keeps its own rollup row either way.
    write(store, [span(1, 1, root=True, start=ns_from_utc(early) - SECOND)], early)
    write(store, [span(2, 9, start=0)], early)  # missing_time: quarantined
    write(store, [span(2, 1, root=True), span(3, 1, root=True, name="GET /")], late)
    rollup_before = rollup(db)

    deleted = store.delete_before(cutoff)
    assert (deleted.traces, deleted.contributions) == (2, 3)
    assert query(db, "SELECT trace_id FROM traces") == [(f"{3:032x}",)]
    assert query(db, "SELECT DISTINCT trace_id FROM contributions") == [(f"{3:032x}",)]
    assert rollup(db) == rollup_before  # the rollup is history: kept
    assert query(db, "SELECT reason, spans FROM quarantine_counts") == [("missing_time", 1)]
    assert store.delete_before(cutoff) == sqlite_module.Deleted(traces=0, contributions=0)
    # A replay of a deleted trace's span (within the skew) starts the trace afresh.
    write(store, [span(1, 1, root=True, start=ns_from_utc(late) - SECOND)], late)
    assert trace_row(db, 1)["span_count"] == 1


def test_a_trace_row_carries_its_cloud_account_the_roots_first(
    store: SQLiteStore, db: Path
) -> None:
    # The earliest span arrives first; the root's account wins once the root is in.
    write(store, [span(90, 2, start=NOW_NS - 90 * SECOND, account="111111111111")])
    row = trace_row(db, 90)
    assert (row["earliest_account"], row["root_account"]) == ("111111111111", None)
    write(store, [span(90, 1, root=True, account="222222222222")])
    row = trace_row(db, 90)
    assert (row["earliest_account"], row["root_account"]) == ("111111111111", "222222222222")
    write(store, [span(90, 3, start=NOW_NS - 120 * SECOND, account=None)])
    assert trace_row(db, 90)["earliest_account"] is None  # the new earliest span has none


def test_every_span_is_charged_to_its_owner_and_a_forged_root_contests(db: Path) -> None:
    owned = SQLiteStore(db, OWNED_CONFIG)
    owned.migrate()
    try:
        spend = write_owned_traces(owned)
    finally:
        owned.close()
    assert spend == pytest.approx(OWNED_SPEND)
    labels = query(db, "SELECT trace_id, transaction_name, domain, contested FROM traces")
    assert {trace: (name, domain) for trace, name, domain, _ in labels} == OWNED_LABELS
    assert {trace for trace, _, _, contested in labels if contested} == {f"{1:032x}"}
    reopened = SQLiteStore(db, OWNED_CONFIG)
    try:
        since = NOW - timedelta(hours=24)
        assert reopened.domain_coverage(since, NOW) == OWNED_COVERAGE
    finally:
        reopened.close()
    # The rollup is the sum of the charges, per hour, domain and environment.
    expected = query(
        db,
        "SELECT domain, environment, first_seen_ns / 3600000000000 * 3600000000000,"
        " sum(cost_usd), count(*), sum(spans) FROM trace_charges GROUP BY 1, 2, 3",
    )
    assert sorted(rollup(db).items()) == sorted(
        ((d, e, h), (pytest.approx(c), t, n)) for d, e, h, c, t, n in expected
    )


def test_the_rolling_24_hours_are_exactly_24_hours(store: SQLiteStore) -> None:
    spend = write_rolling_edges(store)
    assert spend == {f"at -{before}": 1.0 for before, counted in ROLLING_EDGES.items() if counted}


def test_coverage_and_unpriced_reasons_count_each_stored_span_once(store: SQLiteStore) -> None:
    coverage, reasons = write_coverage(store)
    assert coverage == COVERAGE
    assert reasons == REASONS
