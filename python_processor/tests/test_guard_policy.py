"""The guard's pure policy: levels, per-Deployment decisions, convergence, alerts."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from spancost.guard.budgets import Budget
from spancost.guard.policy import (
    DOMAIN_ANNOTATION,
    EXCLUDE_ANNOTATION,
    ORIGINAL_ANNOTATION,
    SCALED_ANNOTATION,
    SCALED_AT_ANNOTATION,
    Action,
    ActionKind,
    DeploymentState,
    Level,
    Severity,
    alerts_for,
    assess,
    failure_alert,
    plan,
    target_replicas,
)

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
BUDGET = Budget(domain="checkout", limit=100.0, currency="USD", namespaces=("shop",),
                selector="domain=checkout")  # fmt: skip
BREACH = assess(BUDGET, 120.0)
WARN = assess(BUDGET, 85.0)  # below the restore ratio (0.9)
HOLD = assess(BUDGET, 95.0)  # a warning, not low enough to restore
RECOVERED = assess(BUDGET, 50.0)


def deployment(replicas: int = 10, **changes: object) -> DeploymentState:
    return replace(DeploymentState("shop", "web", replicas, {"domain": "checkout"}), **changes)  # type: ignore[arg-type]


def apply(state: DeploymentState, action: Action) -> DeploymentState:
    """What the cluster looks like after `action` (the Kubernetes adapter, in memory)."""
    annotations = dict(state.annotations)
    for name, value in action.annotations.items():
        if value is None:
            annotations.pop(name, None)
        else:
            annotations[name] = value
    replicas = state.replicas if action.target is None else action.target
    return replace(state, replicas=replicas, annotations=annotations)


def test_levels() -> None:
    assert assess(BUDGET, 79.99).level is Level.OK
    assert assess(BUDGET, 80.0).level is Level.WARN
    assert assess(BUDGET, 99.99).level is Level.WARN
    assert assess(BUDGET, 100.0).level is Level.BREACH
    assert assess(BUDGET, 89.99).recovered
    assert not assess(BUDGET, 90.0).recovered


def test_breach_scales_to_floor_of_factor_and_annotates() -> None:
    action = plan(BUDGET, BREACH, deployment(10), NOW)
    assert (action.kind, action.target) == (ActionKind.SCALE_DOWN, 7)
    assert action.annotations == {
        ORIGINAL_ANNOTATION: "10",
        SCALED_ANNOTATION: "7",
        DOMAIN_ANNOTATION: "checkout",
        SCALED_AT_ANNOTATION: "2025-01-31T12:00:00Z",
    }
    assert plan(BUDGET, BREACH, deployment(3), NOW).target == 2  # floor(2.1)
    assert plan(BUDGET, BREACH, deployment(2), NOW).target == 1  # floor(1.4)
    assert plan(BUDGET, BREACH, deployment(1), NOW).kind is ActionKind.SKIP  # the minimum
    assert plan(BUDGET, BREACH, deployment(0), NOW).kind is ActionKind.SKIP
    high_min = replace(BUDGET, min_replicas=8)
    assert plan(high_min, BREACH, deployment(10), NOW).target == 8
    assert plan(high_min, BREACH, deployment(5), NOW).kind is ActionKind.SKIP  # never up


def test_critical_excluded_and_unselected_are_untouched() -> None:
    critical = deployment(labels={"domain": "checkout", "criticality": "high"})
    excluded = deployment(annotations={EXCLUDE_ANNOTATION: "true"})
    unselected = deployment(selected=False)
    for state in (critical, excluded, unselected):
        assert plan(BUDGET, BREACH, state, NOW).kind is ActionKind.SKIP
    low = deployment(labels={"domain": "checkout", "criticality": "low"})
    assert plan(BUDGET, BREACH, low, NOW).kind is ActionKind.SCALE_DOWN


def test_warn_and_ok_change_nothing() -> None:
    for assessment in (WARN, RECOVERED):
        assert plan(BUDGET, assessment, deployment(10), NOW).kind is ActionKind.SKIP


def test_cooldown_and_restore_cycle() -> None:
    state = apply(deployment(10), plan(BUDGET, BREACH, deployment(10), NOW))
    assert state.replicas == 7
    # Held: a second breach changes nothing, a warning holds, recovery restores.
    assert plan(BUDGET, BREACH, state, NOW + timedelta(hours=5)).kind is ActionKind.SKIP
    assert plan(BUDGET, HOLD, state, NOW).kind is ActionKind.SKIP
    assert plan(BUDGET, WARN, state, NOW).kind is ActionKind.RESTORE
    restore = plan(BUDGET, RECOVERED, state, NOW + timedelta(minutes=5))
    assert (restore.kind, restore.target) == (ActionKind.RESTORE, 10)
    restored = apply(state, restore)
    assert restored.replicas == 10
    assert set(restored.annotations) == {SCALED_AT_ANNOTATION}  # the cooldown's memory
    # A new breach within the cooldown of the last scale-down waits ...
    early = plan(BUDGET, BREACH, restored, NOW + timedelta(minutes=29))
    assert early.kind is ActionKind.SKIP
    assert "cooldown" in early.reason
    # ... and after it scales again, from the restored count.
    later = plan(BUDGET, BREACH, restored, NOW + timedelta(minutes=30))
    assert (later.kind, later.target) == (ActionKind.SCALE_DOWN, 7)


def test_someone_else_changing_replicas_releases_the_deployment() -> None:
    state = apply(deployment(10), plan(BUDGET, BREACH, deployment(10), NOW))
    bumped = replace(state, replicas=12)
    action = plan(BUDGET, BREACH, bumped, NOW + timedelta(minutes=1))
    assert (action.kind, action.target) == (ActionKind.RELEASE, None)
    released = apply(bumped, action)
    assert released.replicas == 12
    assert set(released.annotations) == {SCALED_AT_ANNOTATION}
    # Never restored to the old original; scaled again only after the cooldown.
    assert plan(BUDGET, RECOVERED, released, NOW + timedelta(minutes=2)).kind is ActionKind.SKIP
    assert plan(BUDGET, BREACH, released, NOW + timedelta(minutes=2)).kind is ActionKind.SKIP
    again = plan(BUDGET, BREACH, released, NOW + timedelta(hours=1))
    assert (again.kind, again.target) == (ActionKind.SCALE_DOWN, 8)


def test_interrupted_scale_down_is_completed_not_compounded() -> None:
    action = plan(BUDGET, BREACH, deployment(10), NOW)
    # The process died after the annotations were written, before the scale.
    half = replace(apply(deployment(10), replace(action, target=None)), replicas=10)
    again = plan(BUDGET, BREACH, half, NOW + timedelta(minutes=1))  # within the cooldown
    assert (again.kind, again.target) == (ActionKind.SCALE_DOWN, 7)
    assert again.annotations[ORIGINAL_ANNOTATION] == "10"
    # Or spend recovered meanwhile: the annotations are simply removed.
    cleanup = plan(BUDGET, RECOVERED, half, NOW + timedelta(minutes=1))
    assert (cleanup.kind, cleanup.target) == (ActionKind.RESTORE, None)
    assert apply(half, cleanup).annotations == {SCALED_AT_ANNOTATION: "2025-01-31T12:00:00Z"}


def test_interrupted_restore_converges() -> None:
    state = apply(deployment(10), plan(BUDGET, BREACH, deployment(10), NOW))
    restore = plan(BUDGET, RECOVERED, state, NOW)
    # Replicas restored, then the process died before the annotations were removed.
    half = replace(state, replicas=10)
    again = plan(BUDGET, RECOVERED, half, NOW)
    assert (again.kind, again.target) == (ActionKind.RESTORE, None)
    assert apply(half, again).annotations == apply(state, restore).annotations


def test_other_domains_claim_and_bad_annotations_are_left_alone() -> None:
    other = deployment(
        7,
        annotations={
            ORIGINAL_ANNOTATION: "10",
            SCALED_ANNOTATION: "7",
            DOMAIN_ANNOTATION: "search",
        },
    )
    assert plan(BUDGET, RECOVERED, other, NOW).kind is ActionKind.SKIP
    broken = deployment(7, annotations={ORIGINAL_ANNOTATION: "ten"})
    action = plan(BUDGET, RECOVERED, broken, NOW)
    assert action.kind is ActionKind.SKIP
    assert "unreadable" in action.reason


def test_budget_change_rescales_from_the_original() -> None:
    state = apply(deployment(10), plan(BUDGET, BREACH, deployment(10), NOW))
    harsher = replace(BUDGET, scale_factor=0.5)
    action = plan(harsher, BREACH, state, NOW + timedelta(hours=1))
    assert (action.kind, action.target) == (ActionKind.SCALE_DOWN, 5)  # floor(10 x 0.5)
    gentler = replace(BUDGET, min_replicas=10)
    back = plan(gentler, BREACH, state, NOW + timedelta(hours=1))
    assert (back.kind, back.target) == (ActionKind.RESTORE, 10)


# -- properties ----------------------------------------------------------------------

budgets = st.builds(
    Budget,
    domain=st.just("checkout"),
    limit=st.just(100.0),
    currency=st.just("USD"),
    namespaces=st.just(("shop",)),
    selector=st.just("domain=checkout"),
    scale_factor=st.floats(min_value=0.01, max_value=0.99),
    min_replicas=st.integers(0, 5),
    warn_ratio=st.just(0.8),
    restore_ratio=st.floats(min_value=0.1, max_value=1.0),
    cooldown=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(hours=2)),
)
# One step: advance the clock, then spend (ratio) or someone else scales the Deployment.
steps = st.lists(
    st.tuples(
        st.integers(0, 90),  # minutes later
        st.one_of(st.floats(0.0, 2.0), st.integers(0, 40).map(lambda r: -r - 1)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(budget=budgets, original=st.integers(0, 40), steps=steps)
def test_simulated_runs_never_compound_never_go_below_min_and_restore_the_original(
    budget: Budget, original: int, steps: list[tuple[int, float | int]]
) -> None:
    state = deployment(original)
    baseline = original  # what the guard must give back: the count last set by someone else
    now = NOW
    for minutes, event in steps:
        now += timedelta(minutes=minutes)
        if isinstance(event, int):  # someone else sets the replicas
            replicas = -event - 1
            claim = (
                state.annotations.get(ORIGINAL_ANNOTATION),
                state.annotations.get(SCALED_ANNOTATION),
            )
            # A value equal to one of the guard's own counts cannot be told from the
            # guard's doing: the guard keeps its claim, and gives back its original.
            baseline = int(claim[0]) if claim[0] and str(replicas) in claim else replicas
            state = replace(state, replicas=replicas)
            continue
        assessment = assess(budget, event * budget.limit)
        action = plan(budget, assessment, state, now)
        before = state
        state = apply(state, action)
        target = target_replicas(baseline, budget)
        # Never below max(min, floor(baseline x factor)): scale-downs never compound.
        assert state.replicas in (baseline, target), (before, action, baseline)
        assert state.replicas >= min(baseline, budget.min_replicas)
        if action.kind is ActionKind.SCALE_DOWN:
            assert assessment.level is Level.BREACH
            assert state.replicas == target < baseline
            assert int(state.annotations[ORIGINAL_ANNOTATION]) == baseline
        if action.kind is ActionKind.RESTORE:
            assert assessment.recovered or target == baseline
            assert state.replicas == baseline
        if ORIGINAL_ANNOTATION in state.annotations:
            assert int(state.annotations[ORIGINAL_ANNOTATION]) == baseline
        else:
            assert state.replicas == baseline
    # Recovery, whatever happened before, hands back the original and drops the claim.
    end = apply(state, plan(budget, assess(budget, 0.0), state, now))
    assert ORIGINAL_ANNOTATION not in end.annotations
    assert end.replicas == baseline


@settings(max_examples=200, deadline=None)
@given(budget=budgets, replicas=st.integers(0, 1000))
def test_target_is_floor_of_factor_bounded_by_min_and_never_up(
    budget: Budget, replicas: int
) -> None:
    target = target_replicas(replicas, budget)
    assert target <= replicas
    assert target >= min(replicas, budget.min_replicas)
    assert target == min(
        replicas, max(budget.min_replicas, math.floor(replicas * budget.scale_factor))
    )
    # Deciding twice on the result never goes lower (non-compounding).
    first = plan(budget, assess(budget, 2 * budget.limit), deployment(replicas), NOW)
    state = apply(deployment(replicas), first)
    second = plan(budget, assess(budget, 3 * budget.limit), state, NOW + timedelta(days=1))
    assert apply(state, second).replicas == state.replicas


# -- alerts --------------------------------------------------------------------------


def kinds(alerts: list[object]) -> list[tuple[str, str, bool]]:
    return [(a.severity, a.priority, a.resolve) for a in alerts]  # type: ignore[attr-defined]


def test_alert_levels_and_priorities() -> None:
    scaled = plan(BUDGET, BREACH, deployment(10), NOW)
    breach = alerts_for(BREACH, [scaled])
    assert kinds(breach) == [(Severity.CRITICAL, "P1", False)]  # type: ignore[arg-type]
    assert "Budget breached" in breach[0].summary
    assert "scale down 1 Deployment" in breach[0].summary
    assert breach[0].dedup_key == "spancost-guard/checkout"
    details: Mapping[str, object] = breach[0].details
    assert details["actions"] == [
        {"deployment": "shop/web", "action": "scale_down", "replicas": 10, "target": 7,
         "reason": scaled.reason}
    ]  # fmt: skip
    assert kinds(alerts_for(WARN, [])) == [(Severity.WARNING, "P2", False)]  # type: ignore[arg-type]
    assert alerts_for(RECOVERED, []) == []
    state = apply(deployment(10), scaled)
    restored = alerts_for(RECOVERED, [plan(BUDGET, RECOVERED, state, NOW)])
    assert kinds(restored) == [(Severity.INFO, "", True)]  # type: ignore[arg-type]
    dry = alerts_for(BREACH, [scaled], dry_run=True)
    assert dry[0].summary.startswith("[dry-run] Budget breached")
    assert "would scale down" in dry[0].summary
    failure = failure_alert("cannot read spend", "boom", dedup="store")
    assert (failure.severity, failure.dedup_key) == (Severity.ERROR, "spancost-guard/store")
