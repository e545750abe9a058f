"""`spancost db migrate` and `spancost db maintain`, on SQLite and a real PostgreSQL:
migrations from empty and re-run, partitions across a month boundary, retention, and
bad database URLs named without their password."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from spancost.cli import cli
from spancost.store import open_store
from spancost.store.common import retention_cutoff
from spancost.store.migrations.postgres import MIGRATIONS as PG_MIGRATIONS
from spancost.store.migrations.sqlite import MIGRATIONS as SQLITE_MIGRATIONS
from spancost.totals import TotalsConfig, split
from spancost.totals.aggregate import SpanContribution, ns_from_utc
from tests.pg import create_database

SECOND = 10**9
SKEW = timedelta(hours=2)


def run(*arguments: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(arguments), env=env)


def span(trace: int, index: int, at: datetime, *, root: bool = True) -> SpanContribution:
    start = ns_from_utc(at) - 60 * SECOND
    return SpanContribution(
        trace_id=f"{trace:032x}",
        span_id=f"{index:016x}",
        start_ns=start,
        end_ns=start + SECOND,
        cost_usd=1.0,
        unpriced_reason=None,
        is_root=root,
        name="checkout",
        service="web",
        environment="production",
    )


def write(url: str, spans: list[SpanContribution], at: datetime) -> None:
    store = open_store(url, TotalsConfig())
    try:
        accepted, quarantined = split(spans, at, SKEW)
        store.write(accepted, quarantined, at)
    finally:
        store.close()


def test_retention_keeps_the_current_month_and_whole_months_before() -> None:
    now = datetime(2025, 3, 15, 8, tzinfo=UTC)
    assert retention_cutoff(now, 1) == datetime(2025, 2, 1, tzinfo=UTC)
    assert retention_cutoff(now, 13) == datetime(2024, 2, 1, tzinfo=UTC)


# -- SQLite --------------------------------------------------------------------------


def sqlite_rows(path: Path, statement: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(path) as connection:
        return connection.execute(statement).fetchall()


def test_sqlite_migrate_from_empty_and_again(tmp_path: Path) -> None:
    path = tmp_path / "totals.db"
    for _ in range(2):
        result = run("db", "migrate", "--database-url", f"sqlite://{path}")
        assert result.exit_code == 0, result.output
        assert result.stdout == f"totals schema of sqlite:{path} is up to date\n"
    assert sqlite_rows(path, "SELECT version FROM schema_migrations ORDER BY 1") == [
        (version,) for version, _ in SQLITE_MIGRATIONS
    ]
    tables = sqlite_rows(path, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY 1")
    assert [name for (name,) in tables] == [
        "allocated_hourly",
        "allocated_nodes",
        "allocation_dirty",
        "contributions",
        "domain_hourly",
        "node_usage",
        "pod_busy",
        "pod_usage",
        "quarantine_counts",
        "repricings",
        "schema_migrations",
        "store_settings",
        "trace_charges",
        "traces",
        "unpriced_reasons",
    ]


def test_an_empty_database_url_is_the_sqlite_file_in_the_data_directory(tmp_path: Path) -> None:
    env = {"DATABASE_URL": "", "SPANCOST_DATA_DIR": str(tmp_path / "data")}
    result = run("db", "migrate", env=env)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "data" / "totals.db").is_file()


def test_the_database_url_comes_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "env.db"
    result = run("db", "migrate", env={"DATABASE_URL": f"sqlite://{path}"})
    assert result.exit_code == 0, result.output
    assert path.is_file()


def test_sqlite_maintain_deletes_whole_traces_stored_before_the_retention(tmp_path: Path) -> None:
    url = f"sqlite://{tmp_path / 'totals.db'}"
    assert run("db", "migrate", "--database-url", url).exit_code == 0
    december = datetime(2024, 12, 20, tzinfo=UTC)
    january_end = datetime(2025, 1, 31, 23, 59, tzinfo=UTC)
    february = datetime(2025, 2, 1, 0, 1, tzinfo=UTC)
    write(url, [span(1, 1, december), span(1, 2, december, root=False)], december)
    # Trace 2 starts in January and goes on in February: it belongs to January.
    write(url, [span(2, 1, january_end)], january_end)
    write(url, [span(2, 2, february, root=False), span(3, 1, february)], february)

    arguments = ("db", "maintain", "--database-url", url, "--retention-months", "1")
    result = run(*arguments, "--now", "2025-03-10T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert "deleted 2 traces and 4 contributions stored before 2025-02-01" in result.stdout
    path = tmp_path / "totals.db"
    assert sqlite_rows(path, "SELECT trace_id FROM traces") == [(f"{3:032x}",)]
    assert sqlite_rows(path, "SELECT DISTINCT trace_id FROM contributions") == [(f"{3:032x}",)]
    # The hourly rollup is kept, as with PostgreSQL.
    assert sqlite_rows(path, "SELECT sum(traces) FROM domain_hourly") == [(3,)]
    again = run(*arguments, "--now", "2025-03-10T00:00:00Z")
    assert "deleted 0 traces and 0 contributions" in again.stdout


# -- bad URLs ------------------------------------------------------------------------


def test_a_url_of_an_unknown_kind_is_a_usage_error_without_the_password() -> None:
    result = run("db", "migrate", "--database-url", "mysql://admin:hunter2@db/totals")
    assert result.exit_code == 2
    assert "'mysql' is not understood" in result.output
    assert "hunter2" not in result.output


@pytest.mark.parametrize("command", [("db", "migrate"), ("db", "maintain"), ("report",)])
def test_an_unreachable_server_is_named_without_the_password(command: tuple[str, ...]) -> None:
    url = "postgresql://spancost:hunter2@127.0.0.1:1/totals?connect_timeout=2"
    result = run(*command, "--database-url", url)
    assert result.exit_code == 1
    assert "cannot connect to PostgreSQL totals store" in result.output
    assert "host=127.0.0.1" in result.output and "password=***" in result.output
    assert "hunter2" not in result.output
    assert "Traceback" not in result.output


def test_report_refuses_a_bad_window() -> None:
    result = run("report", "--since", "soon", "--database-url", "sqlite:///nonexistent/x.db")
    assert result.exit_code == 2
    assert "--since: must be a duration" in result.output
    both = run("report", "--since", "1h", "--from", "2025-01-01T00:00:00Z")
    assert both.exit_code == 2 and "exclude each other" in both.output
    rate = run("report", "--currency", "EUR")
    assert rate.exit_code == 2 and "--rate EUR=RATE" in rate.output


# -- PostgreSQL ----------------------------------------------------------------------


@pytest.fixture
def dsn(pg_server: str) -> str:
    return create_database(pg_server, "dbcli")


def pg_rows(dsn: str, statement: str) -> list[tuple[Any, ...]]:
    with psycopg.connect(dsn) as connection:
        return connection.execute(statement.encode()).fetchall()


def partitions(dsn: str) -> list[str]:
    statement = "SELECT relname FROM pg_class WHERE relispartition AND relkind = 'r' ORDER BY 1"
    return [name for (name,) in pg_rows(dsn, statement)]


def test_postgres_migrate_from_empty_and_again(dsn: str) -> None:
    for _ in range(2):
        result = run("db", "migrate", "--database-url", dsn)
        assert result.exit_code == 0, result.output
        assert "is up to date" in result.stdout
    assert pg_rows(dsn, "SELECT version FROM schema_migrations ORDER BY 1") == [
        (version,) for version, _ in PG_MIGRATIONS
    ]
    assert {name for (name,) in pg_rows(dsn, "SELECT tablename FROM pg_tables")} >= {
        "trace_keys",
        "quarantined_spans",
        "traces",
        "domain_hourly",
        "quarantine_counts",
    }


def test_postgres_maintain_creates_partitions_across_a_month_boundary_and_drops_old_ones(
    dsn: str,
) -> None:
    maintain = ("db", "maintain", "--database-url", dsn, "--retention-months", "1")
    result = run(*maintain, "--months-ahead", "1", "--now", "2025-01-31T23:30:00Z")
    assert result.exit_code == 0, result.output
    assert partitions(dsn) == [
        "trace_charges_p202501",
        "trace_charges_p202502",
        "traces_p202501",
        "traces_p202502",
    ]
    assert "partitions dropped (before 2024-12): none" in result.stdout
    result = run(*maintain, "--months-ahead", "1", "--now", "2025-02-01T00:30:00Z")
    assert result.exit_code == 0, result.output
    assert "partitions created: traces_p202503, trace_charges_p202503" in result.stdout
    again = run(*maintain, "--months-ahead", "1", "--now", "2025-02-01T00:30:00Z")
    assert "partitions created: none" in again.stdout

    january, february = (
        datetime(2025, 1, 31, 23, 40, tzinfo=UTC),
        datetime(2025, 2, 1, 0, 10, tzinfo=UTC),
    )
    write(dsn, [span(1, 1, january)], january)
    write(dsn, [span(2, 1, february)], february)
    result = run(*maintain, "--months-ahead", "1", "--now", "2025-03-05T00:00:00Z")
    assert result.exit_code == 0, result.output
    assert (
        "partitions dropped (before 2025-02): traces_p202501, trace_charges_p202501"
        in result.stdout
    )
    assert pg_rows(dsn, "SELECT trace_id FROM traces") == [(f"{2:032x}",)]
    assert pg_rows(dsn, "SELECT trace_id FROM trace_keys") == [(f"{2:032x}",)]
    assert "traces_p202504" in partitions(dsn)
    assert "traces_p202501" not in partitions(dsn)


def test_a_missing_postgres_database_is_named(pg_server: str) -> None:
    result = run(
        "db", "migrate", "--database-url", pg_server.replace("dbname=postgres", "dbname=nope")
    )
    assert result.exit_code == 1
    assert 'database "nope" does not exist' in result.output
