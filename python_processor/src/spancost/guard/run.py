"""One run of the budget guard: read spend, read the cluster, decide, act, alert.

Reads come first and writes after: a store or Kubernetes API that cannot be read
stops the run before anything is written (a failure alert is sent, and the run
reports an error). Each write is retried on 409 by re-reading the Deployment and
deciding again (`spancost.guard.policy.plan`), at most `MAX_ATTEMPTS` times.
After the budgets, the Deployments held for a domain that no budget covers in
their namespace any more are given back (`spancost.guard.policy.plan_unbudgeted`);
they are looked for in every namespace of the budgets file (the budgets' and
``managed_namespaces``) and in the `retired` namespaces a loop passes in.
Alerts are sent last; a webhook failure changes nothing that was done.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any, Final, Protocol

from spancost.guard.alerts import AlertSender
from spancost.guard.budgets import Budget, GuardConfig
from spancost.guard.kube import ConflictError, KubeError, KubeUnavailableError
from spancost.guard.policy import (
    DOMAIN_ANNOTATION,
    Action,
    ActionKind,
    Alert,
    Assessment,
    DeploymentState,
    Level,
    alerts_for,
    assess,
    coverage_alert,
    failure_alert,
    format_time,
    plan,
    plan_unbudgeted,
    unbudgeted_alerts,
)
from spancost.store.base import AllocatedRow, AllocationStore, StoreError, TotalsStore

__all__ = [
    "MAX_ATTEMPTS",
    "TOP_TRANSACTIONS",
    "WINDOW",
    "ActionResult",
    "Cluster",
    "DomainReport",
    "RunReport",
    "TransactionSpend",
    "run_forever",
    "run_once",
]

logger = logging.getLogger(__name__)

WINDOW: Final = timedelta(hours=24)
MAX_ATTEMPTS: Final = 5
TOP_TRANSACTIONS: Final = 10
"""How many transactions a run reports (`RunReport.transactions`): their names become a
label on the guard's /metrics, so they are bounded."""


class Cluster(Protocol):
    """What a run needs of Kubernetes (`spancost.guard.kube.KubeCluster`)."""

    def list_deployments(self, namespace: str, selector: str | None) -> list[DeploymentState]: ...

    def read_deployment(
        self, namespace: str, name: str, *, selected: bool
    ) -> DeploymentState | None: ...

    def apply(self, action: Action, resource_version: str) -> None: ...

    def record_event(self, action: Action, deployment: DeploymentState, now: datetime) -> None: ...


@dataclass(frozen=True, slots=True)
class ActionResult:
    action: Action
    applied: bool = False
    """The cluster was changed (never in a dry run)."""
    error: str = ""


@dataclass(slots=True)
class DomainReport:
    assessment: Assessment
    dry_run: bool
    results: list[ActionResult] = field(default_factory=list)

    @property
    def actions(self) -> list[Action]:
        return [result.action for result in self.results]


@dataclass(frozen=True, slots=True)
class TransactionSpend:
    """What one transaction cost over the run's window (USD), on the run's spend basis."""

    name: str
    usd: float
    requests: float
    """Its traces (estimated), or the segments it was served in, sampling-adjusted
    (allocated): what `spancost report` divides by for the cost per request."""


@dataclass(slots=True)
class RunReport:
    """What one run saw and did; `ok` is False when the store, the API or a write failed."""

    now: datetime
    domains: list[DomainReport] = field(default_factory=list)
    unbudgeted: list[ActionResult] = field(default_factory=list)
    """Deployments held for a domain no budget covers in their namespace any more."""
    errors: list[str] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    spend_basis: str = ""
    """``allocated`` (nodes report usage: their cost split, plus per-request prices) or
    ``estimated`` (the spans' own prices), what the budgets were held against."""
    allocation: dict[str, float] = field(default_factory=dict)
    """The last 24 h as allocated (USD): ``transaction``, ``untraced``, ``idle`` shares
    of the nodes, and ``per_request`` prices; empty when no node reported usage."""
    transactions: list[TransactionSpend] = field(default_factory=list)
    """The `TOP_TRANSACTIONS` costliest transactions, as `spancost report` lists them over
    the window's hours: allocated (its share of the nodes plus its per-request prices, the
    report's ``allocation.transactions``) or estimated (the spans' own prices, the report's
    ``transactions``), as the spend basis is."""

    @property
    def ok(self) -> bool:
        results = [r for d in self.domains for r in d.results] + self.unbudgeted
        return not self.errors and not any(r.error for r in results)

    def to_json(self) -> dict[str, Any]:
        return {
            "time": format_time(self.now),
            "ok": self.ok,
            "spend_basis": self.spend_basis,
            "errors": list(self.errors),
            "domains": [_domain_json(domain) for domain in self.domains],
            "unbudgeted": [_result_json(result) for result in self.unbudgeted],
            "alerts": [
                {"severity": str(a.severity), "priority": a.priority, "summary": a.summary}
                for a in self.alerts
            ],
        }


def run_once(
    config: GuardConfig,
    open_store: Callable[[], TotalsStore],
    connect: Callable[[], Cluster],
    sender: AlertSender,
    now: datetime | None = None,
    *,
    dry_run: bool = False,
    retired: Collection[str] = (),
) -> RunReport:
    """One guard run at `now` (default: the current UTC time); never raises SpancostError.

    `open_store` and `connect` are called once per run, so a loop survives a database
    or API server that was down at the last run. `retired`: namespaces the budgets
    file no longer names, searched for Deployments still held there (a namespace
    that cannot be read is skipped with a warning: the guard may have lost its Role).
    """
    now = datetime.now(UTC) if now is None else now
    report = RunReport(now)
    try:
        read = _read_spend(open_store, config, now)
    except StoreError as exc:
        _fail(
            report, sender, "cannot read spend from the totals store; nothing scaled", exc, "store"
        )
        return report
    report.spend_basis, report.allocation = read.basis, read.allocation
    report.transactions = read.transactions
    assessed = [
        (
            budget,
            assess(
                budget,
                config.fx.convert(read.spend.get(budget.domain, 0.0), budget.currency),
                read.coverage.get(budget.domain, (0, 0)),
            ),
        )
        for budget in config.budgets
    ]
    for budget, assessment in assessed:
        low = coverage_alert(assessment, read.reasons, dry_run=_dry(config, budget, dry_run))
        if low is not None:
            logger.warning("guard domain=%s: %s", budget.domain, low.summary)
            report.alerts.append(low)
    try:
        cluster = connect()
        states, unbudgeted = _read_cluster(cluster, config, retired)
    except KubeError as exc:
        for budget, assessment in assessed:
            report.domains.append(DomainReport(assessment, _dry(config, budget, dry_run)))
            report.alerts += alerts_for(assessment, [], dry_run=_dry(config, budget, dry_run))
        _fail(report, sender, "cannot read the Kubernetes API; nothing scaled", exc, "kubernetes")
        return report
    try:
        for budget, assessment in assessed:
            domain = DomainReport(assessment, _dry(config, budget, dry_run))
            report.domains.append(domain)
            decide = partial(plan, budget, assessment, now=now)
            for state in states[budget.domain]:
                domain.results.append(
                    _act(cluster, decide, state, now, assessment, dry_run=domain.dry_run)
                )
            done = _done(domain.results, dry_run=domain.dry_run)
            skipped = [r.action for r in domain.results if not r.action.changes]
            report.alerts += alerts_for(assessment, done + skipped, dry_run=domain.dry_run)
        dry = dry_run or config.dry_run
        give_back = partial(plan_unbudgeted, now=now)
        for state in unbudgeted:
            report.unbudgeted.append(_act(cluster, give_back, state, now, None, dry_run=dry))
        budgeted = {budget.domain for budget in config.budgets}
        done = _done(report.unbudgeted, dry_run=dry)
        report.alerts += unbudgeted_alerts(done, budgeted, dry_run=dry)
    except KubeUnavailableError as exc:
        _fail(report, sender, "the Kubernetes API failed during the run", exc, "kubernetes")
        return report
    sender.send(report.alerts, now)
    return report


def run_forever(run: Callable[[], RunReport], interval: float, stop: threading.Event) -> None:
    """Call `run` every `interval` seconds until `stop` is set (the loop of a Deployment)."""
    while not stop.is_set():
        try:
            run()
        except Exception:  # the loop must outlive any one run
            logger.exception("guard run failed unexpectedly; next run in %.0fs", interval)
        stop.wait(interval)


def _dry(config: GuardConfig, budget: Budget, dry_run: bool) -> bool:
    return dry_run or config.dry_run or budget.dry_run


def _done(results: list[ActionResult], *, dry_run: bool) -> list[Action]:
    """The actions carried out (dry: the ones that would have been)."""
    return [
        r.action for r in results if r.applied or (dry_run and r.action.changes and not r.error)
    ]


def _fail(report: RunReport, sender: AlertSender, what: str, exc: Exception, dedup: str) -> None:
    logger.error("guard run: %s: %s", what, exc)
    report.errors.append(f"{what}: {exc}")
    report.alerts.append(failure_alert(what, str(exc), dedup=dedup))
    sender.send(report.alerts, report.now)


@dataclass(frozen=True, slots=True)
class _Read:
    """What a run reads from the store (`_read_spend`)."""

    spend: dict[str, float]
    coverage: dict[str, tuple[int, int]]
    reasons: list[tuple[str, int]]
    basis: str
    allocation: dict[str, float]
    transactions: list[TransactionSpend]


def _read_spend(open_store: Callable[[], TotalsStore], config: GuardConfig, now: datetime) -> _Read:
    """Spend by domain over the last 24 h (USD), the coverage behind it ((spans, unpriced
    spans) by domain and the unpriced reasons, over its whole hours), its basis, the
    allocation by kind and the top transactions on the same basis.

    Where nodes report their usage, the spend is allocated: the domain's share of the
    nodes' cost and its per-request prices, over the allocated hours of the window (the
    first prorated by its part in it); the hours changed since the sink last allocated them are
    allocated first. Otherwise it is the spans' own estimates over exactly the window.
    """
    store = open_store()
    try:
        since, excluded = now - WINDOW, config.exclude_environments
        allocated: dict[str, float] | None = None
        kinds: dict[str, float] = {}
        transactions: list[TransactionSpend] = []
        if isinstance(store, AllocationStore):
            store.allocate()
            allocated = store.allocated_domain_spend(since, now, excluded)
            if allocated is not None:
                rows = store.allocated_totals(since, now, excluded)
                kinds, transactions = _allocation_kinds(rows), _allocated_transactions(rows)
        if allocated is None:
            spend = store.domain_spend(since, now, excluded)
            transactions = [
                TransactionSpend(row.name, row.cost_usd, row.traces)
                for row in store.transaction_totals(since, now, excluded, limit=TOP_TRANSACTIONS)
            ]
        else:
            spend = allocated
        coverage = store.domain_coverage(since, now, excluded)
        reasons = store.unpriced_reasons(since, now, excluded)
    finally:
        store.close()
    basis = "estimated" if allocated is None else "allocated"
    logger.debug("spend over 24 h by domain (USD, %s): %s; coverage: %s", basis, spend, coverage)
    return _Read(spend, coverage, reasons, basis, kinds, transactions)


def _allocation_kinds(rows: Iterable[AllocatedRow]) -> dict[str, float]:
    """The nodes' cost by kind of line, and the per-request prices, summed (USD)."""
    parts: dict[str, list[float]] = {
        "transaction": [],
        "untraced": [],
        "idle": [],
        "per_request": [],
    }
    for row in rows:
        parts[row.kind].append(row.usd)
        parts["per_request"].append(row.request_usd)
    return {kind: math.fsum(values) for kind, values in parts.items()}


def _allocated_transactions(rows: Iterable[AllocatedRow]) -> list[TransactionSpend]:
    """The transactions' lines summed over domains and environments, costliest first (ties
    by name), the first `TOP_TRANSACTIONS`: `spancost.report.build_allocation`'s sums."""
    parts: dict[str, tuple[list[float], list[float], list[float]]] = {}
    for row in rows:
        if row.kind == "transaction":
            compute, requested, segments = parts.setdefault(row.transaction, ([], [], []))
            compute.append(row.usd)
            requested.append(row.request_usd)
            segments.append(row.segments)
    lines = [
        TransactionSpend(name, math.fsum(compute) + math.fsum(requested), math.fsum(segments))
        for name, (compute, requested, segments) in parts.items()
    ]
    return sorted(lines, key=lambda line: (-line.usd, line.name))[:TOP_TRANSACTIONS]


def _read_cluster(
    cluster: Cluster, config: GuardConfig, retired: Collection[str]
) -> tuple[dict[str, list[DeploymentState]], list[DeploymentState]]:
    """Per domain: the Deployments its selector matches, and those it holds that it no
    longer matches (found by the guard's domain annotation). And the Deployments held
    for a domain that no budget covers in their namespace."""
    everything = {
        namespace: cluster.list_deployments(namespace, None) for namespace in config.namespaces
    }
    for namespace in sorted(set(retired) - set(everything)):
        try:
            everything[namespace] = cluster.list_deployments(namespace, None)
        except KubeUnavailableError:
            raise
        except KubeError as exc:
            logger.warning(
                "namespace %s is no longer in the budgets file and cannot be read; "
                "what the guard held there stays as it is: %s",
                namespace,
                exc,
            )
    by_domain: dict[str, list[DeploymentState]] = {}
    for budget in config.budgets:
        states: list[DeploymentState] = []
        for namespace in budget.namespaces:
            selected = cluster.list_deployments(namespace, budget.selector)
            names = {state.name for state in selected}
            held = [
                replace(state, selected=False)
                for state in everything[namespace]
                if state.annotations.get(DOMAIN_ANNOTATION) == budget.domain
                and state.name not in names
            ]
            states += sorted(selected + held, key=lambda state: state.name)
        by_domain[budget.domain] = states
    covered = {
        (budget.domain, namespace) for budget in config.budgets for namespace in budget.namespaces
    }
    unbudgeted = [
        replace(state, selected=False)
        for namespace, found in sorted(everything.items())
        for state in found
        if DOMAIN_ANNOTATION in state.annotations
        and (state.annotations[DOMAIN_ANNOTATION], namespace) not in covered
    ]
    return by_domain, unbudgeted


def _act(
    cluster: Cluster,
    decide: Callable[[DeploymentState], Action],
    state: DeploymentState,
    now: datetime,
    assessment: Assessment | None,
    *,
    dry_run: bool,
) -> ActionResult:
    """Carry out `decide(state)`, deciding again on a fresh read after each 409.

    `assessment`: the budget's, for the log (None: no budget covers the Deployment).
    """
    action = decide(state)
    if not action.changes or dry_run:
        _log(action, assessment, dry_run=dry_run)
        return ActionResult(action)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            cluster.apply(action, state.resource_version)
        except ConflictError as exc:
            logger.info(
                "guard conflict deployment=%s attempt=%d: %s; re-reading", action.ref, attempt, exc
            )
            fresh = cluster.read_deployment(state.namespace, state.name, selected=state.selected)
            if fresh is None:
                gone = replace(
                    action, kind=ActionKind.SKIP, target=None, reason="deleted meanwhile"
                )
                _log(gone, assessment, dry_run=False)
                return ActionResult(gone)
            state = fresh
            action = decide(state)
            if not action.changes:
                _log(action, assessment, dry_run=False)
                return ActionResult(action)
            continue
        except KubeUnavailableError:
            raise
        except KubeError as exc:
            logger.error("guard action=%s deployment=%s failed: %s", action.kind, action.ref, exc)
            return ActionResult(action, error=str(exc))
        _log(action, assessment, dry_run=False)
        cluster.record_event(action, state, now)
        return ActionResult(action, applied=True)
    error = f"{action.ref} still changing after {MAX_ATTEMPTS} attempts; left for the next run"
    logger.error("guard action=%s deployment=%s: %s", action.kind, action.ref, error)
    return ActionResult(action, error=error)


def _log(action: Action, assessment: Assessment | None, *, dry_run: bool) -> None:
    level = logging.INFO
    if action.kind is ActionKind.SKIP and (
        assessment is None or assessment.level is not Level.BREACH
    ):
        level = logging.DEBUG
    budget = (
        "budget=none"
        if assessment is None
        else f"ratio={assessment.ratio:.4f} level={assessment.level}"
    )
    logger.log(
        level,
        "guard domain=%s %s deployment=%s action=%s replicas=%d target=%s dry_run=%s: %s",
        action.domain,
        budget,
        action.ref,
        action.kind,
        action.replicas,
        "-" if action.target is None else action.target,
        dry_run,
        action.reason,
    )


def _domain_json(domain: DomainReport) -> dict[str, Any]:
    a = domain.assessment
    return {
        "domain": a.domain,
        "spend": round(a.spend, 6),
        "limit": a.limit,
        "currency": a.currency,
        "ratio": round(a.ratio, 6),
        "level": str(a.level),
        "recovered": a.recovered,
        "spans": a.spans,
        "unpriced_spans": a.unpriced_spans,
        "unpriced_share": None if a.unpriced_share is None else round(a.unpriced_share, 6),
        "reads_low": a.reads_low,
        "dry_run": domain.dry_run,
        "actions": [_result_json(result) for result in domain.results],
    }


def _result_json(result: ActionResult) -> dict[str, Any]:
    action = result.action
    return {
        "deployment": action.ref,
        "domain": action.domain,
        "action": str(action.kind),
        "replicas": action.replicas,
        "target": action.target,
        "reason": action.reason,
        "applied": result.applied,
        **({"error": result.error} if result.error else {}),
    }
