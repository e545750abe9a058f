"""`spancost report` and the stores' report queries, on SQLite and a real PostgreSQL:
every figure equals the sum computed here, independently, from what was written."""

from __future__ import annotations

import json
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from spancost.cli import cli
from spancost.store import open_store
from spancost.store.base import TotalsStore
from spancost.totals import TotalsConfig, split
from spancost.totals.aggregate import SpanContribution, ns_from_utc
from tests.pg import create_database

UNTIL = datetime(2025, 1, 31, 12, 30, tzinfo=UTC)
SINCE = UNTIL - timedelta(hours=24)
WINDOW_START = datetime(2025, 1, 30, 12, tzinfo=UTC)  # SINCE rounded down to the hour
WINDOW_END = datetime(2025, 1, 31, 13, tzinfo=UTC)  # UNTIL rounded up
SECOND = 10**9
SKEW = timedelta(hours=2)
GRACE = timedelta(minutes=10)
UNATTRIBUTED = "(unattributed)"
CONFIG = TotalsConfig(
    domains_by_transaction={"checkout": "payments"},
    domains_by_service={"search-api": "discovery"},
)


@dataclass(frozen=True)
class Trace:
    """What the test wrote for one trace, and what it should count as."""

    first_seen: datetime
    transaction: str | None  # None: still waiting for its root
    domain: str | None
    environment: str
    cost: float
    spans: int

    def in_window(self) -> bool:
        return WINDOW_START <= self.first_seen < WINDOW_END

    def in_rolling_window(self) -> bool:
        """The guard's window: exactly SINCE to UNTIL, both included."""
        return SINCE <= self.first_seen <= UNTIL


def expected_domain(transaction: str, service: str) -> str:
    # Written out here rather than with spancost.totals.domain_name, to stay independent.
    if transaction == "checkout":
        return "payments"
    return "discovery" if service == "search-api" else transaction


def scenario(seed: int = 7) -> tuple[list[tuple[datetime, list[SpanContribution]]], list[Trace]]:
    """40 hours of traces ending at UNTIL: rooted ones, orphans (unattributed after the
    grace) and, in the last minutes, orphans still waiting."""
    rng = random.Random(seed)
    batches: list[tuple[datetime, list[SpanContribution]]] = []
    traces: list[Trace] = []
    trace_number = 0
    for minute in range(40 * 60, -1, -17):
        ingest = UNTIL - timedelta(minutes=minute)
        batch: list[SpanContribution] = []
        for _ in range(rng.randint(1, 3)):
            trace_number += 1
            kind = rng.choice(["rooted", "rooted", "rooted", "orphan"])
            transaction = rng.choice(["checkout", "search", "browse"])
            service = rng.choice(["web", "search-api"])
            environment = rng.choice(["production", "production", "staging"])
            start = ns_from_utc(ingest) - 60 * SECOND
            costs = [rng.uniform(0, 2) * 10 ** rng.randint(-6, 0) for _ in range(rng.randint(1, 5))]
            for index, cost in enumerate(costs, start=1):
                is_root = kind == "rooted" and index == 1
                batch.append(
                    SpanContribution(
                        trace_id=f"{trace_number:032x}",
                        span_id=f"{index:016x}",
                        start_ns=start + index,
                        end_ns=start + index + SECOND,
                        cost_usd=cost,
                        unpriced_reason=None,
                        is_root=is_root,
                        name="op",
                        service=service,
                        environment=environment,
                        transaction_attribute=transaction if is_root else None,
                    )
                )
            if kind == "rooted":
                name: str | None = transaction
            elif ingest <= UNTIL - GRACE:
                name = UNATTRIBUTED
            else:
                name = None
            traces.append(
                Trace(
                    first_seen=ingest,
                    transaction=name,
                    domain=None if name is None else expected_domain(name, service),
                    environment=environment,
                    cost=math.fsum(costs),
                    spans=len(costs),
                )
            )
        batches.append((ingest, batch))
    assert any(t.transaction is None for t in traces)
    assert any(t.transaction == UNATTRIBUTED for t in traces if t.in_window())
    return batches, traces


def fill(store: TotalsStore) -> list[Trace]:
    batches, traces = scenario()
    for ingest, batch in batches:
        accepted, quarantined = split(batch, ingest, SKEW)
        store.write(accepted, quarantined, ingest)
    store.attribute_orphans(UNTIL, GRACE, UNATTRIBUTED)
    return traces


def sums_by(
    traces: list[Trace], key: str, excluded: frozenset[str], *, rolling: bool = False
) -> dict[str, list[float]]:
    """name → [cost, traces, spans] over the window's counted traces (`rolling`: the
    guard's exact window instead of the report's whole hours)."""
    sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0, 0])
    for trace in traces:
        name = getattr(trace, key)
        counted = trace.in_rolling_window() if rolling else trace.in_window()
        if name is None or not counted or trace.environment in excluded:
            continue
        sums[name][0] += trace.cost
        sums[name][1] += 1
        sums[name][2] += trace.spans
    return dict(sums)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite://{tmp_path / 'totals.db'}"
    server: str = request.getfixturevalue("pg_server")
    return create_database(server, "report")


@pytest.fixture
def filled(database_url: str) -> Iterator[tuple[TotalsStore, list[Trace]]]:
    store = open_store(database_url, CONFIG)
    store.migrate()
    traces = fill(store)
    yield store, traces
    store.close()


@pytest.mark.parametrize("excluded", [frozenset(), frozenset({"staging"})])
def test_store_queries_equal_independent_sums(
    filled: tuple[TotalsStore, list[Trace]], excluded: frozenset[str]
) -> None:
    store, traces = filled
    by_transaction = sums_by(traces, "transaction", excluded)
    by_domain = sums_by(traces, "domain", excluded)

    rows = store.transaction_totals(SINCE, UNTIL, excluded)
    assert {row.name for row in rows} == set(by_transaction)
    for row in rows:
        cost, count, spans = by_transaction[row.name]
        assert math.isclose(row.cost_usd, cost, rel_tol=1e-9)
        assert (row.traces, row.spans) == (count, spans)
    assert [row.cost_usd for row in rows] == sorted((row.cost_usd for row in rows), reverse=True)
    top = store.transaction_totals(SINCE, UNTIL, excluded, limit=2)
    assert [row.name for row in top] == [row.name for row in rows[:2]]
    only = store.transaction_totals(SINCE, UNTIL, excluded, names=[UNATTRIBUTED])
    assert [row.name for row in only] == [UNATTRIBUTED]

    domains = {row.name: row for row in store.domain_totals(SINCE, UNTIL, excluded)}
    pending = [t for t in traces if t.transaction is None and t.environment not in excluded]
    assert domains.pop("").traces == len(pending)
    assert domains.keys() == by_domain.keys()
    for name, (cost, count, spans) in by_domain.items():
        assert math.isclose(domains[name].cost_usd, cost, rel_tol=1e-9)
        assert (domains[name].traces, domains[name].spans) == (count, spans)
    # The guard's rolling 24 h spend: exactly SINCE to UNTIL, not whole hours.
    spend = store.domain_spend(SINCE, UNTIL, excluded)
    rolling = sums_by(traces, "domain", excluded, rolling=True)
    assert spend.keys() == rolling.keys()
    for name, (cost, _, _) in rolling.items():
        assert math.isclose(spend[name], cost, rel_tol=1e-9)
    assert sum(spend.values()) != pytest.approx(sum(c for c, _, _ in by_domain.values()))

    hours = store.hourly_totals(SINCE, UNTIL, excluded)
    expected_hours: dict[datetime, float] = defaultdict(float)
    for trace in traces:
        if trace.transaction and trace.in_window() and trace.environment not in excluded:
            expected_hours[trace.first_seen.replace(minute=0, second=0, microsecond=0)] += (
                trace.cost
            )
    assert [hour.hour for hour in hours] == sorted(expected_hours)
    for hour in hours:
        assert math.isclose(hour.cost_usd, expected_hours[hour.hour], rel_tol=1e-9)

    by_hour_and_domain: dict[tuple[datetime, str | None], list[float]] = defaultdict(
        lambda: [0.0, 0, 0]
    )
    for trace in traces:
        if trace.transaction and trace.in_window() and trace.environment not in excluded:
            sums = by_hour_and_domain[
                trace.first_seen.replace(minute=0, second=0, microsecond=0), trace.domain
            ]
            sums[0] += trace.cost
            sums[1] += 1
            sums[2] += trace.spans
    split_hours = store.hourly_totals(SINCE, UNTIL, excluded, by_domain=True)
    assert {(part.hour, part.domain) for part in split_hours} == set(by_hour_and_domain)
    assert [part.hour for part in split_hours] == sorted(part.hour for part in split_hours)
    for part in split_hours:
        cost, count, spans = by_hour_and_domain[part.hour, part.domain]
        assert math.isclose(part.cost_usd, cost, rel_tol=1e-9)
        assert (part.traces, part.spans) == (count, spans)


def test_the_rollup_equals_the_trace_rows_over_24_hours(
    filled: tuple[TotalsStore, list[Trace]],
) -> None:
    store, _ = filled
    from_rollup = sum(row.cost_usd for row in store.domain_totals(SINCE, UNTIL) if row.name)
    from_rows = sum(row.cost_usd for row in store.transaction_totals(SINCE, UNTIL))
    assert math.isclose(from_rollup, from_rows, rel_tol=1e-9)
    assert sum(row.traces for row in store.hourly_totals(SINCE, UNTIL)) == sum(
        row.traces for row in store.transaction_totals(SINCE, UNTIL)
    )


def report_json(database_url: str, *arguments: str) -> dict[str, Any]:
    """`spancost report --json` up to the scenario's end, with `arguments`."""
    result = CliRunner().invoke(
        cli,
        ["report", "--database-url", database_url, "--to", "2025-01-31T12:30:00Z",
         *arguments, "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    document: dict[str, Any] = json.loads(result.stdout)
    return document


def test_report_json_equals_independent_sums(
    filled: tuple[TotalsStore, list[Trace]], database_url: str
) -> None:
    _, traces = filled
    document = report_json(database_url, "--top", "2")
    by_transaction = sums_by(traces, "transaction", frozenset())
    total = math.fsum(cost for cost, _, _ in by_transaction.values())
    total_traces = sum(int(count) for _, count, _ in by_transaction.values())
    assert document["window"] == {
        "from": "2025-01-30T12:00:00Z",
        "to": "2025-01-31T13:00:00Z",
        "hours": 25,
    }
    assert math.isclose(document["total"]["cost"], total, rel_tol=1e-9)
    assert document["total"]["traces"] == total_traces
    assert math.isclose(document["total"]["cost_per_trace"], total / total_traces, rel_tol=1e-9)
    ranked = sorted(by_transaction.items(), key=lambda item: -item[1][0])[:2]
    assert [item["name"] for item in document["transactions"]] == [name for name, _ in ranked]
    for item, (_, (cost, count, _)) in zip(document["transactions"], ranked, strict=True):
        assert math.isclose(item["cost"], cost, rel_tol=1e-9)
        assert math.isclose(item["cost_per_trace"], cost / count, rel_tol=1e-9)
        assert math.isclose(item["share"], cost / total, rel_tol=1e-9)
    unattributed_cost = by_transaction[UNATTRIBUTED][0]
    assert math.isclose(document["unattributed"]["share"], unattributed_cost / total, rel_tol=1e-9)
    assert len(document["domains"]) == 2
    assert len(document["hourly"]) == 25
    assert math.isclose(sum(h["cost"] for h in document["hourly"]), total, rel_tol=1e-9)
    pending = [t for t in traces if t.transaction is None]
    assert document["pending"]["traces"] == len(pending)
    assert document["unpriced"] == {"spans": 0, "share": 0.0, "reasons": []}, "all priced"


def test_report_table_and_currency(
    filled: tuple[TotalsStore, list[Trace]], database_url: str
) -> None:
    arguments = ["report", "--database-url", database_url, "--from", "2025-01-30T12:30:00"]
    arguments += ["--to", "2025-01-31T12:30:00+00:00", "--currency", "eur", "--rate", "EUR=0.5"]
    result = CliRunner().invoke(cli, arguments)
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(
        "spancost report 2025-01-30 12:00 to 2025-01-31 13:00 UTC (25 h), amounts in EUR"
    )
    assert "top 4 transactions by cost" in result.stdout  # browse, checkout, search, unattributed
    assert "\r" not in result.output  # no spinner when stderr is not a terminal
    document = json.loads(CliRunner().invoke(cli, [*arguments, "--json"]).stdout)
    usd = json.loads(CliRunner().invoke(cli, [*arguments[:7], "--json"]).stdout)
    assert math.isclose(document["total"]["cost"], usd["total"]["cost"] / 2, rel_tol=1e-12)
    assert document["currency"] == "EUR"


def test_an_excluded_environment_matches_however_it_is_written(
    filled: tuple[TotalsStore, list[Trace]], database_url: str
) -> None:
    """The store keeps environments normalized (spancost.vocabulary); the command line
    is read the same way, so ``Staging`` leaves out the stored ``staging``."""
    _, traces = filled
    document = report_json(database_url, "--exclude-environment", " Staging ")
    kept = sums_by(traces, "transaction", frozenset({"staging"}))
    everything = sums_by(traces, "transaction", frozenset())
    kept_total = math.fsum(cost for cost, _, _ in kept.values())
    assert kept_total < math.fsum(cost for cost, _, _ in everything.values())
    assert math.isclose(document["total"]["cost"], kept_total, rel_tol=1e-9)
