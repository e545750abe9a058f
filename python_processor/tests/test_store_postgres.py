"""The PostgreSQL totals store against a real server started by the tests (`tests.pg`):
migrations, monthly partitions and retention, exactness under replays and concurrent
writers, quarantine, orphans and late roots, the hourly rollup, failures, bad DSNs."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

import spancost.store.postgres_write as write_module
from spancost.store import StoreError, TotalsStore
from spancost.store.migrations.postgres import MIGRATIONS
from spancost.store.postgres import PostgresStore, masked_dsn
from spancost.totals import split
from spancost.totals.aggregate import SpanContribution, ns_from_utc
from tests.pg import create_database
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
def dsn(pg_server: str) -> str:
    return create_database(pg_server, "totals")


@pytest.fixture
def store(dsn: str) -> Iterator[PostgresStore]:
    opened = PostgresStore(dsn, CONFIG)
    opened.migrate()
    yield opened
    opened.close()


def query(dsn: str, statement: str, *parameters: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(statement.encode(), parameters).fetchall()


def trace_row(dsn: str, trace: int) -> dict[str, Any]:
    with psycopg.connect(dsn) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT * FROM traces WHERE trace_id = %s", (f"{trace:032x}",))
        row = cursor.fetchone()
        assert row is not None and cursor.description is not None
        return {column.name: value for column, value in zip(cursor.description, row, strict=True)}


def assert_rollup_matches_traces(dsn: str) -> None:
    """Every trace is in the rollup once, under its current domain, environment and hour."""
    expected = query(
        dsn,
        "SELECT date_trunc('hour', first_seen AT TIME ZONE 'UTC'), coalesce(domain, ''),"
        " coalesce(environment, ''), sum(cost_usd), count(*), sum(span_count)"
        " FROM traces GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    actual = query(
        dsn,
        "SELECT hour AT TIME ZONE 'UTC', domain, environment, cost_usd, traces, spans"
        " FROM domain_hourly ORDER BY 1, 2, 3",
    )
    assert [row[:3] + row[4:] for row in actual] == [row[:3] + row[4:] for row in expected]
    for got, want in zip(actual, expected, strict=True):
        assert math.isclose(got[3], want[3], rel_tol=1e-9, abs_tol=1e-9)


# -- schema --------------------------------------------------------------------------


def test_migrate_creates_the_schema_once_and_can_be_rerun(dsn: str) -> None:
    first, second = PostgresStore(dsn, CONFIG), PostgresStore(dsn, CONFIG)
    first.migrate()
    first.migrate()
    second.migrate()
    assert query(dsn, "SELECT version FROM schema_migrations ORDER BY 1") == [
        (version,) for version, _ in MIGRATIONS
    ]
    tables = query(
        dsn,
        "SELECT relname, relkind FROM pg_class WHERE relnamespace = 'public'::regnamespace"
        " AND relkind IN ('r', 'p') ORDER BY 1",
    )
    assert tables == [
        ("allocated_hourly", "r"),
        ("allocated_nodes", "r"),
        ("allocation_dirty", "r"),
        ("domain_hourly", "r"),
        ("node_usage", "r"),
        ("pod_busy", "r"),
        ("pod_usage", "r"),
        ("quarantine_counts", "r"),
        ("quarantined_spans", "r"),
        ("repricings", "r"),
        ("schema_migrations", "r"),
        ("store_settings", "r"),
        ("trace_charges", "p"),
        ("trace_keys", "r"),
        ("traces", "p"),
        ("unpriced_reasons", "r"),
    ]
    typed: TotalsStore = first
    assert typed.domain_spend(NOW - timedelta(hours=24), NOW) == {}
    first.close()
    second.close()


def test_a_write_before_migrate_raises_a_store_error(dsn: str) -> None:
    opened = PostgresStore(dsn, CONFIG)
    missing = 'totals store ensure_partitions: relation "traces" does not exist'
    with pytest.raises(StoreError, match=missing):
        write(opened, [span(1, 1, root=True)])
    opened.close()


def test_writes_on_both_sides_of_a_month_boundary_and_retention_by_dropping_partitions(
    store: PostgresStore, dsn: str
) -> None:
    before = datetime(2025, 1, 31, 23, 59, tzinfo=UTC)
    after = datetime(2025, 2, 1, 0, 1, tzinfo=UTC)
    start = ns_from_utc(before) - 30 * SECOND
    january = [span(1, 1, start=start, root=True, name="GET /"), span(1, 2, start=start)]
    write(store, january, before)
    # A retry of the January batch and the rest of trace 1 land in February; trace 2 is new.
    write(store, [*january, span(1, 3, start=start), span(2, 1, start=start, root=True)], after)
    partitions = {
        row[0]
        for row in query(dsn, "SELECT relname FROM pg_class WHERE relispartition AND relkind = 'r'")
    }
    assert partitions == {
        f"{table}_p2025{month:02d}" for table in ("traces", "trace_charges") for month in (1, 2, 3)
    }
    assert query(dsn, "SELECT trace_id, span_count, cost_usd, span_ids FROM traces_p202501") == [
        (f"{1:032x}", 3, 3.0, bytes.fromhex(f"{1:016x}{2:016x}{3:016x}"))
    ]
    assert query(dsn, "SELECT trace_id FROM traces_p202502") == [(f"{2:032x}",)]
    assert store.ensure_partitions(after) == ["traces_p202504", "trace_charges_p202504"]
    assert store.ensure_partitions(after) == []

    dropped = store.drop_partitions_before(datetime(2025, 2, 15, tzinfo=UTC))
    assert dropped == ["traces_p202501", "trace_charges_p202501"]
    assert query(dsn, "SELECT trace_id FROM traces") == [(f"{2:032x}",)]
    assert query(dsn, "SELECT trace_id FROM trace_keys") == [(f"{2:032x}",)]
    assert store.drop_partitions_before(datetime(2025, 2, 15, tzinfo=UTC)) == []


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


@pytest.fixture(scope="module")
def shared_stores(pg_server: str) -> Iterator[tuple[str, list[PostgresStore]]]:
    database = create_database(pg_server, "totals")
    stores = [PostgresStore(database, CONFIG), PostgresStore(database, CONFIG)]
    stores[0].migrate()
    yield database, stores
    for opened in stores:
        opened.close()


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))
@given(traces=traces_strategy, data=st.data())
def test_totals_are_exact_across_batches_replays_and_two_concurrent_stores(
    shared_stores: tuple[str, list[PostgresStore]],
    traces: list[list[tuple[float, bool, bool, int]]],
    data: st.DataObject,
) -> None:
    dsn, stores = shared_stores
    with psycopg.connect(dsn) as connection:
        connection.execute(
            "TRUNCATE trace_keys, quarantined_spans, traces, domain_hourly, quarantine_counts"
        )
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
    spans.append(span(999, 1, start=0))  # quarantined (missing time), in its own trace
    order = data.draw(st.permutations(spans))
    cuts = sorted(data.draw(st.lists(st.integers(0, len(order)), max_size=4)))
    batches = [order[a:b] for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]
    replays = data.draw(st.lists(st.sampled_from(batches), max_size=3))
    work: list[list[list[SpanContribution]]] = [[], []]
    for batch in batches + replays:
        work[data.draw(st.integers(0, 1))].append(batch)
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
    for batch in replays:  # an exporter retrying batches already acknowledged
        write(stores[1], batch, NOW + timedelta(minutes=5))

    accepted = [s for s in spans if s.trace_id != f"{999:032x}"]
    totals = query(
        dsn,
        "SELECT sum(cost_usd), sum(span_count), sum(priced_count), sum(unpriced_count), count(*)"
        " FROM traces",
    )[0]
    assert math.isclose(
        totals[0], math.fsum(s.cost_usd for s in accepted), rel_tol=1e-9, abs_tol=1e-12
    )
    assert totals[1:] == (
        len(accepted),
        sum(1 for s in accepted if s.priced),
        sum(1 for s in accepted if not s.priced),
        len(traces),
    )
    assert query(dsn, "SELECT reason, spans FROM quarantine_counts") == [("missing_time", 1)]
    assert_rollup_matches_traces(dsn)


@pytest.mark.parametrize("first_exists", [False, True], ids=["new-trace", "existing-trace"])
def test_a_second_writer_waits_on_the_trace_key_and_then_adds(
    dsn: str, monkeypatch: pytest.MonkeyPatch, first_exists: bool
) -> None:
    """Two stores write spans of one trace at once: the second blocks on the trace's key
    until the first commits, then reads the first's row and adds to it (not a second
    row, not an overwrite). With a new trace the first inserts its row by COPY."""
    stores = [PostgresStore(dsn, CONFIG), PostgresStore(dsn, CONFIG)]
    stores[0].migrate()
    if first_exists:
        write(stores[0], [span(8, 1, root=True, cost=1.0)])
    locked, go = threading.Event(), threading.Event()
    read_stored = write_module._read_stored

    def paused(*args: Any) -> Any:
        if threading.current_thread().name == "first":
            locked.set()  # the first holds the trace's key lock from here to its commit
            assert go.wait(30)
        return read_stored(*args)

    monkeypatch.setattr(write_module, "_read_stored", paused)
    errors: list[BaseException] = []

    def run(store: PostgresStore, spans: list[SpanContribution]) -> None:
        try:
            write(store, spans)
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    first = threading.Thread(target=run, args=(stores[0], [span(8, 2, cost=2.0)]), name="first")
    second = threading.Thread(
        target=run, args=(stores[1], [span(8, 3, cost=4.0), span(8, 2, cost=2.0)]), name="second"
    )
    first.start()
    assert locked.wait(30)
    second.start()
    # The second's backend waits for a lock (the first's key row) while the first holds it.
    waiting = "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
    for _ in range(300):
        if query(dsn, waiting) == [(1,)]:
            break
        time.sleep(0.05)
    assert query(dsn, waiting) == [(1,)]
    assert second.is_alive()
    go.set()
    first.join(30)
    second.join(30)
    assert not errors
    row = trace_row(dsn, 8)
    spans = 3 if first_exists else 2
    assert (row["span_count"], row["cost_usd"]) == (spans, 7.0 if first_exists else 6.0)
    assert len(row["span_ids"]) == 8 * spans
    assert query(dsn, "SELECT count(*) FROM traces") == [(1,)]
    assert_rollup_matches_traces(dsn)
    for store in stores:
        store.close()


# -- quarantine, orphans, late roots -------------------------------------------------


def test_quarantined_spans_are_stored_with_their_reason_counted_once_and_kept_out(
    store: PostgresStore, dsn: str
) -> None:
    batch = [
        span(1, 1, root=True, cost=2.0),
        span(1, 2, start=NOW_NS + 3 * 3600 * SECOND),  # future
        span(2, 1, start=NOW_NS - 3 * 3600 * SECOND),  # past
        span(0, 1),  # invalid id
    ]
    # The retention horizon two hours back, so that a span ending three hours ago is past.
    accepted, quarantined = split(batch, NOW, SKEW, NOW - timedelta(hours=2))
    result = store.write(accepted, quarantined, NOW)
    assert (result.accepted, result.duplicates, result.traces) == (1, 0, 1)
    assert result.quarantined == {"future": 1, "past": 1, "invalid_id": 1}
    # Replayed three hours later: span (1, 2) would now be accepted, but it is stored.
    later = NOW + timedelta(hours=3)
    accepted, quarantined = split(batch, later, SKEW, later - timedelta(hours=2))
    again = store.write(accepted, quarantined, later)
    assert (again.accepted, again.duplicates, again.quarantined) == (0, 4, {})
    assert sorted(query(dsn, "SELECT reason, spans FROM quarantine_counts")) == [
        ("future", 1),
        ("invalid_id", 1),
        ("past", 1),
    ]
    # The accepted span's id in its trace row; every quarantined span with its reason
    # and facts in quarantined_spans.
    assert query(dsn, "SELECT span_ids FROM traces") == [(bytes.fromhex(f"{1:016x}"),)]
    assert query(
        dsn, "SELECT trace_id, span_id, reason, start_ns FROM quarantined_spans ORDER BY 1, 2"
    ) == [
        (f"{0:032x}", f"{1:016x}", "invalid_id", NOW_NS - 60 * SECOND),
        (f"{1:032x}", f"{2:016x}", "future", NOW_NS + 3 * 3600 * SECOND),
        (f"{2:032x}", f"{1:016x}", "past", NOW_NS - 3 * 3600 * SECOND),
    ]
    assert query(dsn, "SELECT trace_id, cost_usd FROM traces") == [(f"{1:032x}", 2.0)]


def test_ids_at_the_ends_of_their_ranges_and_unkeyable_ids_are_stored_once(
    store: PostgresStore, dsn: str
) -> None:
    top = 2**128 - 1  # trace id ff...ff; span ids with the high bit set are negative bigints
    batch = [
        span(top, 2**64 - 1, root=True),
        span(top, 2**63, cost=2.0),
        span(top, 2**63 - 1, cost=4.0),
    ]
    unkeyable = SpanContribution(
        trace_id="0123456789abcdef", span_id="01", start_ns=NOW_NS, end_ns=NOW_NS
    )
    accepted, quarantined = split([*batch, unkeyable], NOW, SKEW)
    assert [entry.reason for entry in quarantined] == ["invalid_id"]
    first = store.write(accepted, quarantined, NOW)
    assert (first.accepted, first.duplicates, first.quarantined) == (3, 0, {"invalid_id": 1})
    again = store.write([*accepted, accepted[0]], quarantined, NOW)
    assert (again.accepted, again.duplicates, again.quarantined) == (0, 5, {})
    # Each span id's 8 bytes, in the order stored.
    assert query(dsn, "SELECT span_ids FROM traces") == [
        (bytes.fromhex("ffffffffffffffff80000000000000007fffffffffffffff"),)
    ]
    assert query(dsn, "SELECT trace_id, span_id, reason FROM quarantined_spans") == [
        ("0123456789abcdef", "01", "invalid_id")
    ]
    assert query(dsn, "SELECT trace_id FROM trace_keys") == [("f" * 32,)]
    assert query(dsn, "SELECT cost_usd, span_count FROM traces") == [(7.0, 3)]


def test_a_large_trace_split_and_replayed_keeps_each_span_id_once(
    store: PostgresStore, dsn: str
) -> None:
    spans = [span(7, index, cost=0.001 * index) for index in range(1, 3001)]
    batches = [spans[:1200], spans[1000:2500], spans[2400:], spans[:1200]]
    results = [store.write(batch, [], NOW) for batch in batches]
    assert [r.accepted for r in results] == [1200, 1300, 500, 0]
    assert [r.duplicates for r in results] == [0, 200, 100, 1200]
    row = trace_row(dsn, 7)
    assert row["span_count"] == 3000
    assert math.isclose(row["cost_usd"], math.fsum(s.cost_usd for s in spans), rel_tol=1e-12)
    stored = row["span_ids"]
    assert len(stored) == 3000 * 8
    assert {stored[i : i + 8] for i in range(0, len(stored), 8)} == {
        bytes.fromhex(s.span_id) for s in spans
    }
    assert_rollup_matches_traces(dsn)


def test_adding_to_a_trace_locks_its_key_without_writing_a_new_version_of_it(
    store: PostgresStore, dsn: str
) -> None:
    write(store, [span(4, 1, root=True)])
    before = query(dsn, "SELECT ctid, xmin FROM trace_keys")
    write(store, [span(4, 2)])
    write(store, [span(4, 2), span(4, 3)])  # a replay, and one more span
    assert query(dsn, "SELECT ctid, xmin FROM trace_keys") == before
    assert trace_row(dsn, 4)["span_count"] == 3


def test_a_span_first_quarantined_is_not_accepted_later_but_its_trace_starts(
    store: PostgresStore, dsn: str
) -> None:
    future = span(5, 1, start=NOW_NS + 3 * 3600 * SECOND, cost=9.0)
    write(store, [future])
    assert query(dsn, "SELECT count(*) FROM traces") == [(0,)]
    assert query(dsn, "SELECT trace_id FROM trace_keys") == [(f"{5:032x}",)]
    # Three hours later the clock skew is gone: the span is in time, but stored.
    later = NOW + timedelta(hours=3)
    child = span(5, 2, start=NOW_NS + 3 * 3600 * SECOND, cost=1.0)
    accepted, quarantined = split([future, child], later, SKEW)
    assert (len(accepted), len(quarantined)) == (2, 0)
    result = store.write(accepted, quarantined, later)
    assert (result.accepted, result.duplicates, result.traces) == (1, 1, 1)
    row = trace_row(dsn, 5)
    assert (row["cost_usd"], row["span_count"], row["span_ids"]) == (
        1.0,
        1,
        bytes.fromhex(f"{2:016x}"),
    )
    assert query(dsn, "SELECT reason, spans FROM quarantine_counts") == [("future", 1)]
    assert_rollup_matches_traces(dsn)


def test_spans_no_database_could_hold_as_sent_are_stored_once_made_storable(
    store: PostgresStore, dsn: str
) -> None:
    for _ in range(2):  # and a replay adds nothing
        write(store, odd_contributions())
    row = trace_row(dsn, 9)
    assert (row["transaction_name"], row["root_service"], row["span_count"]) == (
        "pay\ufffd",
        "web\ufffd",
        3,
    )
    assert (row["cost_usd"], row["unpriced_count"]) == (2.0, 1)
    assert query(dsn, "SELECT span_id, reason, start_ns FROM quarantined_spans") == [
        (f"{3:016x}", "future", 2**63 - 1)
    ]


def test_orphans_are_unattributed_after_the_grace_and_no_sooner(
    store: PostgresStore, dsn: str
) -> None:
    write(store, [span(1, 2, cost=0.5, service="search-api")])
    assert store.attribute_orphans(NOW + GRACE - timedelta(microseconds=1), GRACE, "(none)") == 0
    window = (NOW - timedelta(hours=1), NOW + timedelta(hours=1))
    assert store.domain_spend(*window) == {}  # waiting traces are left out
    assert store.attribute_orphans(NOW + GRACE, GRACE, "(none)") == 1
    row = trace_row(dsn, 1)
    assert (row["transaction_name"], row["domain"]) == ("(none)", "discovery")
    assert store.domain_spend(*window) == {"discovery": 0.5}
    assert store.attribute_orphans(NOW + 2 * GRACE, GRACE, "(none)") == 0
    assert_rollup_matches_traces(dsn)


def test_a_late_root_renames_the_trace_and_moves_its_rollup_exactly(
    store: PostgresStore, dsn: str
) -> None:
    write(store, [span(1, 2, cost=0.1), span(1, 3, cost=0.2), span(2, 2, cost=10.0)])
    store.attribute_orphans(NOW + GRACE, GRACE, "(unattributed)")
    window = (NOW - timedelta(hours=24), NOW + timedelta(hours=1))
    assert store.domain_spend(*window) == {"(unattributed)": pytest.approx(10.3)}
    root = span(1, 1, cost=0.3, root=True, transaction="checkout", environment="staging")
    write(store, [root], NOW + timedelta(minutes=30))
    row = trace_row(dsn, 1)
    assert (row["transaction_name"], row["domain"], row["environment"], row["span_count"]) == (
        "checkout",
        "payments",
        "staging",
        3,
    )
    assert store.domain_spend(*window) == {
        "payments": pytest.approx(0.6, rel=1e-12),
        "(unattributed)": 10.0,
    }
    assert store.domain_spend(*window, exclude_environments={"staging"}) == {"(unattributed)": 10.0}
    hour = datetime(2025, 1, 31, 12, tzinfo=UTC)
    assert query(
        dsn, "SELECT domain, traces, spans FROM domain_hourly WHERE hour = %s ORDER BY 1", hour
    ) == [("(unattributed)", 1, 1), ("payments", 1, 3)]  # the emptied row is gone
    assert_rollup_matches_traces(dsn)


def test_rolling_24h_domain_spend_equals_the_trace_rows_without_excluded_environments(
    store: PostgresStore, dsn: str
) -> None:
    write_thirty_hours(store)

    since, until = NOW - timedelta(hours=24), NOW
    spend = store.domain_spend(since, until, {"staging", "dev"})
    expected = query(
        dsn,
        "SELECT domain, sum(cost_usd) FROM traces"
        " WHERE first_seen >= %s AND first_seen <= %s AND domain IS NOT NULL"
        " AND coalesce(environment, '') NOT IN ('staging', 'dev') GROUP BY domain",
        since,
        until,
    )
    assert spend.keys() == {row[0] for row in expected}
    for domain, cost in expected:
        assert math.isclose(spend[domain], cost, rel_tol=1e-9)
    assert "payments" in spend
    assert sum(store.domain_spend(since, until).values()) > sum(spend.values())
    assert_rollup_matches_traces(dsn)


# -- failures ------------------------------------------------------------------------


def assert_nothing_stored(dsn: str) -> None:
    tables = (
        "trace_keys",
        "quarantined_spans",
        "traces",
        "domain_hourly",
        "quarantine_counts",
    )
    for table in tables:
        statement = sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))
        with psycopg.connect(dsn) as connection:
            assert connection.execute(statement).fetchone() == (0,), table


def test_a_check_violation_midway_leaves_nothing_and_a_retry_adds_once(
    store: PostgresStore, dsn: str
) -> None:
    good = [span(1, 1, root=True, cost=1.0), span(3, 1, start=0)]
    with pytest.raises(StoreError, match=r"totals store write: .*check constraint") as raised:
        write(store, [*good, span(2, 1, cost=-1.0)])
    assert isinstance(raised.value.__cause__, psycopg.errors.CheckViolation)
    assert_nothing_stored(dsn)
    write(store, good)
    write(store, good)
    assert trace_row(dsn, 1)["span_count"] == 1
    assert store.domain_spend(NOW - timedelta(hours=1), NOW) == {"op": 1.0}


def test_an_exception_after_the_trace_rows_leaves_nothing_and_is_raised_as_is(
    store: PostgresStore, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_apply(*_args: object) -> None:
        raise RuntimeError("injected before the rollup")

    monkeypatch.setattr(write_module, "_apply_rollup", broken_apply)
    with pytest.raises(RuntimeError, match="injected"):
        write(store, [span(1, 1, root=True), span(2, 1, start=0)])
    assert_nothing_stored(dsn)
    monkeypatch.undo()
    write(store, [span(1, 1, root=True), span(2, 1, start=0)])
    assert trace_row(dsn, 1)["span_count"] == 1
    assert_rollup_matches_traces(dsn)


def test_an_unreachable_server_is_a_store_error_naming_it_without_the_password() -> None:
    with pytest.raises(StoreError) as raised:
        PostgresStore(
            "postgresql://spancost:s3cret-pw@127.0.0.1:1/totals",
            connect_timeout=timedelta(seconds=2),
        )
    message = str(raised.value)
    assert "cannot connect to PostgreSQL totals store" in message
    assert "127.0.0.1" in message and "password=***" in message
    assert "s3cret-pw" not in message


def test_an_unparsable_dsn_is_a_store_error_without_the_password() -> None:
    with pytest.raises(StoreError, match="unparsable DSN") as raised:
        PostgresStore("host=db password=s3cret-pw sslmode")
    assert "s3cret-pw" not in str(raised.value)


def test_a_wrong_database_is_named(pg_server: str) -> None:
    with pytest.raises(StoreError, match='database "no_such_db" does not exist'):
        PostgresStore(pg_server.replace("dbname=postgres", "dbname=no_such_db"))


def test_masked_dsn_hides_the_password() -> None:
    assert "s3cret" not in masked_dsn("postgresql://u:s3cret@db:5432/totals")
    masked = masked_dsn("host=db user=u password=s3cret")
    assert sorted(masked.split()) == ["host=db", "password=***", "user=u"]


def test_a_trace_row_carries_its_cloud_account_the_roots_first(
    store: PostgresStore, dsn: str
) -> None:
    # The earliest span arrives first; the root's account wins once the root is in.
    write(store, [span(90, 2, start=NOW_NS - 90 * SECOND, account="111111111111")])
    row = trace_row(dsn, 90)
    assert (row["earliest_account"], row["root_account"]) == ("111111111111", None)
    write(store, [span(90, 1, root=True, account="222222222222")])
    row = trace_row(dsn, 90)
    assert (row["earliest_account"], row["root_account"]) == ("111111111111", "222222222222")
    write(store, [span(90, 3, start=NOW_NS - 120 * SECOND, account=None)])
    assert trace_row(dsn, 90)["earliest_account"] is None  # the new earliest span has none


def test_every_span_is_charged_to_its_owner_and_a_forged_root_contests(dsn: str) -> None:
    owned = PostgresStore(dsn, OWNED_CONFIG)
    owned.migrate()
    try:
        spend = write_owned_traces(owned)
    finally:
        owned.close()
    assert spend == pytest.approx(OWNED_SPEND)
    labels = query(dsn, "SELECT trace_id, transaction_name, domain, contested FROM traces")
    assert {trace: (name, domain) for trace, name, domain, _ in labels} == OWNED_LABELS
    assert {trace for trace, _, _, contested in labels if contested} == {f"{1:032x}"}
    reopened = PostgresStore(dsn, OWNED_CONFIG)
    try:
        since = NOW - timedelta(hours=24)
        assert reopened.domain_coverage(since, NOW) == OWNED_COVERAGE
    finally:
        reopened.close()
    # The rollup is the sum of the charges, per hour, domain and environment.
    expected = query(
        dsn,
        "SELECT date_trunc('hour', first_seen), domain, environment, sum(cost_usd), count(*),"
        " sum(spans) FROM trace_charges GROUP BY 1, 2, 3 ORDER BY 1, 2, 3",
    )
    got = query(
        dsn,
        "SELECT hour, domain, environment, cost_usd, traces, spans FROM domain_hourly"
        " ORDER BY 1, 2, 3",
    )
    assert [row[:3] for row in got] == [row[:3] for row in expected]
    for have, want in zip(got, expected, strict=True):
        assert have[3] == pytest.approx(want[3]) and have[4:] == want[4:]


def test_the_rolling_24_hours_are_exactly_24_hours(store: PostgresStore) -> None:
    spend = write_rolling_edges(store)
    assert spend == {f"at -{before}": 1.0 for before, counted in ROLLING_EDGES.items() if counted}


def test_coverage_and_unpriced_reasons_count_each_stored_span_once(store: PostgresStore) -> None:
    coverage, reasons = write_coverage(store)
    assert coverage == COVERAGE
    assert reasons == REASONS
