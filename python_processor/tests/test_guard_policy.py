"""The guard's pure policy: levels, per-Deployment decisions, convergence, alerts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spancost.guard.budgets import Budget, parse_budgets
from spancost.guard.policy import (
    DOMAIN_ANNOTATION,
    EXCLUDE_ANNOTATION,
    ORIGINAL_ANNOTATION,
    RELEASED_AT_ANNOTATION,
    SCALED_ANNOTATION,
    SCALED_AT_ANNOTATION,
    SCALED_GENERATION_ANNOTATION,
    Action,
    ActionKind,
    Assessment,
    DeploymentState,
    Level,
    Severity,
    alerts_for,
    assess,
    failure_alert,
    plan,
    plan_unbudgeted,
    target_replicas,
    unbudgeted_alerts,
)

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
BUDGET = Budget(domain="checkout", limit=100.0, currency="USD", namespaces=("shop",),
                selector="domain=checkout")  # fmt: skip
BREACH = assess(BUDGET, 120.0)
WARN = assess(BUDGET, 85.0)  # below the restore ratio (0.9)
HOLD = assess(BUDGET, 95.0)  # a warning, not low enough to restore
RECOVERED = assess(BUDGET, 50.0)


def deployment(replicas: int = 10, **changes: object) -> DeploymentState:
    state = DeploymentState("shop", "web", replicas, {"domain": "checkout"}, generation=1)
    return replace(state, **changes)  # type: ignore[arg-type]


def apply(state: DeploymentState, action: Action) -> DeploymentState:
    """What the cluster looks like after `action` (the Kubernetes adapter, in memory).

    As the API server counts a Deployment's generation: one more for each write that
    changes its annotations (the claim's patch) or its spec (the scale write).
    """
    annotations = dict(state.annotations)
    for name, value in action.annotations.items():
        if value is None:
            annotations.pop(name, None)
        else:
            annotations[name] = value
    generation = state.generation + (annotations != state.annotations)
    if action.target is not None and action.target != state.replicas:
        generation += 1
    replicas = state.replicas if action.target is None else action.target
    return replace(state, replicas=replicas, annotations=annotations, generation=generation)


def someone_scales(state: DeploymentState, replicas: int) -> DeploymentState:
    """A person's ``kubectl scale`` (the generation moves when the value changes)."""
    moved = replicas != state.replicas
    return replace(state, replicas=replicas, generation=state.generation + moved)


def held(original: int = 10) -> DeploymentState:
    """A Deployment the guard scaled down at NOW."""
    state = deployment(original)
    return apply(state, plan(BUDGET, BREACH, state, NOW))


def claim_written(original: int = 10) -> DeploymentState:
    """The guard wrote its claim at NOW and died before its scale write."""
    state = deployment(original)
    action = plan(BUDGET, BREACH, state, NOW)
    return apply(state, replace(action, target=None))


def test_levels() -> None:
    assert assess(BUDGET, 79.99).level is Level.OK
    assert assess(BUDGET, 80.0).level is Level.WARN
    assert assess(BUDGET, 99.99).level is Level.WARN
    assert assess(BUDGET, 100.0).level is Level.BREACH
    assert assess(BUDGET, 89.99).recovered
    assert not assess(BUDGET, 90.0).recovered


def test_breach_scales_to_floor_of_factor_and_annotates() -> None:
    action = plan(BUDGET, BREACH, deployment(10, generation=4), NOW)
    assert (action.kind, action.target) == (ActionKind.SCALE_DOWN, 7)
    assert action.annotations == {
        ORIGINAL_ANNOTATION: "10",
        SCALED_ANNOTATION: "7",
        DOMAIN_ANNOTATION: "checkout",
        SCALED_AT_ANNOTATION: "2025-01-31T12:00:00Z",
        SCALED_GENERATION_ANNOTATION: "5",  # the generation the claim's own write gives it
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
    bumped = someone_scales(held(10), 12)
    action = plan(BUDGET, BREACH, bumped, NOW + timedelta(minutes=1))
    assert (action.kind, action.target) == (ActionKind.RELEASE, None)
    assert "changed to 12 by someone else" in action.reason
    released = apply(bumped, action)
    assert released.replicas == 12
    assert released.annotations == {
        SCALED_AT_ANNOTATION: "2025-01-31T12:00:00Z",
        RELEASED_AT_ANNOTATION: "2025-01-31T12:01:00Z",
    }
    # Never restored to the old original; scaled again only a cooldown after the release.
    assert plan(BUDGET, RECOVERED, released, NOW + timedelta(minutes=2)).kind is ActionKind.SKIP
    early = plan(BUDGET, BREACH, released, NOW + timedelta(minutes=30))
    assert early.kind is ActionKind.SKIP
    assert early.reason == (
        "in cooldown until 2025-01-31T12:31:00Z (released to someone else's replicas)"
    )
    again = plan(BUDGET, BREACH, released, NOW + timedelta(minutes=31))
    assert (again.kind, again.target) == (ActionKind.SCALE_DOWN, 8)


@pytest.mark.parametrize("level", [BREACH, HOLD, RECOVERED], ids=["breach", "hold", "recovered"])
def test_a_manual_restore_to_the_original_count_is_released_not_overruled(
    level: Assessment,
) -> None:
    restored = someone_scales(held(10), 10)  # kubectl scale --replicas=10
    action = plan(BUDGET, level, restored, NOW + timedelta(minutes=1))
    assert (action.kind, action.target) == (ActionKind.RELEASE, None)
    assert "set back to the original 10 by someone else" in action.reason
    released = apply(restored, action)
    assert released.replicas == 10
    assert not {ORIGINAL_ANNOTATION, SCALED_ANNOTATION, SCALED_GENERATION_ANNOTATION} & set(
        released.annotations
    )
    # Not scaled down again while the breach goes on: not within a cooldown of the release.
    for minutes in (2, 10, 30):
        later = plan(BUDGET, BREACH, released, NOW + timedelta(minutes=minutes))
        assert later.kind is ActionKind.SKIP, later


def test_an_older_guards_claim_at_the_original_count_is_a_manual_restore() -> None:
    """No recorded generation: the original count cannot be told from a person's restore."""
    state = held(10)
    older = {k: v for k, v in state.annotations.items() if k != SCALED_GENERATION_ANNOTATION}
    at_original = replace(state, replicas=10, annotations=older)
    action = plan(BUDGET, BREACH, at_original, NOW + timedelta(minutes=1))
    assert (action.kind, action.target) == (ActionKind.RELEASE, None)
    assert "records no generation" in action.reason
    # Still held at the guard's own count: kept, and restored on recovery.
    at_scaled = replace(state, annotations=older)
    assert plan(BUDGET, BREACH, at_scaled, NOW).kind is ActionKind.SKIP
    restore = plan(BUDGET, RECOVERED, at_scaled, NOW)
    assert (restore.kind, restore.target) == (ActionKind.RESTORE, 10)


def test_other_changes_to_a_held_deployment_do_not_release_it() -> None:
    """A person's rollout moves the generation; the replicas are still the guard's."""
    rolled_out = replace(held(10), generation=held(10).generation + 3)
    assert plan(BUDGET, BREACH, rolled_out, NOW + timedelta(minutes=1)).kind is ActionKind.SKIP
    restore = plan(BUDGET, RECOVERED, rolled_out, NOW + timedelta(minutes=1))
    assert (restore.kind, restore.target) == (ActionKind.RESTORE, 10)


def test_interrupted_scale_down_is_completed_not_compounded() -> None:
    half = claim_written(10)  # the process died after the claim, before the scale
    assert half.replicas == 10
    assert half.generation == int(half.annotations[SCALED_GENERATION_ANNOTATION])
    again = plan(BUDGET, BREACH, half, NOW + timedelta(minutes=1))  # within the cooldown
    assert (again.kind, again.target) == (ActionKind.SCALE_DOWN, 7)
    assert again.annotations[ORIGINAL_ANNOTATION] == "10"
    assert "interrupted" in again.reason
    done = apply(half, again)
    assert (done.replicas, done.generation) == (7, half.generation + 2)
    # Or spend recovered meanwhile: the claim is simply removed.
    cleanup = plan(BUDGET, RECOVERED, half, NOW + timedelta(minutes=1))
    assert (cleanup.kind, cleanup.target) == (ActionKind.RESTORE, None)
    assert apply(half, cleanup).annotations == {SCALED_AT_ANNOTATION: "2025-01-31T12:00:00Z"}
    # Or someone touched it meanwhile (an annotation, a rollout): released, never scaled.
    touched = replace(half, generation=half.generation + 1)
    assert plan(BUDGET, BREACH, touched, NOW + timedelta(minutes=1)).kind is ActionKind.RELEASE


def test_interrupted_restore_converges() -> None:
    state = held(10)
    restore = plan(BUDGET, RECOVERED, state, NOW)
    # Replicas restored, then the process died before the annotations were removed: the
    # next run cannot tell that from a person's restore and releases it, which leaves
    # what the restore would have left (the original count, no claim).
    half = apply(state, replace(restore, annotations={}))
    again = plan(BUDGET, RECOVERED, half, NOW)
    assert (again.kind, again.target) == (ActionKind.RELEASE, None)
    finished = apply(half, again)
    assert finished.replicas == apply(state, restore).replicas == 10
    assert ORIGINAL_ANNOTATION not in finished.annotations


def _opt_out(state: DeploymentState, how: str) -> DeploymentState:
    if how == "criticality=high":
        return replace(state, labels={**state.labels, "criticality": "high"})
    annotations = {**state.annotations, EXCLUDE_ANNOTATION: "True "}
    return replace(state, annotations=annotations, generation=state.generation + 1)


@pytest.mark.parametrize("how", ["criticality=high", "exclude"])
@pytest.mark.parametrize("level", [BREACH, HOLD], ids=["breach", "hold"])
def test_opting_out_while_held_gives_back_what_the_guard_took(how: str, level: Assessment) -> None:
    state = _opt_out(held(10), how)
    action = plan(BUDGET, level, state, NOW + timedelta(minutes=1))
    assert (action.kind, action.target) == (ActionKind.RESTORE, 10)
    assert how.partition("=")[0] in action.reason
    assert "while held" in action.reason
    back = apply(state, action)
    assert back.replicas == 10
    assert ORIGINAL_ANNOTATION not in back.annotations
    assert plan(BUDGET, BREACH, back, NOW + timedelta(hours=2)).kind is ActionKind.SKIP


@pytest.mark.parametrize("how", ["criticality=high", "exclude"])
def test_opting_out_after_someone_else_scaled_releases_only(how: str) -> None:
    state = _opt_out(someone_scales(held(10), 9), how)
    action = plan(BUDGET, BREACH, state, NOW + timedelta(minutes=1))
    assert (action.kind, action.target) == (ActionKind.RELEASE, None)
    assert apply(state, action).replicas == 9


def test_opting_out_of_an_interrupted_scale_down_drops_the_claim() -> None:
    state = _opt_out(claim_written(10), "criticality=high")  # a label: same generation
    action = plan(BUDGET, BREACH, state, NOW + timedelta(minutes=1))
    assert (action.kind, action.target) == (ActionKind.RESTORE, None)
    assert apply(state, action).replicas == 10


def test_a_deployment_no_budget_covers_is_given_back() -> None:
    later = NOW + timedelta(minutes=5)
    at_scaled = held(10)
    action = plan_unbudgeted(at_scaled, later)
    assert (action.kind, action.target, action.domain) == (ActionKind.RESTORE, 10, "checkout")
    assert "no budget of domain 'checkout' covers namespace shop" in action.reason
    assert ORIGINAL_ANNOTATION not in apply(at_scaled, action).annotations
    # Someone else's count stands; an interrupted scale-down is only cleaned up.
    other = plan_unbudgeted(someone_scales(at_scaled, 8), later)
    assert (other.kind, other.target) == (ActionKind.RELEASE, None)
    manual = plan_unbudgeted(someone_scales(at_scaled, 10), later)
    assert (manual.kind, manual.target) == (ActionKind.RELEASE, None)
    cleanup = plan_unbudgeted(claim_written(10), later)
    assert (cleanup.kind, cleanup.target) == (ActionKind.RESTORE, None)
    # Not held, or an unreadable claim: left alone.
    assert plan_unbudgeted(deployment(10), later).kind is ActionKind.SKIP
    broken = deployment(7, annotations={DOMAIN_ANNOTATION: "checkout"})
    assert "unreadable" in plan_unbudgeted(broken, later).reason


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
    harsher = replace(BUDGET, scale_factor=Fraction(1, 2))
    action = plan(harsher, BREACH, state, NOW + timedelta(hours=1))
    assert (action.kind, action.target) == (ActionKind.SCALE_DOWN, 5)  # floor(10 x 0.5)
    gentler = replace(BUDGET, min_replicas=10)
    back = plan(gentler, BREACH, state, NOW + timedelta(hours=1))
    assert (back.kind, back.target) == (ActionKind.RESTORE, 10)


# -- exact arithmetic ----------------------------------------------------------------

FACTORS = ["0.7", "0.3", "0.9", "0.1", "0.35", "0.55", "0.15", "0.01", "0.99", "0.333", "0.29"]


def specified_target(original: int, factor: str, min_replicas: int) -> int:
    """The README's ``max(min_replicas, floor(original x f))``, never above the original,
    for `factor` as written in the budgets file (a decimal string, read exactly)."""
    floor = (original * Fraction(factor)) // 1
    return min(original, max(min_replicas, floor))


@pytest.mark.parametrize("factor", FACTORS)
@pytest.mark.parametrize("min_replicas", [0, 1, 3])
def test_target_replicas_is_exact_for_every_count_up_to_1000(
    factor: str, min_replicas: int
) -> None:
    """floor(90 x 0.7) is 63; binary floats make it 62 (and 15 more counts up to 1000)."""
    checkout = {
        "limit": 1,
        "namespaces": ["shop"],
        "scale_factor": float(factor),  # as YAML hands it over
        "min_replicas": min_replicas,
    }
    budget = parse_budgets({"budgets": {"checkout": checkout}}).budgets[0]
    assert budget.scale_factor == Fraction(factor)
    wrong = [
        (original, target_replicas(original, budget))
        for original in range(1, 1001)
        if target_replicas(original, budget) != specified_target(original, factor, min_replicas)
    ]
    assert wrong == []


def test_target_replicas_of_the_default_factor() -> None:
    assert target_replicas(90, BUDGET) == 63
    assert [target_replicas(n, BUDGET) for n in (10, 20, 30, 70, 100, 1000)] == [
        7, 14, 21, 49, 70, 700,
    ]  # fmt: skip


# -- properties ----------------------------------------------------------------------

decimal_factors = st.integers(1, 999).map(lambda n: Fraction(n, 1000))
budgets = st.builds(
    Budget,
    domain=st.just("checkout"),
    limit=st.just(100.0),
    currency=st.just("USD"),
    namespaces=st.just(("shop",)),
    selector=st.just("domain=checkout"),
    scale_factor=decimal_factors,
    min_replicas=st.integers(0, 5),
    warn_ratio=st.just(0.8),
    restore_ratio=st.floats(min_value=0.1, max_value=1.0),
    cooldown=st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(hours=2)),
)
ROLLOUT = "rollout"
# One step: advance the clock, then spend (ratio), someone else scales the Deployment
# (a negative number: -replicas - 1), or someone rolls out a new pod template.
steps = st.lists(
    st.tuples(
        st.integers(0, 90),  # minutes later
        st.one_of(st.floats(0.0, 2.0), st.integers(0, 40).map(lambda r: -r - 1), st.just(ROLLOUT)),
    ),
    min_size=1,
    max_size=25,
)


@settings(max_examples=300, deadline=None)
@given(budget=budgets, original=st.integers(0, 40), steps=steps)
def test_simulated_runs_never_compound_never_overrule_and_restore_the_original(
    budget: Budget, original: int, steps: list[tuple[int, float | int | str]]
) -> None:
    state = deployment(original)
    baseline = original  # what the guard must give back: the count last set by someone else
    overruled = False  # the replicas a person just set must survive the guard's next run
    now = NOW
    for minutes, event in steps:
        now += timedelta(minutes=minutes)
        if isinstance(event, str):  # ROLLOUT
            state = replace(state, generation=state.generation + 1)
            continue
        if isinstance(event, int):  # someone else sets the replicas
            replicas = -event - 1
            scaled = state.annotations.get(SCALED_ANNOTATION)
            # The guard's own count cannot be told from the guard's doing: the guard keeps
            # its claim, and gives back its original. Any other value is the person's.
            if scaled is not None and str(replicas) == scaled:
                baseline = int(state.annotations[ORIGINAL_ANNOTATION])
                overruled = False
            else:
                overruled = scaled is not None and replicas != state.replicas
                baseline = replicas
            state = someone_scales(state, replicas)
            continue
        assessment = assess(budget, event * budget.limit)
        action = plan(budget, assessment, state, now)
        before = state
        state = apply(state, action)
        if overruled:  # the person's value stands, the claim is gone
            assert action.kind is ActionKind.RELEASE, (before, action)
            assert state.replicas == before.replicas
            overruled = False
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
def test_target_is_bounded_by_min_and_never_up_and_never_compounds(
    budget: Budget, replicas: int
) -> None:
    target = target_replicas(replicas, budget)
    assert target <= replicas
    assert target >= min(replicas, budget.min_replicas)
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
    # A Deployment given back during a breach (labelled critical meanwhile) is no recovery.
    given_back = plan(BUDGET, BREACH, _opt_out(state, "criticality=high"), NOW)
    assert kinds(alerts_for(BREACH, [given_back])) == [(Severity.CRITICAL, "P1", False)]  # type: ignore[arg-type]
    failure = failure_alert("cannot read spend", "boom", dedup="store")
    assert (failure.severity, failure.dedup_key) == (Severity.ERROR, "spancost-guard/store")


def test_alerts_for_deployments_no_budget_covers() -> None:
    back = plan_unbudgeted(held(10), NOW)
    [removed] = unbudgeted_alerts([back], budgeted={"search"})
    assert (removed.severity, removed.resolve, removed.dedup_key) == (
        Severity.INFO, True, "spancost-guard/checkout",
    )  # fmt: skip
    assert removed.summary == (
        "Budget removed: checkout; give back or release 1 Deployment(s) it held"
    )
    # The domain still has a budget (a namespace left it): its incident stays open.
    [narrowed] = unbudgeted_alerts([back], budgeted={"checkout"}, dry_run=True)
    assert narrowed.resolve is False
    assert narrowed.summary.startswith("[dry-run] Namespaces removed from budget: checkout")
    skipped = plan_unbudgeted(deployment(10), NOW)
    assert unbudgeted_alerts([skipped], budgeted=set()) == []
