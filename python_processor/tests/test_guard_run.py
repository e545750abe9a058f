"""One guard run over a real SQLite totals store and an in-memory cluster (no network).

The same scenarios run against a real API server in tests/kube/test_guard.py.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from click.testing import CliRunner

from spancost.cli import cli
from spancost.guard.alerts import AlertSender
from spancost.guard.budgets import Budget, GuardConfig
from spancost.guard.kube import ConflictError, KubeUnavailableError
from spancost.guard.policy import (
    ORIGINAL_ANNOTATION,
    Action,
    ActionKind,
    DeploymentState,
    Severity,
)
from spancost.guard.run import Cluster, run_once
from spancost.store import SQLiteStore, StoreError, TotalsStore
from spancost.totals import split
from spancost.totals.aggregate import SpanContribution, ns_from_utc

NOW = datetime(2025, 1, 31, 12, 30, tzinfo=UTC)
BUDGET = Budget("checkout", 100.0, "USD", ("shop",), "domain=checkout")


class FakeCluster:
    """Deployments in memory, with resourceVersions and 409s like the API server."""

    def __init__(self, *deployments: DeploymentState) -> None:
        self.items = {(d.namespace, d.name): replace(d, resource_version="1") for d in deployments}
        self.events: list[tuple[str, str]] = []
        self.writes = 0
        self.before_write: list[DeploymentState] = []  # applied (once each) before a write

    def list_deployments(self, namespace: str, selector: str | None) -> list[DeploymentState]:
        key, _, value = (selector or "=").partition("=")
        return [
            replace(d, selected=selector is not None)
            for (ns, _), d in self.items.items()
            if ns == namespace and (selector is None or d.labels.get(key) == value)
        ]

    def read_deployment(
        self, namespace: str, name: str, *, selected: bool
    ) -> DeploymentState | None:
        found = self.items.get((namespace, name))
        return None if found is None else replace(found, selected=selected)

    def apply(self, action: Action, resource_version: str) -> None:
        if self.before_write:
            self._store(self.before_write.pop(0))
        current = self.items[(action.namespace, action.name)]
        if current.resource_version != resource_version:
            raise ConflictError("409 the object has been modified", 409)
        annotations = {k: v for k, v in current.annotations.items()}
        for name, value in action.annotations.items():
            if value is None:
                annotations.pop(name, None)
            else:
                annotations[name] = value
        replicas = current.replicas if action.target is None else action.target
        self.writes += 1
        self._store(replace(current, replicas=replicas, annotations=annotations))

    def record_event(self, action: Action, deployment: DeploymentState, now: datetime) -> None:
        self.events.append((action.ref, str(action.kind)))

    def _store(self, state: DeploymentState) -> None:
        old = self.items[(state.namespace, state.name)]
        version = str(int(old.resource_version) + 1)
        self.items[(state.namespace, state.name)] = replace(state, resource_version=version)

    def replicas(self, name: str) -> int:
        return self.items[("shop", name)].replicas


def web(name: str = "web", replicas: int = 10, **labels: str) -> DeploymentState:
    return DeploymentState("shop", name, replicas, {"domain": "checkout", **labels})


def store_with(path: Path, cost: float, environment: str = "production") -> SQLiteStore:
    store = SQLiteStore(path)
    store.migrate()
    span = SpanContribution(
        trace_id=f"{1:032x}",
        span_id=f"{1:016x}",
        start_ns=ns_from_utc(NOW) - 10**9,
        end_ns=ns_from_utc(NOW),
        cost_usd=cost,
        is_root=True,
        name="checkout",
        service="web",
        environment=environment,
    )
    accepted, quarantined = split([span], NOW, timedelta(hours=2))
    store.write(accepted, quarantined, NOW)
    return store


def test_breach_scales_and_records_events(tmp_path: Path) -> None:
    cluster = FakeCluster(web(), web("db", 4, criticality="high"), web("two", 2))
    report = run_once(
        GuardConfig((BUDGET,)), lambda: store_with(tmp_path / "t.db", 120.0),
        lambda: cluster, AlertSender([]), NOW,
    )  # fmt: skip
    assert report.ok
    assert (cluster.replicas("web"), cluster.replicas("db"), cluster.replicas("two")) == (7, 4, 1)
    assert sorted(cluster.events) == [("shop/two", "scale_down"), ("shop/web", "scale_down")]
    assert [(a.severity, a.priority) for a in report.alerts] == [(Severity.CRITICAL, "P1")]
    assert report.to_json()["domains"][0]["level"] == "breach"


def test_non_production_spend_does_not_count(tmp_path: Path) -> None:
    cluster = FakeCluster(web())
    report = run_once(
        GuardConfig((BUDGET,)), lambda: store_with(tmp_path / "t.db", 500.0, "staging"),
        lambda: cluster, AlertSender([]), NOW,
    )  # fmt: skip
    assert report.ok
    assert report.domains[0].assessment.spend == 0.0
    assert cluster.replicas("web") == 10


def test_budget_in_another_currency(tmp_path: Path) -> None:
    from spancost.pricing.fx import FxTable  # noqa: PLC0415

    eur = replace(BUDGET, limit=100.0, currency="EUR")
    config = GuardConfig((eur,), fx=FxTable({"rates": {"EUR": 0.5}}))
    cluster = FakeCluster(web())
    report = run_once(config, lambda: store_with(tmp_path / "t.db", 150.0), lambda: cluster,
                      AlertSender([]), NOW)  # fmt: skip
    assert report.domains[0].assessment.spend == 75.0  # 150 USD = 75 EUR: a warning
    assert cluster.replicas("web") == 10


def test_conflict_is_reread_and_decided_again(tmp_path: Path) -> None:
    cluster = FakeCluster(web())
    cluster.before_write = [replace(cluster.items[("shop", "web")], replicas=20)]
    report = run_once(GuardConfig((BUDGET,)), lambda: store_with(tmp_path / "t.db", 120.0),
                      lambda: cluster, AlertSender([]), NOW)  # fmt: skip
    assert report.ok
    assert cluster.replicas("web") == 14  # floor(20 x 0.7), not 7 from the stale read
    assert cluster.items[("shop", "web")].annotations[ORIGINAL_ANNOTATION] == "20"


def test_dry_run_changes_nothing_and_reports(tmp_path: Path) -> None:
    cluster = FakeCluster(web())
    report = run_once(GuardConfig((BUDGET,)), lambda: store_with(tmp_path / "t.db", 120.0),
                      lambda: cluster, AlertSender([]), NOW, dry_run=True)  # fmt: skip
    assert cluster.writes == 0
    assert cluster.events == []
    [result] = report.domains[0].results
    assert (result.action.kind, result.action.target, result.applied) == (
        ActionKind.SCALE_DOWN, 7, False,
    )  # fmt: skip
    assert report.alerts[0].summary.startswith("[dry-run]")


def test_store_unavailable_means_no_scaling_and_an_alert() -> None:
    cluster = FakeCluster(web())
    connected: list[bool] = []

    def broken() -> TotalsStore:
        raise StoreError("cannot connect to PostgreSQL totals store host=db: refused")

    def connect() -> Cluster:
        connected.append(True)
        return cluster

    report = run_once(GuardConfig((BUDGET,)), broken, connect, AlertSender([]), NOW)
    assert not report.ok
    assert connected == []
    assert cluster.replicas("web") == 10
    assert [a.severity for a in report.alerts] == [Severity.ERROR]
    assert "totals store" in report.alerts[0].summary


def test_api_unavailable_is_an_error_with_the_spend_alerts(tmp_path: Path) -> None:
    def connect() -> Cluster:
        raise KubeUnavailableError("Kubernetes API at https://127.0.0.1:1 is unavailable")

    report = run_once(GuardConfig((BUDGET,)), lambda: store_with(tmp_path / "t.db", 120.0),
                      connect, AlertSender([]), NOW)  # fmt: skip
    assert not report.ok
    assert [a.severity for a in report.alerts] == [Severity.CRITICAL, Severity.ERROR]
    assert "Kubernetes API" in report.errors[0]


def test_cli_once_exit_codes(tmp_path: Path) -> None:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("budgets:\n  checkout: {limit: 100, namespaces: [shop], scale_factor: 2}\n")
    runner = CliRunner()
    bad = runner.invoke(cli, ["guard", "--once", "--budgets", str(budgets)])
    assert bad.exit_code == 2
    assert "config.budgets.checkout.scale_factor: must be a number above 0 and below 1" in (
        bad.output
    )
    budgets.write_text("budgets:\n  checkout: {limit: 100, namespaces: [shop]}\n")
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:1"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    store_with(tmp_path / "t.db", 1.0).close()
    result = runner.invoke(
        cli,
        ["guard", "--once", "--budgets", str(budgets), "--kubeconfig", str(kubeconfig),
         "--database-url", f"sqlite:///{tmp_path / 't.db'}", "--output", "json"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "Kubernetes API at https://127.0.0.1:1" in result.output
    assert "unavailable" in result.output


def test_restore_after_recovery(tmp_path: Path) -> None:
    cluster = FakeCluster(web())
    run_once(GuardConfig((BUDGET,)), lambda: store_with(tmp_path / "a.db", 120.0),
             lambda: cluster, AlertSender([]), NOW)  # fmt: skip
    assert cluster.replicas("web") == 7
    report = run_once(GuardConfig((BUDGET,)), lambda: store_with(tmp_path / "b.db", 50.0),
                      lambda: cluster, AlertSender([]), NOW + timedelta(minutes=5))  # fmt: skip
    assert cluster.replicas("web") == 10
    assert ORIGINAL_ANNOTATION not in cluster.items[("shop", "web")].annotations
    assert [a.resolve for a in report.alerts] == [True]
