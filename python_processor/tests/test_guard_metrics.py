"""The guard's /metrics: what a run read and decided, as Prometheus reads it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spancost.guard.alerts import AlertSender
from spancost.guard.budgets import Budget, GuardConfig
from spancost.guard.kube import KubeError
from spancost.guard.metrics import GuardMetrics
from spancost.guard.policy import Action, ActionKind, Assessment, Level
from spancost.guard.run import (
    TOP_TRANSACTIONS,
    ActionResult,
    Cluster,
    DomainReport,
    RunReport,
    TransactionSpend,
    run_once,
)
from spancost.report import build_allocation
from spancost.store import SQLiteStore
from spancost.totals.aggregate import SpanContribution, ns_from_utc
from tests.allocation_data import CONFIG, NODE, NODE_PRICE, PODS, hand_case_spans, write_spans
from tests.allocation_data import NOW as HAND_CASE_NOW

NOW = datetime(2025, 1, 31, 12, 30, tzinfo=UTC)


def scrape(metrics: GuardMetrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(metrics.registry()).decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def report(*, ok: bool = True) -> RunReport:
    result = RunReport(NOW, spend_basis="allocated")
    breach = Assessment("checkout", 92.0, 80.0, "EUR", 1.15, Level.BREACH, False, 10, 3)
    fine = Assessment("search", 1.0, 50.0, "USD", 0.02, Level.OK, False)
    scaled = Action(ActionKind.SCALE_DOWN, "shop", "web", "checkout", 10, 7)
    skipped = Action(ActionKind.SKIP, "shop", "db", "checkout", 4)
    result.domains = [
        DomainReport(breach, False, [ActionResult(scaled, applied=True), ActionResult(skipped)]),
        DomainReport(fine, False),
    ]
    result.allocation = {"transaction": 3.0, "untraced": 1.0, "idle": 0.5, "per_request": 0.25}
    result.transactions = [
        TransactionSpend("checkout", 2.5, 40.0),
        TransactionSpend("search", 0.5, 8.0),
    ]
    if not ok:
        result.errors.append("cannot read spend from the totals store; nothing scaled: down")
    return result


def test_before_the_first_run_only_counters() -> None:
    metrics = scrape(GuardMetrics())
    assert metrics == {
        ("spancost_guard_runs_total", (("outcome", "failed"),)): 0.0,
        ("spancost_guard_runs_total", (("outcome", "ok"),)): 0.0,
    }


def test_a_run_as_gauges_and_counters() -> None:
    collector = GuardMetrics()
    collector.record(report())
    collector.record(report())
    metrics = scrape(collector)
    eur = (("currency", "EUR"), ("domain", "checkout"))
    assert metrics[("spancost_budget_spend", eur)] == 92.0
    assert metrics[("spancost_budget_limit", eur)] == 80.0
    assert metrics[("spancost_budget_ratio", (("domain", "checkout"),))] == 1.15
    assert metrics[("spancost_budget_level", (("domain", "checkout"),))] == 2
    assert metrics[("spancost_budget_level", (("domain", "search"),))] == 0
    assert metrics[("spancost_budget_unpriced_ratio", (("domain", "checkout"),))] == 0.3
    assert metrics[("spancost_budget_unpriced_ratio", (("domain", "search"),))] == 0.0
    assert metrics[("spancost_allocation_24h_usd", (("kind", "idle"),))] == 0.5
    assert metrics[("spancost_allocation_24h_usd", (("kind", "per_request"),))] == 0.25
    assert metrics[("spancost_guard_spend_basis", (("basis", "allocated"),))] == 1
    assert metrics[("spancost_transaction_spend_usd", (("transaction", "checkout"),))] == 2.5
    assert metrics[("spancost_transaction_requests", (("transaction", "checkout"),))] == 40
    assert metrics[("spancost_transaction_requests", (("transaction", "search"),))] == 8
    assert metrics[("spancost_guard_store_up", ())] == 1
    assert metrics[("spancost_guard_last_run_ok", ())] == 1
    assert metrics[("spancost_guard_last_run_timestamp_seconds", ())] == NOW.timestamp()
    assert metrics[("spancost_guard_runs_total", (("outcome", "ok"),))] == 2
    # Applied actions only, counted per run.
    scaled = (("domain", "checkout"), ("kind", "scale_down"))
    assert metrics[("spancost_guard_actions_total", scaled)] == 2
    assert (
        "spancost_guard_actions_total",
        (("domain", "checkout"), ("kind", "skip")),
    ) not in metrics


def test_a_run_that_could_not_read_the_store() -> None:
    collector = GuardMetrics()
    collector.record(report(ok=False))
    metrics = scrape(collector)
    assert metrics[("spancost_guard_store_up", ())] == 0
    assert metrics[("spancost_guard_last_run_ok", ())] == 0
    assert metrics[("spancost_guard_runs_total", (("outcome", "failed"),))] == 1


def no_cluster() -> Cluster:
    """No Kubernetes API: the run still reads and reports the store's numbers."""
    raise KubeError("no API server in this test")


def guard_metrics(store_path: Path, now: datetime) -> dict[str, dict[str, float]]:
    """One run over the store at `now`, scraped: the transaction metrics by name."""
    report = run_once(
        GuardConfig((Budget("retail", 1.0, "USD", ("shop",), "domain=retail"),)),
        lambda: SQLiteStore(store_path, CONFIG), no_cluster, AlertSender([]), now,
    )  # fmt: skip
    collector = GuardMetrics()
    collector.record(report)
    found: dict[str, dict[str, float]] = {}
    for (name, labels), value in scrape(collector).items():
        if name.startswith("spancost_transaction_"):
            found.setdefault(name, {})[dict(labels)["transaction"]] = value
    return found


def test_the_top_transactions_estimated_bounded(tmp_path: Path) -> None:
    """Without node usage: the spans' own prices and traces, the costliest ten only."""
    store = SQLiteStore(tmp_path / "t.db", CONFIG)
    store.migrate()
    now_ns = ns_from_utc(NOW)
    spans = [
        SpanContribution(
            trace_id=f"{trace:032x}",
            span_id=f"{1:016x}",
            start_ns=now_ns - 10**9,
            end_ns=now_ns,
            cost_usd=0.5 * (number + 1),
            is_root=True,
            name="GET /",
            service="web",
            environment="production",
            transaction_attribute=f"t{number:02d}",
        )
        for number in range(TOP_TRANSACTIONS + 2)
        for trace in (100 * number + 1, 100 * number + 2)
    ]
    write_spans(store, spans, NOW)
    store.close()
    metrics = guard_metrics(tmp_path / "t.db", NOW)
    top = {f"t{number:02d}": 2 * 0.5 * (number + 1) for number in range(2, TOP_TRANSACTIONS + 2)}
    assert metrics["spancost_transaction_spend_usd"] == pytest.approx(top)
    assert metrics["spancost_transaction_requests"] == dict.fromkeys(top, 2.0)


def test_the_top_transactions_allocated_as_the_report_lists_them(tmp_path: Path) -> None:
    """With node usage: each transaction's share of the node and its segments, the very
    numbers of `spancost report`'s allocation (the README's worked example)."""
    store = SQLiteStore(tmp_path / "t.db", CONFIG)
    store.migrate()
    write_spans(store, hand_case_spans())
    store.write_usage([(NODE, NODE_PRICE)], PODS, HAND_CASE_NOW)
    store.close()
    metrics = guard_metrics(tmp_path / "t.db", HAND_CASE_NOW)
    store = SQLiteStore(tmp_path / "t.db", CONFIG)
    since = HAND_CASE_NOW - timedelta(hours=24)
    view = build_allocation(
        store.allocated_totals(since, HAND_CASE_NOW),
        store.reconcile(since, HAND_CASE_NOW),
        top=TOP_TRANSACTIONS,
    )
    store.close()
    assert view is not None
    assert metrics["spancost_transaction_spend_usd"] == {
        line.name: line.cost for line in view.transactions
    }
    assert metrics["spancost_transaction_requests"] == {"checkout": 24.0, "search": 6.0}
    assert {line.name: line.requests for line in view.transactions} == {
        "checkout": 24.0,
        "search": 6.0,
    }
