"""What the budget guard decides: pure, no Kubernetes, database or network.

A domain's rolling 24 h spend against its budget gives a level (`assess`):
``ok`` below ``warn_ratio``, ``warn`` from it, ``breach`` from 100 %; and it has
*recovered* below ``restore_ratio``. For each Deployment `plan` then gives one
`Action`:

- **scale down** (breach): a Deployment the selector matched, not labelled
  ``criticality=high``, not annotated ``spancost.io/exclude: "true"``, goes to
  ``max(min_replicas, floor(original x scale_factor))`` (never up), in exact
  arithmetic. The original replica count is kept in
  ``spancost.io/original-replicas`` and the target is always computed from it,
  so repeated breaches never compound. Not within ``cooldown`` of the
  Deployment's last scale-down (``spancost.io/scaled-at``) or of its release
  to someone else (``spancost.io/released-at``), both kept after the claim.
- **restore** (recovered): a Deployment carrying this domain's claim goes back
  to its original count and the claim is removed. The same, whatever the
  spend, for a Deployment labelled ``criticality=high`` or annotated
  ``spancost.io/exclude: "true"`` after the guard took it (`plan`), and for one
  held for a domain that no budget covers any more (`plan_unbudgeted`).
- **release**: a Deployment the guard holds whose replicas someone else set:
  the value stands, the guard drops its claim and will not restore it.
- **skip**, with the reason, for everything else.

Who set the replicas of a held Deployment (`_set_by_someone_else`): the guard's
count is the guard's; any other count is someone else's; the *original* count
is an interrupted scale-down of the guard's only while ``metadata.generation``
is still the one the claim recorded (``spancost.io/scaled-generation``). The API
server adds one to a Deployment's generation at every write that changes its
spec or its annotations (tests/kube/test_guard.py checks it), so the claim's own
write gives the generation the scale-down records, the guard's scale write
moves past it, and so does a person's (``kubectl scale``, an edit, a rollout).
A claim without a generation (written by an older guard) at the original count
is taken for a person's restore: the guard never overrules a person.

The writes are ordered so that a guard that dies half-way converges on its next
run instead of compounding: a scale-down writes the claim first, then the
replicas (a Deployment claimed but still at its original count and recorded
generation is an *interrupted* scale-down, completed on the next breach even
within the cooldown, and simply cleaned up on recovery); a restore writes the
replicas first, then removes the claim (dying in between leaves the original
count at a newer generation: released on the next run, the same end state).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
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
    "RELEASED_AT_ANNOTATION",
    "SCALED_ANNOTATION",
    "SCALED_AT_ANNOTATION",
    "SCALED_GENERATION_ANNOTATION",
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
    "coverage_alert",
    "failure_alert",
    "format_time",
    "plan",
    "plan_unbudgeted",
    "target_replicas",
    "unbudgeted_alerts",
]

ANNOTATION_PREFIX: Final = "spancost.io/"
EXCLUDE_ANNOTATION: Final = "spancost.io/exclude"
ORIGINAL_ANNOTATION: Final = "spancost.io/original-replicas"
SCALED_ANNOTATION: Final = "spancost.io/scaled-replicas"
SCALED_AT_ANNOTATION: Final = "spancost.io/scaled-at"
SCALED_GENERATION_ANNOTATION: Final = "spancost.io/scaled-generation"
RELEASED_AT_ANNOTATION: Final = "spancost.io/released-at"
DOMAIN_ANNOTATION: Final = "spancost.io/budget-domain"
CRITICALITY_LABEL: Final = "criticality"
CRITICAL_VALUE: Final = "high"
DEDUP_PREFIX: Final = "spancost-guard/"

_CLAIM: Final = (ORIGINAL_ANNOTATION, SCALED_ANNOTATION, DOMAIN_ANNOTATION)
"""The annotations that say "the guard holds this Deployment"; scaled-at outlives them."""
_DROP_CLAIM: Final[Mapping[str, str | None]] = dict.fromkeys(
    (*_CLAIM, SCALED_GENERATION_ANNOTATION)
)


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
    spans: int = 0
    """Spans of the domain's traces over the window (coverage)."""
    unpriced_spans: int = 0
    """Of those, the spans spancost could not price: their cost is missing from `spend`."""
    max_unpriced_share: float = 1.0

    @property
    def unpriced_share(self) -> float | None:
        return self.unpriced_spans / self.spans if self.spans else None

    @property
    def reads_low(self) -> bool:
        """More of the domain's spans are unpriced than its budget accepts: its spend,
        and so its budget's verdict, cannot be trusted to be complete."""
        share = self.unpriced_share
        return share is not None and share > self.max_unpriced_share


def assess(budget: Budget, spend: float, coverage: tuple[int, int] = (0, 0)) -> Assessment:
    """`spend` (in the budget's currency) against `budget`; `coverage` is the domain's
    (spans, unpriced spans) over the same window."""
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
        spans=coverage[0],
        unpriced_spans=coverage[1],
        max_unpriced_share=budget.max_unpriced_share,
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
    generation: int = 0
    """``metadata.generation``: one more at every change of the spec or the annotations."""
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
    """``max(min_replicas, floor(original x scale_factor))``, never above `original`.

    Exact: the factor is a `Fraction` (a float would make floor(90 x 0.7) 62).
    """
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
    generation: int | None
    """The Deployment's generation right after the claim was written (None: an older guard's)."""


def _claim(annotations: Mapping[str, str]) -> _Claim | str | None:
    """The guard's claim on a Deployment, an error message if it is unreadable, or None."""
    if not any(name in annotations for name in _CLAIM):
        return None
    generation = annotations.get(SCALED_GENERATION_ANNOTATION)
    try:
        original = int(annotations[ORIGINAL_ANNOTATION])
        scaled = int(annotations[SCALED_ANNOTATION])
        domain = annotations[DOMAIN_ANNOTATION]
        claimed_at = None if generation is None else int(generation)
    except (KeyError, ValueError):
        values = {name: annotations.get(name) for name in (*_CLAIM, SCALED_GENERATION_ANNOTATION)}
        return f"unreadable guard annotations {values}; fix or remove them by hand"
    if original < 0 or scaled < 0:
        return f"negative replica counts in the guard annotations ({original}, {scaled})"
    return _Claim(original, scaled, domain, claimed_at)


def _set_by_someone_else(deployment: DeploymentState, claim: _Claim) -> str:
    """Why the replicas of a held Deployment are someone else's choice, or "" if they are
    the guard's (its count, or the original of a scale-down whose scale write never came)."""
    replicas = deployment.replicas
    if replicas == claim.scaled:
        return ""
    if replicas != claim.original:
        return (
            f"replicas changed to {replicas} by someone else (guard set {claim.scaled}, "
            f"original {claim.original})"
        )
    if claim.generation is None:
        return (
            f"replicas back at the original {replicas} and the claim records no generation "
            "(an older guard's): taken for a restore by someone else"
        )
    if deployment.generation != claim.generation:
        return (
            f"replicas set back to the original {replicas} by someone else (generation "
            f"{deployment.generation}, the guard's claim was written at {claim.generation})"
        )
    return ""


def _opted_out(deployment: DeploymentState) -> str:
    """Why the guard may not hold `deployment` (critical, excluded), or ""."""
    if deployment.labels.get(CRITICALITY_LABEL) == CRITICAL_VALUE:
        return f"labelled {CRITICALITY_LABEL}={CRITICAL_VALUE}"
    if deployment.annotations.get(EXCLUDE_ANNOTATION, "").strip().lower() == "true":
        return f"annotated {EXCLUDE_ANNOTATION}=true"
    return ""


def _in_cooldown(annotations: Mapping[str, str], budget: Budget, now: datetime) -> str:
    """Until when and why no scale-down may happen (the cooldown has not ended), or ""."""
    ends: list[tuple[datetime, str]] = []
    for name, what in (
        (SCALED_AT_ANNOTATION, "last scale-down"),
        (RELEASED_AT_ANNOTATION, "released to someone else's replicas"),
    ):
        text = annotations.get(name)
        moment = _parse_time(text) if text else None
        if moment is not None and now < moment + budget.cooldown:
            ends.append((moment + budget.cooldown, what))
    if not ends:
        return ""
    until, what = max(ends)
    return f"in cooldown until {format_time(until)} ({what})"


def plan(  # noqa: PLR0911 - one return per rule, in the order the rules apply
    budget: Budget, assessment: Assessment, deployment: DeploymentState, now: datetime
) -> Action:
    """The one thing to do to `deployment` at `now` (see the module docstring)."""
    replicas = deployment.replicas
    action = partial(_action, budget.domain, deployment)
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
    opted_out = _opted_out(deployment)
    if opted_out:
        return action(ActionKind.SKIP, opted_out)
    target = target_replicas(replicas, budget)
    if target >= replicas:
        return action(ActionKind.SKIP, f"already at or below the minimum ({budget.min_replicas})")
    cooldown = _in_cooldown(deployment.annotations, budget, now)
    if cooldown:
        return action(ActionKind.SKIP, cooldown)
    return action(
        ActionKind.SCALE_DOWN,
        f"budget breached ({assessment.ratio:.0%}): {replicas} -> {target}",
        target=target,
        annotations=_claim_annotations(budget, deployment, replicas, target, now),
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
    action = partial(_action, budget.domain, deployment)
    someone_else = _set_by_someone_else(deployment, claim)
    if someone_else:
        return _release(budget.domain, deployment, someone_else, now)
    opted_out = _opted_out(deployment)
    if opted_out:
        return _give_back(budget.domain, deployment, claim, f"{opted_out} while held")
    if assessment.recovered:
        return _give_back(budget.domain, deployment, claim, f"spend back to {assessment.ratio:.0%}")
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
        return _give_back(
            budget.domain,
            deployment,
            claim,
            f"target for original {claim.original} is now {target}: nothing to hold",
        )
    interrupted = replicas == claim.original != claim.scaled
    cooldown = _in_cooldown(deployment.annotations, budget, now)
    if cooldown and not interrupted:
        return action(ActionKind.SKIP, cooldown)
    what = "completing an interrupted scale-down" if interrupted else "budget changed"
    return action(
        ActionKind.SCALE_DOWN,
        f"budget breached ({assessment.ratio:.0%}), {what}: {replicas} -> {target} "
        f"(original {claim.original})",
        target=target,
        annotations=_claim_annotations(budget, deployment, claim.original, target, now),
    )


def plan_unbudgeted(deployment: DeploymentState, now: datetime) -> Action:
    """A Deployment held for a domain that no budget covers in its namespace any more
    (the budget was removed, or the namespace from it): given back, or released if
    someone else set its replicas meanwhile."""
    claim = _claim(deployment.annotations)
    if claim is None or isinstance(claim, str):
        domain = deployment.annotations.get(DOMAIN_ANNOTATION, "")
        return _action(domain, deployment, ActionKind.SKIP, claim or "not held by the guard")
    someone_else = _set_by_someone_else(deployment, claim)
    if someone_else:
        return _release(claim.domain, deployment, someone_else, now)
    return _give_back(
        claim.domain,
        deployment,
        claim,
        f"no budget of domain {claim.domain!r} covers namespace {deployment.namespace} any more",
    )


def _claim_annotations(
    budget: Budget, deployment: DeploymentState, original: int, target: int, now: datetime
) -> dict[str, str | None]:
    """The claim a scale-down writes, before its scale write."""
    return {
        ORIGINAL_ANNOTATION: str(original),
        SCALED_ANNOTATION: str(target),
        DOMAIN_ANNOTATION: budget.domain,
        SCALED_AT_ANNOTATION: format_time(now),
        # This write changes the annotations, so the API server gives the Deployment
        # the next generation (the write carries the resourceVersion it was decided
        # on, so no other write comes in between): while the generation stays there,
        # nobody (the guard's scale write included) has set the replicas since.
        SCALED_GENERATION_ANNOTATION: str(deployment.generation + 1),
    }


def _give_back(domain: str, deployment: DeploymentState, claim: _Claim, why: str) -> Action:
    """Restore the original count (unless the scale write never came) and drop the claim."""
    replicas = deployment.replicas
    if replicas == claim.original:
        reason = f"{why}: replicas already at the original {replicas}, claim dropped"
    else:
        reason = f"{why}: {replicas} -> {claim.original} (the original), claim dropped"
    return _action(
        domain,
        deployment,
        ActionKind.RESTORE,
        reason,
        target=claim.original if replicas != claim.original else None,
        annotations=_DROP_CLAIM,
    )


def _release(domain: str, deployment: DeploymentState, why: str, now: datetime) -> Action:
    return _action(
        domain,
        deployment,
        ActionKind.RELEASE,
        f"{why}: that value stands, the guard drops its claim",
        annotations={**_DROP_CLAIM, RELEASED_AT_ANNOTATION: format_time(now)},
    )


def _action(
    domain: str,
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
        domain,
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
    if restored and assessment.recovered:
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


def unbudgeted_alerts(
    actions: Sequence[Action], budgeted: Collection[str], *, dry_run: bool = False
) -> list[Alert]:
    """Per domain: the Deployments held for it that no budget covers any more (`actions`
    from `plan_unbudgeted`), given back or released.

    For a domain without any budget (not in `budgeted`) the alert is a ``resolve`` under
    the domain's key, so an open incident of its removed budget closes.
    """
    alerts: list[Alert] = []
    prefix, would = ("[dry-run] ", "would ") if dry_run else ("", "")
    for domain in sorted({a.domain for a in actions if a.changes}):
        mine = [a for a in actions if a.domain == domain and a.changes]
        removed = domain not in budgeted
        alerts.append(
            Alert(
                Severity.INFO,
                f"{prefix}{'Budget removed' if removed else 'Namespaces removed from budget'}: "
                f"{domain}; {would}give back or release {len(mine)} Deployment(s) it held",
                DEDUP_PREFIX + domain,
                domain,
                resolve=removed,
                details={
                    "domain": domain,
                    "dry_run": dry_run,
                    "actions": [_describe(a) for a in mine],
                },
            )
        )
    return alerts


def coverage_alert(
    assessment: Assessment, reasons: Sequence[tuple[str, int]], *, dry_run: bool = False
) -> Alert | None:
    """A warning (P2) while more of the domain's spans are unpriced than its budget's
    ``max_unpriced_share``: its spend, and the verdict on it, read low. None otherwise.
    Repeated every run while it lasts, under one dedup key (one incident)."""
    share = assessment.unpriced_share
    if share is None or not assessment.reads_low:
        return None
    top = ", ".join(f"{reason} ({spans:,})" for reason, spans in reasons[:3]) or "none counted"
    prefix = "[dry-run] " if dry_run else ""
    return Alert(
        Severity.WARNING,
        f"{prefix}Budget coverage: {share:.0%} of {assessment.domain}'s spans in 24 h are"
        f" unpriced (above {assessment.max_unpriced_share:.0%}), so its spend reads low;"
        f" top reasons: {top}",
        f"{DEDUP_PREFIX}{assessment.domain}/coverage",
        assessment.domain,
        "P2",
        details={
            "domain": assessment.domain,
            "spans": assessment.spans,
            "unpriced_spans": assessment.unpriced_spans,
            "unpriced_share": round(share, 6),
            "max_unpriced_share": assessment.max_unpriced_share,
            "reasons": [{"reason": reason, "spans": spans} for reason, spans in reasons],
            "dry_run": dry_run,
        },
    )


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
