"""Upgrading a PostgreSQL totals database that holds version-1 data (spans, traces, the
rollup, quarantined spans) to the current schema: totals kept, replays still deduped; and
one at version 7 to 8 (the allocation): old traces take busy time and move it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

import spancost.store.postgres as postgres_module
from spancost.store.migrations.postgres import MIGRATIONS
from spancost.store.postgres import PostgresStore
from spancost.totals import TotalsConfig, split
from spancost.totals.aggregate import SpanContribution, ns_from_utc
from tests.pg import create_database

KEYED = datetime(2025, 1, 31, 23, 0, tzinfo=UTC)
LATER = datetime(2025, 2, 1, 0, 30, tzinfo=UTC)  # the next month: partition of the trace's
SECOND = 10**9
START = ns_from_utc(KEYED) - 60 * SECOND
SKEW = timedelta(hours=2)
CONFIG = TotalsConfig(domains_by_transaction={"checkout": "payments"})
HIGH_SPAN = "fedcba9876543210"  # a negative bigint once compact
TRACE_1, TRACE_2 = f"{1:032x}", f"{2:032x}"


def span(trace_id: str, span_id: str, cost: float, *, root: bool = False) -> SpanContribution:
    return SpanContribution(
        trace_id=trace_id,
        span_id=span_id,
        start_ns=START,
        end_ns=START + SECOND,
        cost_usd=cost,
        is_root=root,
        name="POST /cart" if root else "SELECT",
        service="shop",
        environment="production",
        transaction_attribute="checkout" if root else None,
    )


# What a version-1 store held after writing, at KEYED: trace 1 (a root, a child whose
# span id has its high bit set, a span quarantined as future), trace 2 without its root
# (pending), and a span with an invalid trace id.
ACCEPTED = [
    span(TRACE_1, f"{1:016x}", 1.0, root=True),
    span(TRACE_1, HIGH_SPAN, 0.5),
    span(TRACE_2, f"{1:016x}", 4.0),
]
FUTURE = SpanContribution(
    trace_id=TRACE_1,
    span_id=f"{3:016x}",
    start_ns=ns_from_utc(KEYED) + 5 * 3600 * SECOND,
    end_ns=ns_from_utc(KEYED) + 5 * 3600 * SECOND + SECOND,
    name="late clock",
)
INVALID = SpanContribution(trace_id="abcd", span_id="", start_ns=START, end_ns=START + SECOND)

_V1_CONTRIBUTION = """
INSERT INTO contributions (
    trace_id, span_id, keyed_at, ingested_at, quarantine_reason, cost_usd, unpriced_reason,
    is_root, start_ns, end_ns, name, service, environment, account, transaction_attribute
) VALUES (%s, %s, %s, %s, %s, %s, NULL, %s, %s, %s, %s, %s, %s, NULL, %s)
"""

_V1_TRACE = """
INSERT INTO traces (
    trace_id, keyed_at, cost_usd, span_count, priced_count, unpriced_count, start_ns, end_ns,
    first_seen, last_update, earliest_span_id, earliest_start_ns, earliest_service,
    earliest_environment, root_span_id, root_start_ns, root_transaction, root_service,
    root_environment, transaction_name, domain, environment
) VALUES (
    %(trace)s, %(keyed)s, %(cost)s, %(spans)s, %(spans)s, 0, %(start)s, %(end)s, %(keyed)s,
    %(keyed)s, %(earliest)s, %(start)s, 'shop', 'production', %(root)s, %(root_start)s,
    %(transaction)s, %(root_service)s, %(root_environment)s, %(transaction)s, %(domain)s,
    'production'
)
"""


def v1_trace(trace_id: str, cost: float, spans: int, *, rooted: bool) -> dict[str, Any]:
    root = {
        "root": f"{1:016x}" if rooted else None,
        "root_start": START if rooted else None,
        "transaction": "checkout" if rooted else None,
        "domain": "payments" if rooted else None,
        "root_service": "shop" if rooted else None,
        "root_environment": "production" if rooted else None,
    }
    return {
        "trace": trace_id,
        "keyed": KEYED,
        "cost": cost,
        "spans": spans,
        "start": START,
        "end": START + SECOND,
        "earliest": f"{1:016x}",
        **root,
    }


def load_version_1(dsn: str) -> None:
    with psycopg.connect(dsn) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        for trace_id in (TRACE_1, TRACE_2, INVALID.trace_id):
            connection.execute(
                "INSERT INTO trace_keys (trace_id, keyed_at) VALUES (%s, %s)", (trace_id, KEYED)
            )
        spans = [(s, None) for s in ACCEPTED] + [(FUTURE, "future"), (INVALID, "invalid_id")]
        for contribution, reason in spans:
            connection.execute(
                _V1_CONTRIBUTION,
                (
                    contribution.trace_id,
                    contribution.span_id,
                    KEYED,
                    KEYED,
                    reason,
                    contribution.cost_usd,
                    contribution.is_root,
                    contribution.start_ns,
                    contribution.end_ns,
                    contribution.name,
                    contribution.service,
                    contribution.environment,
                    contribution.transaction_attribute,
                ),
            )
        connection.execute(_V1_TRACE, v1_trace(TRACE_1, 1.5, 2, rooted=True))
        connection.execute(_V1_TRACE, v1_trace(TRACE_2, 4.0, 1, rooted=False))
        hour = KEYED.replace(minute=0)
        connection.execute(
            "INSERT INTO domain_hourly VALUES (%s, 'payments', 'production', 1.5, 1, 2),"
            " (%s, '', 'production', 4.0, 1, 1)",
            (hour, hour),
        )
        connection.execute("INSERT INTO quarantine_counts VALUES ('future', 1), ('invalid_id', 1)")


def rows(dsn: str, statement: str, *parameters: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        return connection.execute(statement.encode(), parameters).fetchall()


# The trace columns of version 1 (later versions add columns, empty for old rows).
_V1_TRACES = (
    "SELECT trace_id, keyed_at, cost_usd, span_count, priced_count, unpriced_count, start_ns,"
    " end_ns, first_seen, last_update, earliest_span_id, earliest_start_ns, earliest_service,"
    " earliest_environment, root_span_id, root_start_ns, root_transaction, root_service,"
    " root_environment, transaction_name, domain, environment FROM traces ORDER BY trace_id"
)


def totals(dsn: str) -> tuple[list[tuple[Any, ...]], ...]:
    return (
        rows(dsn, _V1_TRACES),
        rows(dsn, "SELECT * FROM domain_hourly ORDER BY 1, 2, 3"),
        rows(dsn, "SELECT * FROM quarantine_counts ORDER BY 1"),
    )


@pytest.fixture
def version_1(
    pg_server: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[str, PostgresStore]]:
    dsn = create_database(pg_server, "totals_v1")
    store = PostgresStore(dsn, CONFIG)
    with monkeypatch.context() as patch:
        patch.setattr(postgres_module, "MIGRATIONS", MIGRATIONS[:1])
        patch.setattr(postgres_module, "PARTITIONED_TABLES", ("contributions", "traces"))
        store.migrate()
        store.ensure_partitions(KEYED)
    load_version_1(dsn)
    yield dsn, store
    store.close()


def test_migrating_version_1_data_keeps_totals_and_dedupes_replays(
    version_1: tuple[str, PostgresStore],
) -> None:
    dsn, store = version_1
    before = totals(dsn)
    partitions = "SELECT relname FROM pg_class WHERE relispartition AND relkind = 'r' ORDER BY 1"
    partitions_before = rows(dsn, partitions)

    store.migrate()
    assert rows(dsn, "SELECT version FROM schema_migrations ORDER BY 1") == [
        (version,) for version, _ in MIGRATIONS
    ]
    assert totals(dsn) == before
    # Migration 2 rebuilt contributions with its partitions, and 4 dropped it; 7 made
    # trace_charges with a partition for each month of traces.
    traces_partitions = [row for row in partitions_before if row[0].startswith("traces")]
    charges_partitions = [
        (name.replace("traces", "trace_charges"),) for (name,) in traces_partitions
    ]
    assert rows(dsn, partitions) == sorted(charges_partitions + traces_partitions)
    # Each accepted span's id is in its trace row (8 bytes each, in the order of the
    # version-2 keys: signed, so the high span id first); the quarantined ones are not.
    assert rows(dsn, "SELECT trace_id, span_ids FROM traces ORDER BY 1") == [
        (TRACE_1, bytes.fromhex(HIGH_SPAN + f"{1:016x}")),
        (TRACE_2, bytes.fromhex(f"{1:016x}")),
    ]
    assert rows(dsn, "SELECT to_regclass('contributions')") == [(None,)]
    assert rows(
        dsn, "SELECT trace_id, span_id, reason, name FROM quarantined_spans ORDER BY 1"
    ) == [
        (TRACE_1, f"{3:016x}", "future", "late clock"),
        ("abcd", "", "invalid_id", ""),
    ]

    # The exporter replays everything in the next month, the future span now in time:
    # nothing is added, nothing quarantined again.
    accepted, quarantined = split([*ACCEPTED, INVALID], LATER, SKEW)
    assert len(accepted) == 3
    result = store.write([*accepted, FUTURE], quarantined, LATER)
    assert (result.accepted, result.duplicates, result.quarantined) == (0, 5, {})
    assert totals(dsn) == before

    # A new span of trace 1 goes to January, the trace's month, and adds once.
    late = span(TRACE_1, f"{4:016x}", 0.25)
    for _ in range(2):
        store.write([late], [], LATER)
    assert rows(dsn, "SELECT cost_usd, span_count FROM traces_p202501 WHERE trace_id = %s",
                TRACE_1) == [(1.75, 3)]  # fmt: skip
    assert rows(dsn, "SELECT length(span_ids) FROM traces WHERE trace_id = %s", TRACE_1) == [(24,)]
    assert rows(dsn, "SELECT count(*) FROM traces_p202502") == [(0,)]
    assert rows(dsn, "SELECT sum(cost_usd), sum(traces), sum(spans) FROM domain_hourly") == [
        (5.75, 2, 4)
    ]

    # Retention drops January with its quarantined spans.
    assert store.drop_partitions_before(datetime(2025, 2, 15, tzinfo=UTC)) == [
        "traces_p202501",
        "trace_charges_p202501",
    ]
    assert rows(dsn, "SELECT count(*) FROM quarantined_spans") == [(0,)]
    assert rows(dsn, "SELECT count(*) FROM trace_keys") == [(0,)]


def test_migrations_are_appended_and_reruns_change_nothing(
    version_1: tuple[str, PostgresStore],
) -> None:
    dsn, store = version_1
    versions = [version for version, _ in MIGRATIONS]
    assert versions[:4] == [1, 2, 3, 4]
    assert versions == sorted(set(versions))  # appended, never reordered
    store.migrate()
    after = totals(dsn)
    store.migrate()
    assert totals(dsn) == after
    assert rows(dsn, "SELECT sum(length(span_ids)) FROM traces") == [(24,)]


@pytest.fixture
def version_7(
    version_1: tuple[str, PostgresStore], monkeypatch: pytest.MonkeyPatch
) -> tuple[str, PostgresStore]:
    """The version-1 data, migrated to version 7 (the schema before the allocation's)."""
    dsn, store = version_1
    with monkeypatch.context() as patch:
        patch.setattr(postgres_module, "MIGRATIONS", MIGRATIONS[:7])
        store.migrate()
    assert rows(dsn, "SELECT max(version) FROM schema_migrations") == [(7,)]
    return dsn, store


def segment_of(trace_id: str, span_id: str, pod: str, *, root: bool = False) -> SpanContribution:
    """A service segment of one second on `pod`, in the hour before KEYED."""
    return span(trace_id, span_id, 0.0, root=root)._replace(pod=pod, segment=True)


def test_migrating_version_7_data_keeps_totals_and_adds_the_allocation(
    version_7: tuple[str, PostgresStore],
) -> None:
    dsn, store = version_7
    before = totals(dsn)
    store.migrate()
    assert rows(dsn, "SELECT max(version) FROM schema_migrations") == [(10,)]
    assert totals(dsn) == before
    assert rows(dsn, "SELECT count(*) FROM traces WHERE busy IS NOT NULL") == [(0,)]
    for table in ("pod_busy", "node_usage", "pod_usage", "allocation_dirty", "allocated_hourly",
                  "allocated_nodes", "repricings"):  # fmt: skip
        assert rows(dsn, f"SELECT count(*) FROM {table}") == [(0,)], table  # noqa: S608

    # Old traces take busy time: trace 1 (named) under its labels, trace 2 (waiting for
    # its root) as pending until its root names it, when its busy time moves.
    hour_ns = START // (3600 * SECOND) * 3600 * SECOND
    store.write([segment_of(TRACE_1, f"{5:016x}", "web")], [], LATER)
    store.write([segment_of(TRACE_2, f"{5:016x}", "worker")], [], LATER)
    busy = "SELECT hour_ns, pod, domain, transaction_name, environment, seconds, segments" \
        " FROM pod_busy ORDER BY 1, 2"  # fmt: skip
    assert rows(dsn, busy) == [
        (hour_ns, "web", "payments", "checkout", "production", 1.0, 1.0),
        (hour_ns, "worker", "", "", "production", 1.0, 1.0),
    ]
    store.write([span(TRACE_2, f"{6:016x}", 0.0, root=True)], [], LATER)
    assert rows(dsn, busy) == [
        (hour_ns, "web", "payments", "checkout", "production", 1.0, 1.0),
        (hour_ns, "worker", "payments", "checkout", "production", 1.0, 1.0),
    ]
    assert rows(dsn, "SELECT busy FROM traces WHERE trace_id = %s", TRACE_2) == [
        (f"worker\t{hour_ns}\t1.0\t1.0\t0.0\n",)
    ]
    assert rows(dsn, "SELECT hour_ns FROM allocation_dirty") == [(hour_ns,)]
    assert rows(dsn, "SELECT sum(cost_usd), sum(traces), sum(spans) FROM domain_hourly") == [
        (5.5, 2, 6)
    ]
