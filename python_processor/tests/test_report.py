"""`spancost.report`, the pure part of `spancost report`: figures, JSON shape, table."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime, timedelta

import pytest

from spancost.errors import ConfigError
from spancost.report import build_report, format_table, parse_span, to_json
from spancost.store.base import HourRow, SpendRow

SINCE = datetime(2025, 1, 30, 12, 30, tzinfo=UTC)
UNTIL = datetime(2025, 1, 31, 12, 30, tzinfo=UTC)

DOMAINS = [
    SpendRow("payments", 6.0, 3, 12),
    SpendRow("discovery", 3.0, 2, 4),
    SpendRow("(unattributed)", 1.0, 1, 1),
    SpendRow("", 0.5, 1, 2),  # waiting for its root
]
TRANSACTIONS = [SpendRow("checkout", 6.0, 3, 12), SpendRow("search", 3.0, 2, 4)]
HOURS = [
    HourRow(datetime(2025, 1, 30, 12, tzinfo=UTC), 4.0, 3, 9),
    HourRow(datetime(2025, 1, 31, 12, tzinfo=UTC), 6.0, 3, 8),
]


def report(**overrides: object) -> dict[str, object]:
    arguments: dict[str, object] = {
        "since": SINCE,
        "until": UNTIL,
        "transactions": TRANSACTIONS,
        "unattributed": [SpendRow("(unattributed)", 1.0, 1, 1)],
        "domains": DOMAINS,
        "hours": HOURS,
        "top": 10,
    }
    arguments.update(overrides)
    return to_json(build_report(**arguments))  # type: ignore[arg-type]


def test_figures_shares_and_cost_per_trace() -> None:
    document = report()
    assert document["window"] == {
        "from": "2025-01-30T12:00:00Z",
        "to": "2025-01-31T13:00:00Z",
        "hours": 25,
    }
    assert document["total"] == {
        "cost": 10.0,
        "traces": 6,
        "spans": 17,
        "cost_per_trace": pytest.approx(10 / 6),
        "share": 1.0,
        "unpriced_spans": 0,
        "unpriced_share": 0.0,
    }
    assert document["pending"] == {
        "cost": 0.5,
        "traces": 1,
        "spans": 2,
        "cost_per_trace": 0.5,
        "share": 0.05,
    }
    assert document["unattributed"] == {
        "name": "(unattributed)",
        "cost": 1.0,
        "traces": 1,
        "spans": 1,
        "cost_per_trace": 1.0,
        "share": 0.1,
    }
    assert document["transactions"] == [
        {
            "name": "checkout",
            "cost": 6.0,
            "traces": 3,
            "spans": 12,
            "cost_per_trace": 2.0,
            "share": 0.6,
        },
        {
            "name": "search",
            "cost": 3.0,
            "traces": 2,
            "spans": 4,
            "cost_per_trace": 1.5,
            "share": 0.3,
        },
    ]
    domains = document["domains"]
    assert isinstance(domains, list)
    assert [item["name"] for item in domains] == ["payments", "discovery", "(unattributed)"]


def test_every_hour_of_the_window_is_in_the_trend_zeros_included() -> None:
    hourly = report()["hourly"]
    assert isinstance(hourly, list)
    assert len(hourly) == 25
    assert hourly[0] == {
        "hour": "2025-01-30T12:00:00Z", "cost": 4.0, "traces": 3, "spans": 9, "domains": {}
    }  # fmt: skip
    assert hourly[1] == {
        "hour": "2025-01-30T13:00:00Z", "cost": 0.0, "traces": 0, "spans": 0, "domains": {}
    }  # fmt: skip
    assert hourly[-1]["hour"] == "2025-01-31T12:00:00Z"
    assert sum(item["cost"] for item in hourly) == 10.0


def test_each_hour_names_the_top_domains_part_of_it() -> None:
    first, last = HOURS[0].hour, HOURS[1].hour
    by_domain = [
        HourRow(first, 3.0, 2, 7, "payments"),
        HourRow(first, 1.0, 1, 2, "discovery"),
        HourRow(last, 3.0, 1, 5, "payments"),
        HourRow(last, 2.0, 1, 2, "discovery"),
        HourRow(last, 1.0, 1, 1, "(unattributed)"),
    ]
    hourly = report(domain_hours=by_domain, top=2, currency="EUR", rate=0.5)["hourly"]
    assert isinstance(hourly, list)
    assert hourly[0]["domains"] == {"payments": 1.5, "discovery": 0.5}
    assert hourly[1]["domains"] == {}
    # Only the listed (top) domains, in their order; the rest of the hour is the others'.
    assert list(hourly[-1]["domains"].items()) == [("payments", 1.5), ("discovery", 1.0)]
    assert hourly[-1]["cost"] == 3.0


def test_top_limits_both_lists() -> None:
    document = report(top=1)
    assert [item["name"] for item in document["transactions"]] == ["checkout"]  # type: ignore[attr-defined]
    assert [item["name"] for item in document["domains"]] == ["payments"]  # type: ignore[attr-defined]


def test_an_empty_window_has_no_shares_and_no_cost_per_trace() -> None:
    document = report(transactions=[], unattributed=[], domains=[], hours=[])
    assert document["total"] == {
        "cost": 0.0,
        "traces": 0,
        "spans": 0,
        "cost_per_trace": None,
        "share": None,
        "unpriced_spans": 0,
        "unpriced_share": None,
    }
    assert document["unpriced"] == {"spans": 0, "share": None, "reasons": []}
    assert document["transactions"] == []
    text = format_table(
        build_report(
            since=SINCE,
            until=UNTIL,
            transactions=[],
            unattributed=[],
            domains=[],
            hours=[],
            top=5,
        )
    )
    assert "no transactions in the window" in text


def test_amounts_are_converted_and_shares_are_not() -> None:
    document = report(currency="EUR", rate=0.5)
    assert document["currency"] == "EUR" and document["usd_rate"] == 0.5
    assert document["total"]["cost"] == 5.0  # type: ignore[index]
    assert document["transactions"][0]["cost_per_trace"] == 1.0  # type: ignore[index]
    assert document["transactions"][0]["share"] == 0.6  # type: ignore[index]
    assert document["hourly"][0]["cost"] == 2.0  # type: ignore[index]


def test_the_json_keys_are_the_documented_ones() -> None:
    document = json.loads(json.dumps(report(excluded_environments=["staging"])))
    assert list(document) == [
        "format",
        "window",
        "currency",
        "usd_rate",
        "excluded_environments",
        "total",
        "pending",
        "unattributed",
        "transactions",
        "domains",
        "hourly",
        "unpriced",
        "allocation",
    ]
    assert document["allocation"] is None  # no node usage in the window
    assert document["format"] == 1
    assert document["excluded_environments"] == ["staging"]
    figure_keys = ["name", "cost", "traces", "spans", "cost_per_trace", "share"]
    coverage_keys = ["unpriced_spans", "unpriced_share"]
    assert list(document["unattributed"]) == figure_keys
    assert list(document["transactions"][0]) == figure_keys
    assert list(document["domains"][0]) == figure_keys + coverage_keys
    assert list(document["total"]) == figure_keys[1:] + coverage_keys
    assert list(document["unpriced"]) == ["spans", "share", "reasons"]
    assert list(document["hourly"][0]) == ["hour", "cost", "traces", "spans", "domains"]


COVERAGE = {"payments": (12, 3), "discovery": (4, 0), "(unattributed)": (1, 1)}
REASONS = [("unknown_instance_type", 3), ("sidecar_unavailable", 1)]


def test_the_unpriced_share_per_domain_and_its_top_reasons() -> None:
    document = report(coverage=COVERAGE, reasons=REASONS)
    assert document["unpriced"] == {
        "spans": 4,
        "share": 4 / 17,
        "reasons": [
            {"reason": "unknown_instance_type", "spans": 3},
            {"reason": "sidecar_unavailable", "spans": 1},
        ],
    }
    domains = {item["name"]: item for item in document["domains"]}  # type: ignore[attr-defined]
    assert domains["payments"]["unpriced_spans"] == 3
    assert domains["payments"]["unpriced_share"] == 0.25
    assert domains["discovery"]["unpriced_share"] == 0.0
    assert document["total"]["unpriced_spans"] == 4  # type: ignore[index]
    text = format_table(
        build_report(
            since=SINCE,
            until=UNTIL,
            transactions=TRANSACTIONS,
            unattributed=[],
            domains=DOMAINS,
            hours=HOURS,
            top=10,
            coverage=COVERAGE,
            reasons=REASONS,
        )
    )
    assert (
        "unpriced: 23.5% of spans (4), their cost missing above; top reasons:"
        " unknown_instance_type 3, sidecar_unavailable 1"
    ) in text
    payments = next(line for line in text.splitlines() if line.startswith("payments"))
    assert payments.endswith("25.0%")


def test_the_table_shows_the_figures() -> None:
    text = format_table(
        build_report(
            since=SINCE,
            until=UNTIL,
            transactions=TRANSACTIONS,
            unattributed=[SpendRow("(unattributed)", 1.0, 1, 1)],
            domains=DOMAINS,
            hours=HOURS,
            top=10,
            excluded_environments=["staging"],
        )
    )
    lines = text.splitlines()
    assert lines[0] == (
        "spancost report 2025-01-30 12:00 to 2025-01-31 13:00 UTC (25 h), amounts in USD"
    )
    assert "environments left out: staging" in text
    assert "total 10.0000 over 6 traces (1.6667 per trace)" in text
    assert "unattributed ((unattributed)): 10.0% of the total, 1.0000 over 1 traces" in text
    assert "waiting for their root (not counted above): 1 traces, 0.5000" in text
    checkout = next(line for line in lines if line.startswith("checkout"))
    assert checkout.split() == ["checkout", "6.0000", "60.0%", "3", "2.0000"]
    peak = next(line for line in lines if line.startswith("2025-01-31 12:00"))
    assert peak.endswith("#" * 30)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", timedelta(hours=24)),
        ("7d", timedelta(days=7)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("90m", timedelta(minutes=90)),
    ],
)
def test_parse_span(text: str, expected: timedelta) -> None:
    assert parse_span(text) == expected


@pytest.mark.parametrize("text", ["", "0h", "yesterday", "-1h", "3w"])
def test_parse_span_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--since"):
        parse_span(text)


def test_the_report_module_imports_no_database_driver() -> None:
    probe = (
        "import json, sys, spancost.report;"
        "print(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = set(json.loads(result.stdout))
    assert "spancost" in loaded
    assert loaded.isdisjoint({"psycopg", "psycopg_pool", "sqlite3", "grpc", "boto3"})
