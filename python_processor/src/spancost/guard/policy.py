"""What the budget guard decides: pure, no Kubernetes, database or network.

A domain's rolling 24 h spend against its budget gives a level (`assess`):
``ok`` below ``warn_ratio``, ``warn`` from it, ``breach`` from 100 %; and it has
*recovered* below ``restore_ratio``. For each Deployment `plan` then gives one
`Action`:

- **scale down** (breach): a Deployment the selector matched, not labelled
  ``criticality=high``, not annotated ``spancost.io/exclude: "true"``, goes to
  ``max(min_replicas, floor(original x scale_factor))`` (never up). The
  original replica count is kept in ``spancost.io/original-replicas`` and the
  target is always computed from it, so repeated breaches never compound.
  Not within ``cooldown`` of the Deployment's last scale-down
  (``spancost.io/scaled-at``, kept after a restore).
- **restore** (recovered): a Deployment carrying this domain's annotations goes
  back to its original count and the annotations are removed.
- **release**: a Deployment the guard scaled whose replicas someone else changed
  (neither the original nor the guard's count): the new value stands, the guard
  drops its claim and will not restore it.
- **skip**, with the reason, for everything else.

The writes are ordered so that a guard that dies half-way converges on its next
run instead of compounding: a scale-down writes the annotations first, then the
replicas (a Deployment annotated but still at its original count is an
*interrupted* scale-down, completed on the next breach even within the cooldown,
and simply cleaned up on recovery); a restore writes the replicas first, then
removes the annotations.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from typing import Final

from spancost.guard.budgets import Budget

__all__ = [
    "ANNOTATION_PREFIX",
    "CRITICALITY_LABEL",
    "DOMAIN_ANNOTATION",
    "EXCLUDE_ANNOTATION",
    "ORIGINAL_ANNOTATION",
    "SCALED_ANNOTATION",
    "SCALED_AT_ANNOTATION",
    "Action",
    "ActionKind",
    "Alert",
    "Assessment",
    "DeploymentState",
    "Level",
    "Severity",
    "alerts_for",
    "assess",
    "changed",
    "failure_alert",
    "format_time",
    "plan",
    "target_replicas",
]

ANNOTATION_PREFIX: Final = "spancost.io/"
EXCLUDE_ANNOTATION: Final = "spancost.io/exclude"
ORIGINAL_ANNOTATION: Final = "spancost.io/original-replicas"
SCALED_ANNOTATION: Final = "spancost.io/scaled-replicas"
SCALED_AT_ANNOTATION: Final = "spancost.io/scaled-at"
DOMAIN_ANNOTATION: Final = "spancost.io/budget-domain"
CRITICALITY_LABEL: Final = "criticality"
CRITICAL_VALUE: Final = "high"
DEDUP_PREFIX: Final = "spancost-guard/"

_CLAIM: Final = (ORIGINAL_ANNOTATION, SCALED_ANNOTATION, DOMAIN_ANNOTATION)
"""The annotations that say "the guard holds this Deployment"; scaled-at outlives them."""


class Level(StrEnum):
    OK = "ok"
    WARN = "warn"
    BREACH = "breach"


@dataclass(frozen=True, slots=True)
class Assessment:
    """A domain's spend against its budget."""

    domain: str
    spend: float
    """In `currency`, over the rolling 24 h."""
    limit: float
    currency: str
    ratio: float
    level: Level
    recovered: bool
    """Below the restore ratio: the guard gives back what it took."""


def assess(budget: Budget, spend: float) -> Assessment:
    """`spend` (in the budget's currency) against `budget`."""
    ratio = spend / budget.limit
    if ratio >= 1.0:
        level = Level.BREACH
    elif ratio >= budget.warn_ratio:
        level = Level.WARN
    else:
        level = Level.OK
    return Assessment(
        domain=budget.domain,
        spend=spend,
        limit=budget.limit,
        currency=budget.currency,
        ratio=ratio,
        level=level,
        recovered=ratio < budget.restore_ratio,
    )


@dataclass(frozen=True, slots=True)
class DeploymentState:
    """What the guard reads of a Deployment."""

    namespace: str
    name: str
    replicas: int
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    resource_version: str = ""
    uid: str = ""
    selected: bool = True
    """The budget's label selector matched it (False: found only by the guard's annotations)."""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


class ActionKind(StrEnum):
    SCALE_DOWN = "scale_down"
    RESTORE = "restore"
    RELEASE = "release"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Action:
    """What to do to one Deployment, and why."""

    kind: ActionKind
    namespace: str
    name: str
    domain: str
    replicas: int
    """The replicas it has now."""
    target: int | None = None
    """The replicas to set; None leaves them."""
    annotations: Mapping[str, str | None] = field(default_factory=dict)
    """Annotation changes (None removes one)."""
    reason: str = ""

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def changes(self) -> bool:
        return self.kind is not ActionKind.SKIP


def target_replicas(original: int, budget: Budget) -> int:
    """``max(min_replicas, floor(original x scale_factor))``, never above `original`."""
    return min(original, max(budget.min_replicas, math.floor(original * budget.scale_factor)))


def format_time(moment: datetime) -> str:
    """``2025-01-31T12:00:00Z``: how the guard writes times into annotations."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse_time(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None


@dataclass(frozen=True, slots=True)
class _Claim:
    original: int
    scaled: int
    domain: str


def _claim(annotations: Mapping[str, str]) -> _Claim | str | None:
    """The guard's claim on a Deployment, an error message if it is unreadable, or None."""
    if not any(name in annotations for name in _CLAIM):
        return None
    try:
        original = int(annotations[ORIGINAL_ANNOTATION])
        scaled = int(annotations[SCALED_ANNOTATION])
        domain = annotations[DOMAIN_ANNOTATION]
    except (KeyError, ValueError):
        values = {name: annotations.get(name) for name in _CLAIM}
        return f"unreadable guard annotations {values}; fix or remove them by hand"
    if original < 0 or scaled < 0:
        return f"negative replica counts in the guard annotations ({original}, {scaled})"
    return _Claim(original, scaled, domain)


def _in_cooldown(annotations: Mapping[str, str], budget: Budget, now: datetime) -> datetime | None:
    """When the cooldown of the last scale-down ends, if it has not yet."""
    text = annotations.get(SCALED_AT_ANNOTATION)
    scaled_at = _parse_time(text) if text else None
    if scaled_at is None:
        return None
    ends = scaled_at + budget.cooldown
    return ends if now < ends else None


def plan(  # noqa: PLR0911 - one return per rule, in the order the rules apply
    budget: Budget, assessment: Assessment, deployment: DeploymentState, now: datetime
) -> Action:
    """The one thing to do to `deployment` at `now` (see the module docstring)."""
    replicas = deployment.replicas
    action = partial(_action, budget, deployment)
    claim = _claim(deployment.annotations)
    if isinstance(claim, str):
        return action(ActionKind.SKIP, claim)
    if claim is not None:
        if claim.domain != budget.domain:
            return action(ActionKind.SKIP, f"held by the budget of domain {claim.domain!r}")
        return _plan_held(budget, assessment, deployment, claim, now)

    if not deployment.selected:
        return action(ActionKind.SKIP, "not selected")
    if assessment.level is not Level.BREACH:
        return action(ActionKind.SKIP, f"within budget ({assessment.level})")
    if deployment.labels.get(CRITICALITY_LABEL) == CRITICAL_VALUE:
        return action(ActionKind.SKIP, f"labelled {CRITICALITY_LABEL}={CRITICAL_VALUE}")
    if deployment.annotations.get(EXCLUDE_ANNOTATION, "").strip().lower() == "true":
        return action(ActionKind.SKIP, f"annotated {EXCLUDE_ANNOTATION}=true")
    target = target_replicas(replicas, budget)
    if target >= replicas:
        return action(ActionKind.SKIP, f"already at or below the minimum ({budget.min_replicas})")
    cooldown_ends = _in_cooldown(deployment.annotations, budget, now)
    if cooldown_ends is not None:
        return action(
            ActionKind.SKIP, f"in cooldown until {format_time(cooldown_ends)} (last scale-down)"
        )
    return action(
        ActionKind.SCALE_DOWN,
        f"budget breached ({assessment.ratio:.0%}): {replicas} -> {target}",
        target=target,
        annotations={
            ORIGINAL_ANNOTATION: str(replicas),
            SCALED_ANNOTATION: str(target),
            DOMAIN_ANNOTATION: budget.domain,
            SCALED_AT_ANNOTATION: format_time(now),
        },
    )


def _plan_held(  # noqa: PLR0911 - one return per rule, in the order the rules apply
    budget: Budget,
    assessment: Assessment,
    deployment: DeploymentState,
    claim: _Claim,
    now: datetime,
) -> Action:
    """A Deployment that carries this domain's claim."""
    replicas = deployment.replicas
    action = partial(_action, budget, deployment)
    drop_claim: dict[str, str | None] = dict.fromkeys(_CLAIM)
    if replicas not in (claim.original, claim.scaled):
        return action(
            ActionKind.RELEASE,
            f"replicas changed to {replicas} by someone else (guard set {claim.scaled}, "
            f"original {claim.original}): the new value stands",
            annotations=drop_claim,
        )
    if assessment.recovered:
        return action(
            ActionKind.RESTORE,
            f"spend back to {assessment.ratio:.0%}: {replicas} -> {claim.original}",
            target=claim.original if replicas != claim.original else None,
            annotations=drop_claim,
        )
    if assessment.level is not Level.BREACH:
        return action(
            ActionKind.SKIP,
            f"holding at {replicas} (original {claim.original}) until spend is below "
            f"{budget.restore_ratio:.0%} (now {assessment.ratio:.0%})",
        )
    target = target_replicas(claim.original, budget)
    if replicas == target:
        return action(ActionKind.SKIP, f"holding at {target} (original {claim.original})")
    if target >= claim.original:
        # The budget changed so that nothing needs taking any more.
        return action(
            ActionKind.RESTORE,
            f"target for original {claim.original} is now {target}: nothing to hold",
            target=claim.original if replicas != claim.original else None,
            annotations=drop_claim,
        )
    interrupted = replicas == claim.original
    cooldown_ends = _in_cooldown(deployment.annotations, budget, now)
    if cooldown_ends is not None and not interrupted:
        return action(
            ActionKind.SKIP, f"in cooldown until {format_time(cooldown_ends)} (last scale-down)"
        )
    what = "completing an interrupted scale-down" if interrupted else "budget changed"
    return action(
        ActionKind.SCALE_DOWN,
        f"budget breached ({assessment.ratio:.0%}), {what}: {replicas} -> {target} "
        f"(original {claim.original})",
        target=target,
        annotations={
            ORIGINAL_ANNOTATION: str(claim.original),
            SCALED_ANNOTATION: str(target),
            DOMAIN_ANNOTATION: budget.domain,
            SCALED_AT_ANNOTATION: format_time(now),
        },
    )


def _action(
    budget: Budget,
    deployment: DeploymentState,
    kind: ActionKind,
    reason: str,
    *,
    target: int | None = None,
    annotations: Mapping[str, str | None] | None = None,
) -> Action:
    return Action(
        kind,
        deployment.namespace,
        deployment.name,
        budget.domain,
        deployment.replicas,
        target=target,
        annotations={} if annotations is None else annotations,
        reason=reason,
    )


# -- alerts ----------------------------------------------------------------------------


class Severity(StrEnum):
    """PagerDuty Events API v2 severities."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"
    CRITICAL = "critical"


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert: logged, and posted to every webhook."""

    severity: Severity
    summary: str
    dedup_key: str
    """Alerts about the same thing share it (PagerDuty groups them into one incident)."""
    domain: str = ""
    priority: str = ""
    """``P1`` (breach), ``P2`` (warning), or empty."""
    resolve: bool = False
    """The thing alerted about is over (PagerDuty: ``event_action: resolve``)."""
    details: Mapping[str, object] = field(default_factory=dict)


def _money(amount: float, currency: str) -> str:
    return f"{amount:,.2f} {currency}"


def alerts_for(
    assessment: Assessment, actions: Sequence[Action], *, dry_run: bool = False
) -> list[Alert]:
    """The alerts a domain's assessment and its applied (or, dry, planned) actions call for."""
    spent = (
        f"{assessment.domain} spent {_money(assessment.spend, assessment.currency)} of "
        f"{_money(assessment.limit, assessment.currency)} ({assessment.ratio:.0%}) in 24 h"
    )
    prefix = "[dry-run] " if dry_run else ""
    would = "would " if dry_run else ""
    scaled = [a for a in actions if a.kind is ActionKind.SCALE_DOWN]
    restored = [a for a in actions if a.kind is ActionKind.RESTORE]
    details: dict[str, object] = {
        "domain": assessment.domain,
        "spend": round(assessment.spend, 6),
        "limit": assessment.limit,
        "currency": assessment.currency,
        "ratio": round(assessment.ratio, 6),
        "level": str(assessment.level),
        "dry_run": dry_run,
        "actions": [_describe(a) for a in actions if a.changes],
        "skipped": [_describe(a) for a in actions if not a.changes],
    }
    key = DEDUP_PREFIX + assessment.domain
    alerts: list[Alert] = []
    if assessment.level is Level.BREACH:
        what = f"; {would}scale down {len(scaled)} Deployment(s)" if scaled else ""
        summary = f"{prefix}Budget breached: {spent}{what}"
        alerts.append(
            Alert(Severity.CRITICAL, summary, key, assessment.domain, "P1", details=details)
        )
    elif assessment.level is Level.WARN:
        summary = f"{prefix}Budget warning: {spent}"
        alerts.append(
            Alert(Severity.WARNING, summary, key, assessment.domain, "P2", details=details)
        )
    if restored:
        alerts.append(
            Alert(
                Severity.INFO,
                f"{prefix}Budget recovered: {spent}; {would}restore {len(restored)} Deployment(s)",
                key,
                assessment.domain,
                resolve=assessment.level is Level.OK,
                details=details,
            )
        )
    return alerts


def failure_alert(what: str, error: str, *, dedup: str) -> Alert:
    """The guard itself cannot do its job (store or Kubernetes API unavailable)."""
    return Alert(
        Severity.ERROR,
        f"Budget guard: {what}: {error}",
        DEDUP_PREFIX + dedup,
        details={"error": error},
    )


def _describe(action: Action) -> dict[str, object]:
    described: dict[str, object] = {
        "deployment": action.ref,
        "action": str(action.kind),
        "replicas": action.replicas,
        "reason": action.reason,
    }
    if action.target is not None:
        described["target"] = action.target
    return described


def changed(actions: Iterable[Action]) -> list[Action]:
    """The actions that change something."""
    return [a for a in actions if a.changes]
