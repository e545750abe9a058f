"""One guard run over a real SQLite totals store and an in-memory cluster (no network).

The same scenarios run against a real API server in tests/kube/test_guard.py.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Collection
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from spancost.allocation.pricing import NodePrice
from spancost.allocation.usage import NodeUsage, PodUsage
from spancost.cli import cli
from spancost.guard.alerts import AlertSender
from spancost.guard.budgets import Budget, BudgetsFile, GuardConfig
from spancost.guard.kube import ConflictError, KubeError, KubeUnavailableError
from spancost.guard.loop import GuardLoop
from spancost.guard.policy import (
    ORIGINAL_ANNOTATION,
    Action,
    ActionKind,
    DeploymentState,
    Severity,
)
from spancost.guard.run import Cluster, RunReport, run_once
from spancost.store import SQLiteStore, StoreError, TotalsStore
from spancost.totals import split
from spancost.totals.aggregate import SpanContribution, ns_from_utc

NOW = datetime(2025, 1, 31, 12, 30, tzinfo=UTC)
BUDGET = Budget("checkout", 100.0, "USD", ("shop",), "domain=checkout")


class FakeCluster:
    """Deployments in memory, with resourceVersions and 409s like the API server."""

    def __init__(self, *deployments: DeploymentState) -> None:
        self.items = {
            (d.namespace, d.name): replace(d, resource_version="1", generation=1)
            for d in deployments
        }
        self.events: list[tuple[str, str]] = []
        self.forbidden: set[str] = set()  # namespaces without the guard's Role
        self.writes = 0
        self.before_write: list[DeploymentState] = []  # applied (once each) before a write

    def list_deployments(self, namespace: str, selector: str | None) -> list[DeploymentState]:
        if namespace in self.forbidden:
            raise KubeError(f"list deployments in {namespace}: 403 forbidden", 403)
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
        """A write; the generation moves with the spec (replicas) and the annotations."""
        old = self.items[(state.namespace, state.name)]
        version = str(int(old.resource_version) + 1)
        moved = (state.replicas != old.replicas) or (state.annotations != old.annotations)
        generation = old.generation + moved
        self.items[(state.namespace, state.name)] = replace(
            state, resource_version=version, generation=generation
        )

    def scale(self, name: str, replicas: int, namespace: str = "shop") -> None:
        """Someone else's ``kubectl scale``."""
        self._store(replace(self.items[(namespace, name)], replicas=replicas))

    def replicas(self, name: str, namespace: str = "shop") -> int:
        return self.items[(namespace, name)].replicas

    def annotations(self, name: str, namespace: str = "shop") -> dict[str, str]:
        return dict(self.items[(namespace, name)].annotations)


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


def test_where_nodes_report_usage_the_guard_acts_on_allocated_spend(tmp_path: Path) -> None:
    """The span's estimate says 120 USD (over the budget); the node it ran on cost 0.096
    an hour, and the web pod's share of it is what checkout spent: nothing is scaled."""
    store = store_with(tmp_path / "t.db", 0.0)
    hour_ns = ns_from_utc(NOW) // (3600 * 10**9) * (3600 * 10**9)
    segment = SpanContribution(
        trace_id=f"{2:032x}", span_id=f"{1:016x}", start_ns=ns_from_utc(NOW) - 10**9,
        end_ns=ns_from_utc(NOW), cost_usd=120.0, is_root=True, name="checkout", service="web",
        environment="production", pod="web", segment=True, compute=True,
    )  # fmt: skip
    accepted, quarantined = split([segment], NOW, timedelta(hours=2))
    store.write(accepted, quarantined, NOW)
    node = NodeUsage(hour_ns, "n1", 1800.0, "us-east-1", "m5.large", "linux", "on_demand",
                     "us-east-1a", 2.0, 8.0)  # fmt: skip
    pod = PodUsage(hour_ns, "web", "n1", 1800.0, 1.0, 2.0, "shop", "Deployment/web")
    store.write_usage([(node, NodePrice(0.096, "bundled", "ec2", "2025-01-01"))], [pod], NOW)
    store.close()
    cluster = FakeCluster(web())
    report = run_once(
        GuardConfig((BUDGET,)), lambda: SQLiteStore(tmp_path / "t.db"), lambda: cluster,
        AlertSender([]), NOW,
    )  # fmt: skip
    assert report.ok and report.spend_basis == "allocated"
    assert report.to_json()["spend_basis"] == "allocated"
    # The pod weighs 11 of the node's 26, for the half hour both ran.
    assert report.domains[0].assessment.spend == pytest.approx(0.096 * 11 / 26 / 2)
    assert cluster.replicas("web") == 10
    # Without usage the same store's estimate breaches (the basis the guard had before).
    estimated = run_once(
        GuardConfig((BUDGET,)), lambda: store_with(tmp_path / "u.db", 120.0), lambda: cluster,
        AlertSender([]), NOW,
    )  # fmt: skip
    assert estimated.spend_basis == "estimated"
    assert cluster.replicas("web") == 7


def store_partly_priced(path: Path, unpriced: int) -> SQLiteStore:
    """One checkout trace: a priced root (50 USD) and `unpriced` spans spancost could not
    price (their cost is not in the 50)."""
    store = SQLiteStore(path)
    store.migrate()
    now_ns = ns_from_utc(NOW)
    spans = [
        SpanContribution(f"{1:032x}", f"{1:016x}", now_ns - 10**9, now_ns, 50.0, None, True,
                         "checkout", "web", "production"),
        *(
            SpanContribution(f"{1:032x}", f"{n + 2:016x}", now_ns - 10**9, now_ns, 0.0,
                             "unknown_instance_type", False, "call", "web", "production")
            for n in range(unpriced)
        ),
    ]  # fmt: skip
    accepted, quarantined = split(spans, NOW, timedelta(hours=2))
    store.write(accepted, quarantined, NOW)
    return store


def test_a_domain_whose_spend_reads_low_is_warned_about(tmp_path: Path) -> None:
    cluster = FakeCluster(web())
    report = run_once(
        GuardConfig((BUDGET,)), lambda: store_partly_priced(tmp_path / "t.db", 3),
        lambda: cluster, AlertSender([]), NOW,
    )  # fmt: skip
    assert report.ok
    assert cluster.replicas("web") == 10  # 50 of 100 USD: within budget, nothing scaled
    (alert,) = report.alerts
    assert (alert.severity, alert.priority) == (Severity.WARNING, "P2")
    assert alert.dedup_key == "spancost-guard/checkout/coverage"
    assert alert.summary == (
        "Budget coverage: 75% of checkout's spans in 24 h are unpriced (above 20%), so its"
        " spend reads low; top reasons: unknown_instance_type (3)"
    )
    domain = report.to_json()["domains"][0]
    assert (domain["spans"], domain["unpriced_spans"], domain["unpriced_share"]) == (4, 3, 0.75)
    assert domain["reads_low"] is True
    # Within the budget's own threshold: no warning.
    tolerant = replace(BUDGET, max_unpriced_share=0.75)
    report = run_once(
        GuardConfig((tolerant,)), lambda: store_partly_priced(tmp_path / "u.db", 3),
        lambda: cluster, AlertSender([]), NOW,
    )  # fmt: skip
    assert report.alerts == []
    assert report.to_json()["domains"][0]["reads_low"] is False


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


# -- what no budget covers any more ----------------------------------------------------

SEARCH = Budget("search", 100.0, "USD", ("search",), "domain=search")


def run(
    tmp_path: Path,
    cluster: FakeCluster,
    config: GuardConfig,
    spend: float,
    *,
    at: timedelta = timedelta(0),
    retired: Collection[str] = (),
) -> RunReport:
    path = tmp_path / f"t{len(list(tmp_path.iterdir()))}.db"
    return run_once(config, lambda: store_with(path, spend), lambda: cluster,
                    AlertSender([]), NOW + at, retired=retired)  # fmt: skip


def test_a_removed_budget_gives_back_what_it_held(tmp_path: Path) -> None:
    cluster = FakeCluster(web(), web("api", 4), web("other", 6, domain="payments"))
    run(tmp_path, cluster, GuardConfig((BUDGET,)), 120.0)
    assert (cluster.replicas("web"), cluster.replicas("api")) == (7, 2)
    cluster.scale("api", 3)  # someone else's value: stands
    # The file now has only a budget in another namespace; "shop" stays managed.
    config = GuardConfig((SEARCH,), managed_namespaces=("shop",))
    report = run(tmp_path, cluster, config, 120.0, at=timedelta(minutes=5))
    assert report.ok, report.to_json()
    assert (cluster.replicas("web"), cluster.replicas("api"), cluster.replicas("other")) == (
        10, 3, 6,
    )  # fmt: skip
    assert ORIGINAL_ANNOTATION not in cluster.annotations("web")
    assert ORIGINAL_ANNOTATION not in cluster.annotations("api")
    assert sorted(cluster.events[-2:]) == [("shop/api", "release"), ("shop/web", "restore")]
    assert {(r.action.ref, r.action.kind, r.applied) for r in report.unbudgeted} == {
        ("shop/web", ActionKind.RESTORE, True),
        ("shop/api", ActionKind.RELEASE, True),
    }
    reasons = {a["deployment"]: a["reason"] for a in report.to_json()["unbudgeted"]}
    assert "no budget of domain 'checkout' covers namespace shop" in reasons["shop/web"]
    [alert] = [a for a in report.alerts if a.domain == "checkout"]
    assert (alert.severity, alert.resolve) == (Severity.INFO, True)
    # Nothing held any more: the next run has nothing to do there.
    assert run(tmp_path, cluster, config, 120.0, at=timedelta(minutes=10)).unbudgeted == []


def test_a_namespace_removed_from_a_budget_gives_back_what_it_held(tmp_path: Path) -> None:
    two = replace(BUDGET, namespaces=("shop", "legacy"))
    cluster = FakeCluster(web(), replace(web(), namespace="legacy"))
    run(tmp_path, cluster, GuardConfig((two,)), 120.0)
    assert (cluster.replicas("web"), cluster.replicas("web", "legacy")) == (7, 7)
    report = run(tmp_path, cluster, GuardConfig((BUDGET,), managed_namespaces=("legacy",)),
                 120.0, at=timedelta(minutes=5))  # fmt: skip
    assert (cluster.replicas("web"), cluster.replicas("web", "legacy")) == (7, 10)
    [alert] = [a for a in report.alerts if a.summary.startswith("Namespaces removed")]
    assert alert.resolve is False  # the checkout budget's breach goes on


def test_removed_budgets_are_found_only_where_the_guard_looks(tmp_path: Path) -> None:
    cluster = FakeCluster(web())
    run(tmp_path, cluster, GuardConfig((BUDGET,)), 120.0)
    # Neither a budget nor managed_namespaces names "shop": nothing is found there ...
    report = run(tmp_path, cluster, GuardConfig((SEARCH,)), 120.0, at=timedelta(minutes=5))
    assert (report.unbudgeted, cluster.replicas("web")) == ([], 7)
    # ... unless a loop passes it as retired.
    run(tmp_path, cluster, GuardConfig((SEARCH,)), 120.0, at=timedelta(minutes=6), retired={"shop"})
    assert cluster.replicas("web") == 10


def test_a_retired_namespace_that_cannot_be_read_is_skipped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = FakeCluster(web())
    run(tmp_path, cluster, GuardConfig((BUDGET,)), 120.0)
    cluster.forbidden.add("shop")  # the Role went with the budget
    with caplog.at_level(logging.WARNING, logger="spancost.guard.run"):
        report = run(tmp_path, cluster, GuardConfig((SEARCH,)), 120.0, retired={"shop"})
    assert report.ok
    assert "namespace shop is no longer in the budgets file and cannot be read" in caplog.text
    # A namespace the file names must be readable: that is an error.
    bad = run(tmp_path, cluster, GuardConfig((SEARCH,), managed_namespaces=("shop",)), 120.0)
    assert not bad.ok
    assert "403" in bad.errors[0]


def test_dry_run_gives_nothing_back(tmp_path: Path) -> None:
    cluster = FakeCluster(web())
    run(tmp_path, cluster, GuardConfig((BUDGET,)), 120.0)
    writes = cluster.writes
    report = run(tmp_path, cluster, GuardConfig((SEARCH,), managed_namespaces=("shop",),
                 dry_run=True), 120.0)  # fmt: skip
    assert cluster.writes == writes
    assert [r.action.kind for r in report.unbudgeted] == [ActionKind.RESTORE]
    assert any(a.summary.startswith("[dry-run] Budget removed") for a in report.alerts)


# -- the loop: a budgets file that changes --------------------------------------------


def test_loop_keeps_the_last_good_budgets_and_reports_a_bad_file(tmp_path: Path) -> None:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text("budgets:\n  checkout: {limit: 100, namespaces: [shop]}\n")
    cluster = FakeCluster(web(), web("api", 4))
    errors: list[str] = []
    seen: list[tuple[tuple[str, ...], frozenset[str]]] = []

    def one(config: GuardConfig, sender: AlertSender, retired: Collection[str]) -> RunReport:
        seen.append((tuple(b.domain for b in config.budgets), frozenset(retired)))
        store = tmp_path / f"t{len(seen)}.db"
        return run_once(config, lambda: store_with(store, 120.0), lambda: cluster, sender,
                        NOW + timedelta(minutes=len(seen)), retired=retired)  # fmt: skip

    loop = GuardLoop(BudgetsFile(budgets), one, errors.append)
    try:
        loop.run_once()
        assert cluster.replicas("web") == 7
        budgets.write_text("budgets:\n  checkout: {limit: 100, namespaces: [Shop]}\n")
        report = loop.run_once()  # the last good budgets, still in force
        assert report.ok
        assert len(errors) == 1
        assert "budgets.checkout.namespaces[0]: must be a namespace name" in errors[0]
        assert "keeping the budgets read at" in errors[0]
        loop.run_once()
        assert len(errors) == 1  # reported once per bad version
        # A good file: takes effect at the next run; "shop" is retired, and swept.
        budgets.write_text("budgets:\n  search: {limit: 100, namespaces: [search]}\n")
        loop.run_once()
        assert (cluster.replicas("web"), cluster.replicas("api")) == (10, 4)
        loop.run_once()
    finally:
        loop.close()
    assert seen == [
        (("checkout",), frozenset()),
        (("checkout",), frozenset()),
        (("checkout",), frozenset()),
        (("search",), frozenset({"shop"})),
        (("search",), frozenset()),  # forgotten once a run succeeded
    ]
