"""`spancost export focus` on the README's worked example (with a Lambda invocation priced
per request) written into a real store, SQLite and PostgreSQL: the dataset adds up to
`spancost report --json`'s allocation; its files, its warnings and its usage errors."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from spancost.allocation.core import Weights
from spancost.allocation.pricing import NodePrice
from spancost.cli import cli
from spancost.focus import COLUMNS, MANDATORY
from spancost.store import SQLiteStore
from spancost.store.postgres import PostgresStore
from tests.allocation_data import (
    CONFIG,
    EXPECTED,
    NODE,
    NODE_PRICE,
    NOW,
    PODS,
    hand_case_spans,
    segment,
    write_spans,
)
from tests.pg import create_database

WINDOW = ["--from", "2025-01-31T11:00:00Z", "--to", "2025-01-31T11:59:00Z"]
ACCOUNT = ["--billing-account-id", "123456789012"]
LAMBDA_USD = 0.25


def filled(
    url: str,
    open_store: Callable[[str], SQLiteStore | PostgresStore],
    price: NodePrice = NODE_PRICE,
) -> str:
    """`url` with the worked example and a Lambda invocation of checkout; the usage
    written, not allocated (the export does it, as the report does)."""
    store = open_store(url)
    try:
        store.migrate()
        invocation = segment(
            500, 1, pod="web", start_s=60, seconds=1, root=True, transaction="checkout"
        )._replace(
            pod=None,
            cost_usd=LAMBDA_USD,
        )
        write_spans(store, [*hand_case_spans(), invocation])
        store.write_usage([(NODE, price)], PODS, NOW)
    finally:
        store.close()
    return url


@pytest.fixture(params=["sqlite", "postgres"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "totals.db"
        return filled(f"sqlite://{path}", lambda _: SQLiteStore(path, CONFIG))
    server: str = request.getfixturevalue("pg_server")
    return filled(create_database(server, "focuscli"), lambda dsn: PostgresStore(dsn, CONFIG))


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    return tmp_path / "totals.db"


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)


def run(*args: str) -> Result:
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    return result


def rows_of(document: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(document)))


def test_the_export_adds_up_to_the_reports_allocation(url: str) -> None:
    exported = run("export", "focus", "--database-url", url, *WINDOW, *ACCOUNT)
    rows = rows_of(exported.stdout)
    report = json.loads(run("report", "--database-url", url, *WINDOW, "--json").stdout)
    allocation = report["allocation"]
    total = math.fsum(float(Decimal(row["BilledCost"])) for row in rows)
    assert total == pytest.approx(allocation["bill"] + allocation["per_request_total"], rel=1e-12)
    assert allocation["per_request_total"] == pytest.approx(LAMBDA_USD)
    kinds = {row["x_AllocationKind"] for row in rows}
    assert kinds == {"transaction", "untraced", "idle", "per_request"}
    checkout = [row for row in rows if row["AllocatedResourceName"] == "checkout"]
    (share,) = checkout
    assert float(share["BilledCost"]) == pytest.approx(EXPECTED[("transaction", "checkout")])
    transactions = {item["name"]: item for item in allocation["transactions"]}
    assert float(share["BilledCost"]) == pytest.approx(transactions["checkout"]["compute"])
    assert (
        "5 FOCUS 1.2 CSV rows from 2025-01-31 11:00 to 2025-01-31 12:00 UTC: 0.346000 USD"
        " = the nodes' bill 0.096000 + per-request prices 0.250000"
    ) in exported.stderr


def test_the_header_and_the_columns_focus_requires(url: str) -> None:
    exported = run("export", "focus", "--database-url", url, *WINDOW, *ACCOUNT)
    header = exported.stdout.splitlines()[0].split(",")
    assert header == [column.name for column in COLUMNS]
    for row in rows_of(exported.stdout):
        assert row["BillingAccountId"] == "123456789012"
        assert row["BillingAccountName"] == ""  # null: not given
        for name in MANDATORY:
            column = next(c for c in COLUMNS if c.name == name)
            assert column.nullable or row[name], name
        assert row["ChargePeriodStart"] == "2025-01-31T11:00:00Z"
        assert row["ChargePeriodEnd"] == "2025-01-31T12:00:00Z"


def test_a_file_is_written_whole_and_the_account_may_come_from_the_environment(
    sqlite_path: Path, tmp_path: Path
) -> None:
    url = filled(f"sqlite://{sqlite_path}", lambda _: SQLiteStore(sqlite_path, CONFIG))
    out = tmp_path / "focus.csv"
    result = invoke(
        "export", "focus", "--database-url", url, *WINDOW, "--output", str(out),
        "--billing-account-name", "shop-payer",
        env={"SPANCOST_BILLING_ACCOUNT_ID": "210987654321"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    rows = rows_of(out.read_text(encoding="utf-8"))
    assert len(rows) == 5
    assert {(r["BillingAccountId"], r["BillingAccountName"]) for r in rows} == {
        ("210987654321", "shop-payer")
    }
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".__atomic")] == []


def test_weights_other_than_the_sinks_are_warned_about(sqlite_path: Path) -> None:
    """The store was allocated with 1:1: exported 9:1 the split differs from the report's
    (a warning says so, and that the bill does not); exported 1:1 it is the report's."""
    url = filled(f"sqlite://{sqlite_path}", lambda _: SQLiteStore(sqlite_path, CONFIG))
    store = SQLiteStore(sqlite_path, CONFIG)
    store.allocate(Weights(1.0, 1.0))
    store.close()
    warned = run("export", "focus", "--database-url", url, *WINDOW, *ACCOUNT)
    assert "1 node-hours (the first: ip-10-0-1-5 at 2025-01-31 11:00) were allocated" in (
        warned.stderr
    )
    assert "the export splits them 9:1, so its transactions differ" in warned.stderr
    matched = run("export", "focus", "--database-url", url, *WINDOW, *ACCOUNT, "--weights", "1:1")
    assert "were allocated with weights" not in matched.stderr
    report = json.loads(run("report", "--database-url", url, *WINDOW, "--json").stdout)
    compute = {item["name"]: item["compute"] for item in report["allocation"]["transactions"]}
    exported = {
        row["AllocatedResourceName"]: float(row["BilledCost"])
        for row in rows_of(matched.stdout)
        if row["x_AllocationKind"] == "transaction"
    }
    assert exported == pytest.approx(compute, rel=1e-12)
    details = json.loads(rows_of(matched.stdout)[0]["AllocatedMethodDetails"])
    assert (details["x_CpuWeight"], details["x_MemoryWeight"]) == (1.0, 1.0)


def test_a_node_without_a_price_is_left_out_with_a_warning(sqlite_path: Path) -> None:
    unpriced = NodePrice(None, unpriced_reason="unknown_instance_type")
    url = filled(f"sqlite://{sqlite_path}", lambda _: SQLiteStore(sqlite_path, CONFIG), unpriced)
    result = run("export", "focus", "--database-url", url, *WINDOW, *ACCOUNT)
    assert "1 node-hours have no price and are left out" in result.stderr
    assert [row["x_AllocationKind"] for row in rows_of(result.stdout)] == ["per_request"]


def test_an_output_that_cannot_be_written_is_a_usage_error(
    sqlite_path: Path, tmp_path: Path
) -> None:
    url = filled(f"sqlite://{sqlite_path}", lambda _: SQLiteStore(sqlite_path, CONFIG))
    out = tmp_path / "no-such-directory" / "focus.csv"
    result = invoke("export", "focus", "--database-url", url, *WINDOW, *ACCOUNT, "-o", str(out))
    assert result.exit_code == 2, result.output
    assert f"--output {out}: No such file or directory" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (WINDOW, "Missing option '--billing-account-id'"),
        ([*WINDOW, "--billing-account-id", " "], "--billing-account-id must not be empty"),
        ([*WINDOW, *ACCOUNT, "--weights", "9"], "--weights '9': must be CPU:MEMORY"),
        ([*WINDOW, *ACCOUNT, "--weights", "0:0"], "at least one weight must be above 0"),
        ([*ACCOUNT], "give one of --since and --from"),
        ([*WINDOW, *ACCOUNT, "--since", "1h"], "give one of --since and --from"),
        ([*ACCOUNT, "--from", "2025-01-31T12:00:00Z", "--to", "2025-01-31T11:00:00Z"],
         "the window is empty"),
        ([*WINDOW, *ACCOUNT, "--format", "parquet"], "'parquet' is not 'csv'"),
    ],
)  # fmt: skip
def test_usage_errors_exit_2(sqlite_path: Path, args: list[str], message: str) -> None:
    url = f"sqlite://{sqlite_path}"
    result = invoke("export", "focus", "--database-url", url, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
