"""The budget guard's ``/metrics``: the numbers it acts on, for Prometheus.

``spancost guard --metrics-listen 0.0.0.0:9465`` (the loop) serves, after each run,
what that run read and decided, so that Prometheus alerts on exactly what the guard
acts on (configs/prometheus/ has the rules; python_processor/README.md, "Budget guard",
lists every metric): per domain the rolling 24 h spend and the budget (in the budget's
currency, a label: budgets may be kept in EUR), their ratio, the level (0 ok, 1 warn, 2
breach) and the unpriced share; the last 24 h of the nodes' cost by kind of allocation
line (USD); the ten costliest transactions' spend (USD) and requests on the same basis,
so that a dashboard divides one by the other for the cost per request (a bounded label:
a transaction leaving the top ten leaves the metrics); what the spend was based on;
whether the store could be read; when the last run ran and whether it did its job; runs
and Deployments changed, as counters. A guard that has not run yet exposes only the
counters.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from typing import Final

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from spancost.guard.policy import Level
from spancost.guard.run import RunReport

__all__ = ["LEVELS", "GuardMetrics"]

LEVELS: Final[Mapping[Level, int]] = {Level.OK: 0, Level.WARN: 1, Level.BREACH: 2}


class GuardMetrics(Collector):
    """Collects the last `RunReport` (`record` is called by the loop after each run)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._report: RunReport | None = None
        self._runs = {"ok": 0, "failed": 0}
        self._actions: dict[tuple[str, str], int] = {}

    def record(self, report: RunReport) -> None:
        with self._lock:
            self._report = report
            self._runs["ok" if report.ok else "failed"] += 1
            for domain in report.domains:
                for result in domain.results:
                    if result.applied:
                        key = (result.action.domain, str(result.action.kind))
                        self._actions[key] = self._actions.get(key, 0) + 1

    def registry(self) -> CollectorRegistry:
        """A registry holding only these metrics (not the process defaults)."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return registry

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            report, runs, actions = self._report, dict(self._runs), dict(self._actions)
        counter = CounterMetricFamily(
            "spancost_guard_runs", "Guard runs, by outcome.", labels=["outcome"]
        )
        for outcome, count in sorted(runs.items()):
            counter.add_metric([outcome], count)
        yield counter
        changed = CounterMetricFamily(
            "spancost_guard_actions", "Deployments the guard changed.", labels=["domain", "kind"]
        )
        for (name, kind), count in sorted(actions.items()):
            changed.add_metric([name, kind], count)
        yield changed
        if report is None:
            return
        yield _gauge("spancost_guard_last_run_ok", "1 when the last run did its job.", report.ok)
        yield _gauge(
            "spancost_guard_last_run_timestamp_seconds",
            "When the last run ran (Unix seconds).",
            report.now.timestamp(),
        )
        store_failed = any(error.startswith("cannot read spend") for error in report.errors)
        yield _gauge(
            "spancost_guard_store_up", "1 when the last run read the store.", not store_failed
        )
        basis = GaugeMetricFamily(
            "spancost_guard_spend_basis",
            "What the budgets were held against: allocated or estimated spend.",
            labels=["basis"],
        )
        if report.spend_basis:
            basis.add_metric([report.spend_basis], 1)
        yield basis
        families = {
            name: GaugeMetricFamily(name, help_text, labels=labels)
            for name, help_text, labels in (
                ("spancost_budget_spend", "Rolling 24 h spend, in the budget's currency.",
                 ["domain", "currency"]),
                ("spancost_budget_limit", "The budget, in its currency.", ["domain", "currency"]),
                ("spancost_budget_ratio", "Spend over the budget.", ["domain"]),
                ("spancost_budget_level", "0 ok, 1 warn, 2 breach.", ["domain"]),
                ("spancost_budget_unpriced_ratio",
                 "Share of the domain's spans over 24 h spancost could not price.", ["domain"]),
            )
        }  # fmt: skip
        for domain in report.domains:
            a = domain.assessment
            families["spancost_budget_spend"].add_metric([a.domain, a.currency], a.spend)
            families["spancost_budget_limit"].add_metric([a.domain, a.currency], a.limit)
            families["spancost_budget_ratio"].add_metric([a.domain], a.ratio)
            families["spancost_budget_level"].add_metric([a.domain], LEVELS[a.level])
            families["spancost_budget_unpriced_ratio"].add_metric(
                [a.domain], a.unpriced_share or 0.0
            )
        yield from families.values()
        allocation = GaugeMetricFamily(
            "spancost_allocation_24h_usd",
            "The last 24 h of the nodes' cost as allocated, and per-request prices (USD).",
            labels=["kind"],
        )
        for kind, usd in sorted(report.allocation.items()):
            allocation.add_metric([kind], usd)
        yield allocation
        spend = GaugeMetricFamily(
            "spancost_transaction_spend_usd",
            "Rolling 24 h spend of the costliest transactions, on the spend basis (USD).",
            labels=["transaction"],
        )
        requests = GaugeMetricFamily(
            "spancost_transaction_requests",
            "Their requests over the same hours: traces (estimated) or segments served,"
            " sampling-adjusted (allocated).",
            labels=["transaction"],
        )
        for transaction in report.transactions:
            spend.add_metric([transaction.name], transaction.usd)
            requests.add_metric([transaction.name], transaction.requests)
        yield spend
        yield requests


def _gauge(name: str, help_text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, help_text, value=float(value))
