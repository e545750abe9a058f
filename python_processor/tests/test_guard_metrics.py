"""The guard's /metrics: what a run read and decided, as Prometheus reads it."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from spancost.guard.metrics import GuardMetrics
from spancost.guard.policy import Action, ActionKind, Assessment, Level
from spancost.guard.run import ActionResult, DomainReport, RunReport

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
