"""The budgets file of ``spancost guard`` (see `spancost.guard.budgets`, which turns it
into `GuardConfig`)."""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, Field, model_validator

from spancost.config import (
    Choice,
    ConfigModel,
    Duration,
    HttpUrl,
    Integer,
    Number,
    StrList,
    default,
    invalid,
    list_of,
)
from spancost.settings.currency import USD, CurrencySettings

__all__ = [
    "WEBHOOK_FORMATS",
    "AlertsSettings",
    "BudgetDefaults",
    "BudgetSettings",
    "BudgetsFileSettings",
    "WebhookSettings",
]

WEBHOOK_FORMATS: Final = ("pagerduty", "json")
# RFC 1123 label: what a namespace name must be.
_NAMESPACE_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# A label value (also the domain in the default selector ``domain=<domain>``).
LABEL_VALUE_RE: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
# A label key, optionally prefixed: ``app``, ``app.kubernetes.io/name``.
_LABEL_KEY: Final = (
    r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_VALUE: Final = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_SELECTOR_TERM_RE: Final = re.compile(
    rf"\s*(!\s*{_LABEL_KEY}|{_LABEL_KEY}(\s*(==|=|!=)\s*({_VALUE})?"
    rf"|\s+(in|notin)\s*\(\s*({_VALUE})?(\s*,\s*({_VALUE})?)*\s*\))?)\s*"
)


def _namespace_names(namespaces: tuple[str, ...]) -> tuple[str, ...]:
    for index, namespace in enumerate(namespaces):
        if not _NAMESPACE_RE.fullmatch(namespace):
            raise invalid(f"must be a namespace name (RFC 1123 label), got {namespace!r}", index)
    return tuple(dict.fromkeys(namespaces))


def _some_namespace(namespaces: tuple[str, ...]) -> tuple[str, ...]:
    if not namespaces:
        raise invalid("must list at least one namespace")
    return namespaces


NamespaceList = Annotated[StrList, AfterValidator(_namespace_names)]
"""Namespace names (RFC 1123 labels), each once."""
Namespaces = Annotated[
    NamespaceList, AfterValidator(_some_namespace), Field(json_schema_extra={"minItems": 1})
]


def _split_selector(selector: str) -> list[str]:
    """Split on the commas outside ``in (...)`` lists."""
    terms, depth, start = [], 0, 0
    for index, char in enumerate(selector):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            terms.append(selector[start:index])
            start = index + 1
    terms.append(selector[start:])
    return terms


def _selector(selector: str) -> str:
    """Refuse what the API server would refuse, so a typo fails at start, not at 3 a.m."""
    selector = selector.strip()
    if not selector:
        raise invalid("must not be empty (it would select every Deployment)")
    for term in _split_selector(selector):
        if not _SELECTOR_TERM_RE.fullmatch(term):
            raise invalid(f"is not a label selector: cannot read {term.strip()!r}")
    return selector


Ratio = Annotated[float, Number(gt=0, lt=1, message="must be a number above 0 and below 1")]


class BudgetDefaults(ConfigModel):
    """What every budget takes unless it says otherwise (any budget key but ``limit``)."""

    currency: str | None = None
    """The currency of ``limit`` (default: the file's ``currency.code``)."""
    namespaces: Namespaces | None = None
    """Where the domain's Deployments are scaled."""
    selector: Annotated[str, AfterValidator(_selector)] | None = None
    """A label selector for the domain's Deployments (default ``domain=<domain>``)."""
    scale_factor: Ratio | None = None
    """Replicas are scaled to max(min_replicas, floor(original x scale_factor)); 0.7."""
    min_replicas: Annotated[int, Integer(ge=0, message="must be 0 or more")] | None = None
    warn_ratio: Ratio | None = None
    """The share of the limit that raises a P2 alert; 0.8."""
    restore_ratio: (
        Annotated[float, Number(gt=0, le=1, message="must be a number above 0 and at most 1")]
        | None
    ) = None
    """Below this share of the limit the replicas are given back; 0.9."""
    max_unpriced_share: (
        Annotated[float, Number(ge=0, le=1, message="must be a number from 0 to 1")] | None
    ) = None
    """Above this share of unpriced spans the guard warns that the spend reads low; 0.2."""
    cooldown: Duration | None = None
    """Least time between two scale-downs of a domain; 30m."""
    dry_run: bool | None = None
    """Alert, but change no Deployment."""


class BudgetSettings(BudgetDefaults):
    """One domain's rolling 24 h budget."""

    limit: Annotated[float, Number(gt=0, message="must be above 0")]
    """The most the domain may spend in 24 h, in its currency."""


class WebhookSettings(ConfigModel):
    """Where alerts are POSTed."""

    url: HttpUrl
    format: Annotated[str, Choice(WEBHOOK_FORMATS)] = "json"
    routing_key: str = ""
    """PagerDuty's integration key (format pagerduty)."""
    routing_key_env: str | None = None
    """The environment variable that holds it instead."""
    timeout: Duration = default("5s")
    retries: Annotated[int, Integer(ge=0, le=10)] = 3
    backoff: Duration = default("500ms")
    """urllib3's backoff factor: sleeps of backoff, 2 x backoff, 4 x backoff, ..."""

    @model_validator(mode="after")
    def _one_routing_key(self) -> WebhookSettings:
        if self.routing_key_env is not None and self.routing_key:
            raise invalid("give routing_key or routing_key_env, not both", "routing_key_env")
        if self.format == "pagerduty" and not self.routing_key and self.routing_key_env is None:
            raise invalid(
                "is required for format pagerduty (or routing_key_env naming a variable)",
                "routing_key",
            )
        return self


class AlertsSettings(ConfigModel):
    webhooks: Annotated[tuple[WebhookSettings, ...], list_of("a list")] = ()


def _domains(budgets: dict[str, BudgetSettings]) -> dict[str, BudgetSettings]:
    if not budgets:
        raise invalid("must name at least one domain")
    for domain in budgets:
        if not domain.strip():
            raise invalid("the domain name must not be empty", domain)
    return budgets


class BudgetsFileSettings(ConfigModel):
    """The budgets file of ``spancost guard``."""

    budgets: Annotated[
        dict[str, BudgetSettings],
        AfterValidator(_domains),
        Field(json_schema_extra={"minProperties": 1}),
    ]
    """Domain (as the totals store names it) -> its budget."""
    defaults: BudgetDefaults = default({})
    currency: CurrencySettings = default({})
    exclude_environments: StrList | None = None
    """Environments whose spend never counts (default: the usual non-production names)."""
    managed_namespaces: NamespaceList = ()
    """Where to find what a removed budget held."""
    alerts: AlertsSettings = default({})
    dry_run: bool = False

    @model_validator(mode="after")
    def _budgets_resolve(self) -> BudgetsFileSettings:
        rates = self.currency.rates
        for domain, budget in self.budgets.items():
            where = ("budgets", domain)
            at: tuple[str, ...]
            if budget.currency is not None:
                currency, at = budget.currency, (*where, "currency")
            elif self.defaults.currency is not None:
                currency, at = self.defaults.currency, ("defaults", "currency")
            else:
                currency, at = self.currency.currency, (*where, "currency")
            code = currency.strip().upper()
            if code != USD and code not in rates:
                raise invalid(f"no exchange rate for {code!r}; add currency.rates.{code}", *at)
            if budget.namespaces is None and self.defaults.namespaces is None:
                raise invalid("is required (the namespaces to act in)", *where, "namespaces")
            selector = budget.selector or self.defaults.selector
            if selector is None and not LABEL_VALUE_RE.fullmatch(domain):
                raise invalid(
                    f"is required: the domain {domain!r} is not a valid label value, so the "
                    "default selector domain=<domain> cannot be used",
                    *where,
                    "selector",
                )
        return self
