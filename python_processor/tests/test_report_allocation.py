"""`spancost report`'s allocation, `--reconcile` and `spancost reprice`, on the README's
worked example written into a real SQLite store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import spancost.pricing
from spancost.cli import cli
from spancost.store import SQLiteStore
from tests.allocation_data import (
    CONFIG,
    EXPECTED,
    HOUR,
    M5_LARGE,
    NODE,
    NODE_PRICE,
    NOW,
    PODS,
    hand_case_spans,
    segment,
    write_spans,
)

WINDOW = ["--from", "2025-01-31T11:00:00Z", "--to", "2025-01-31T11:59:00Z"]


@pytest.fixture
def url(tmp_path: Path) -> str:
    path = tmp_path / "totals.db"
    store = SQLiteStore(path, CONFIG)
    store.migrate()
    write_spans(store, hand_case_spans())
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)  # not allocated: the report does it
    store.close()
    return f"sqlite://{path}"


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_the_report_shows_the_bill_allocated(url: str) -> None:
    document = json.loads(run("report", "--database-url", url, *WINDOW, "--json"))
    allocation = document["allocation"]
    assert allocation["bill"] == pytest.approx(M5_LARGE)
    parts = allocation["transactions_total"] + allocation["untraced_total"]
    assert parts + allocation["idle"]["cost"] == pytest.approx(M5_LARGE, rel=1e-12)
    transactions = {item["name"]: item for item in allocation["transactions"]}
    checkout = transactions["checkout"]
    assert checkout["cost"] == pytest.approx(EXPECTED[("transaction", "checkout")])
    assert checkout["requests"] == pytest.approx(24)  # 12 segments on web, 12 on worker
    assert checkout["cost_per_request"] == pytest.approx(checkout["cost"] / 24)
    assert [item["name"] for item in allocation["untraced"]] == ["data/StatefulSet/postgres"]
    assert {item["name"] for item in allocation["domains"]} == {"retail"}
    table = run("report", "--database-url", url, *WINDOW)
    assert "the nodes' bill, allocated: 0.0960 = transactions 0.0508" in table
    assert "checkout     0.0372  38.8%        24      0.00155" in table
    assert "idle (capacity no pod requested): 0.0295 (30.8%)" in table


def test_per_request_prices_are_added_to_the_transactions(tmp_path: Path) -> None:
    path = tmp_path / "lambda.db"
    store = SQLiteStore(path, CONFIG)
    store.migrate()
    invocation = segment(
        500, 1, pod="web", start_s=60, seconds=1, root=True, transaction="checkout"
    )._replace(
        pod=None,
        cost_usd=0.25,
    )
    write_spans(store, [*hand_case_spans(), invocation])
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    store.close()
    document = json.loads(run("report", "--database-url", f"sqlite://{path}", *WINDOW, "--json"))
    allocation = document["allocation"]
    assert allocation["per_request_total"] == pytest.approx(0.25)
    assert allocation["bill"] == pytest.approx(M5_LARGE)  # the node's alone
    checkout = next(item for item in allocation["transactions"] if item["name"] == "checkout")
    assert checkout["compute"] == pytest.approx(EXPECTED[("transaction", "checkout")])
    assert checkout["per_request"] == pytest.approx(0.25)
    assert checkout["cost"] == pytest.approx(checkout["compute"] + 0.25)
    assert checkout["requests"] == pytest.approx(25)  # the Lambda invocation too
    table = run("report", "--database-url", f"sqlite://{path}", *WINDOW)
    assert "priced per request (Lambda, Fargate, LLM, rules), added to their" in table


def test_reconcile_per_node_and_hour(url: str) -> None:
    (line,) = json.loads(run("report", "--database-url", url, *WINDOW, "--reconcile", "--json"))
    assert line["hour"] == "2025-01-31T11:00:00Z"
    assert line["node"] == NODE.node
    assert line["bill"] == pytest.approx(M5_LARGE)
    assert line["difference"] == pytest.approx(0.0, abs=1e-15)
    assert (line["price_source"], line["price_as_of"]) == ("bundled", "2025-01-01")
    table = run("report", "--database-url", url, *WINDOW, "--reconcile")
    assert "2025-01-31 11:00  ip-10-0-1-5  0.0960" in table


def test_reprice_from_a_refreshed_snapshot(url: str, tmp_path: Path) -> None:
    shipped = Path(spancost.pricing.__file__).parent / "data" / "aws_prices.json"
    snapshot = json.loads(shipped.read_text())
    snapshot["ec2"]["Linux"]["us-east-1"]["m5.large"] = 0.08
    snapshot["as_of"] = "2025-02-01"
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(snapshot))
    run("report", "--database-url", url, *WINDOW)  # allocated at the old price first
    (changed,) = json.loads(
        run("reprice", "--database-url", url, *WINDOW, "--snapshot", str(path), "--json")
    )
    assert (changed["old_hourly_usd"], changed["new_hourly_usd"]) == (M5_LARGE, 0.08)
    assert json.loads(run("reprice", "--database-url", url, *WINDOW, "--snapshot", str(path),
                          "--json")) == []  # fmt: skip
    (line,) = json.loads(run("report", "--database-url", url, *WINDOW, "--reconcile", "--json"))
    assert (line["bill"], line["price_as_of"]) == (pytest.approx(0.08), "2025-02-01")
    assert line["difference"] == pytest.approx(0.0, abs=1e-15)
    document = json.loads(run("report", "--database-url", url, *WINDOW, "--json"))
    checkout = document["allocation"]["transactions"][0]
    assert checkout["cost"] == pytest.approx(
        EXPECTED[("transaction", "checkout")] * 0.08 / M5_LARGE
    )


def test_spot_node_hours_keep_their_price_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "spot.db"
    store = SQLiteStore(path, CONFIG)
    store.migrate()
    spot = NODE._replace(capacity_type="spot")
    live = NODE_PRICE._replace(hourly_usd=0.031, source="aws_spot", model="ec2.spot_price.duration")
    store.write_usage([(spot, live)], PODS, NOW)
    store.close()
    url = f"sqlite://{path}"
    assert json.loads(run("reprice", "--database-url", url, *WINDOW, "--json")) == []
    (changed,) = json.loads(
        run("reprice", "--database-url", url, *WINDOW, "--include-spot", "--json")
    )
    assert changed["new_hourly_usd"] == pytest.approx(M5_LARGE * 0.3)
    assert HOUR.hour == 11


def test_reprice_needs_a_window(url: str) -> None:
    result = CliRunner().invoke(cli, ["reprice", "--database-url", url])
    assert result.exit_code == 2
    assert "give one of --since and --from" in result.output
