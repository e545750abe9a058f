"""Which business transaction and domain a trace's cost belongs to, and the totals config.

Pure: the root span's facts (a `SpanContribution`) and the configuration in,
names out. The transaction of a trace is, first that applies:

1. the configured attribute (``business.transaction``) on the root span, else on
   its resource (read by the OTLP adapter into ``transaction_attribute``);
2. the first rule whose ``match`` matches the root's ``service.name`` and span ``name``;
3. the root span's name (the unattributed name if it is blank).

A trace whose root has not arrived has no transaction yet; after ``orphan_grace``
(counted from when the trace was first seen) `resolve_transaction` gives it the
unattributed name. A root that arrives later still names it.

The domain (whose budget pays) is ``domains.by_transaction[transaction]``, else
``domains.by_service[service]`` (the root's service; for an orphan, its earliest
span's), else the transaction itself: the whole trace is charged to it. Those are
names a sender chooses, and any span a sender adds to a trace (a child of any span
whose id it learned from a ``traceparent``) adds to that trace's cost: anyone who
can send spans can charge any domain. With ``domains.owner`` configured, who pays
comes from what a sender cannot forge in a cluster instead: every span is charged
to its **owner**, the resource attribute ``owner.attribute`` (``k8s.namespace.name``,
which the agent's ``k8s_attributes`` derives from the connection after removing the
sender's own), mapped by ``owner.domains`` (an owner not listed is its own domain;
a span without an owner is unattributed) (`owner_domain`). So a workload pays for
the spans it sends, wherever they sit in a trace, and no one else's:

- a root's ``business.transaction`` or service names the trace's transaction, never
  whose budget pays;
- a span that claims to be the root of a trace another workload started, or one
  added to someone else's trace, is charged to the sender's own domain;
- the trace as a whole (the transaction view: `transaction_name`, its cost) keeps
  every span, and is labelled with its root's owner's domain (`trace_domain`); a
  trace whose root spans came from two owners is *contested* (named ``(contested)``,
  labelled unattributed), so a forged root cannot rename another team's trace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Final

from spancost.pricing.rules import Matcher
from spancost.totals.aggregate import SpanContribution, ns_from_duration, ns_from_utc
from spancost.vocabulary.keys import BUSINESS_TRANSACTION, SERVICE_NAME

if TYPE_CHECKING:
    from spancost.settings.totals import NamingSettings

__all__ = [
    "CONFIG_KEYS",
    "CONTESTED",
    "DEFAULT_MAX_CLOCK_SKEW",
    "DEFAULT_ORPHAN_GRACE",
    "UNATTRIBUTED",
    "TotalsConfig",
    "TraceState",
    "TransactionRule",
    "domain_name",
    "owner_domain",
    "parse_config",
    "resolve_transaction",
    "totals_config",
    "trace_domain",
    "transaction_name",
]

DEFAULT_MAX_CLOCK_SKEW: Final = timedelta(hours=2)
DEFAULT_ORPHAN_GRACE: Final = timedelta(minutes=10)
UNATTRIBUTED: Final = "(unattributed)"
CONTESTED: Final = "(contested)"
"""The transaction of a trace whose roots came from more than one owner."""

CONFIG_KEYS: Final = (
    "transaction",
    "domains",
    "max_clock_skew",
    "orphan_grace",
    "unattributed_name",
)
"""The keys of `NamingSettings`, which `parse_config` reads (the sink's settings hold them
and its own); spelled out so that the totals core imports no validation library."""

MATCH_SERVICE: Final = SERVICE_NAME  # a rule matches the root's service.name
MATCH_NAME: Final = "name"


@dataclass(frozen=True, slots=True)
class TransactionRule:
    """Root spans whose service and name match are transaction `transaction`."""

    transaction: str
    service: Matcher | None = None
    name: Matcher | None = None

    def matches(self, root: SpanContribution) -> bool:
        # An absent service.name never matches a service pattern, not even "*".
        return (self.service is None or self.service.matches(root.service)) and (
            self.name is None or self.name.matches(root.name)
        )


@dataclass(frozen=True, slots=True)
class TotalsConfig:
    """The validated totals configuration (defaults as documented in the README)."""

    transaction_attribute: str = BUSINESS_TRANSACTION
    rules: tuple[TransactionRule, ...] = ()
    domains_by_transaction: Mapping[str, str] = field(default_factory=dict)
    domains_by_service: Mapping[str, str] = field(default_factory=dict)
    max_clock_skew: timedelta = DEFAULT_MAX_CLOCK_SKEW
    orphan_grace: timedelta = DEFAULT_ORPHAN_GRACE
    unattributed_name: str = UNATTRIBUTED
    owner_attribute: str | None = None
    """``domains.owner.attribute``: the resource attribute that says who sent a span;
    None: domains come from the names senders choose."""
    domains_by_owner: Mapping[str, str] = field(default_factory=dict)
    """``domains.owner.domains``: owner -> its domain; an owner not listed is its own."""


def transaction_name(root: SpanContribution, config: TotalsConfig) -> str:
    """The transaction a trace with this root belongs to (see the module docstring)."""
    if root.transaction_attribute:
        return root.transaction_attribute
    for rule in config.rules:
        if rule.matches(root):
            return rule.transaction
    return root.name.strip() or config.unattributed_name


def domain_name(transaction: str, service: str | None, config: TotalsConfig) -> str:
    """The domain of `transaction`: by transaction, else by the root's `service`, else itself."""
    domain = config.domains_by_transaction.get(transaction)
    if domain is None and service is not None:
        domain = config.domains_by_service.get(service)
    return transaction if domain is None else domain


def owner_domain(config: TotalsConfig, owner: str | None) -> str:
    """The domain that pays for a span sent by `owner` (with ``domains.owner``): its
    mapped domain, else its own name; no owner: the unattributed domain."""
    if owner is None:
        return config.unattributed_name
    return config.domains_by_owner.get(owner, owner)


def trace_domain(
    config: TotalsConfig,
    *,
    transaction: str,
    service: str | None,
    has_root: bool,
    owner: str | None,
    contested: bool,
) -> str:
    """The domain a trace is labelled with (see the module docstring): `domain_name`
    from the sender's names, unless ``domains.owner`` is configured, when it is the
    root's `owner`'s (`owner_domain`), and unattributed for a `contested` trace or one
    without a root. (With an owner, money is charged span by span, not by this label.)"""
    if config.owner_attribute is None:
        return domain_name(transaction, service, config)
    if contested or not has_root:
        return config.unattributed_name
    return owner_domain(config, owner)


@dataclass(frozen=True, slots=True)
class TraceState:
    """What a store knows about a trace when it decides its transaction."""

    first_seen: datetime
    """When the store first received a span of the trace (ingest time, aware UTC)."""
    root_transaction: str | None = None
    """`transaction_name` of the root span, once the root has arrived."""


def resolve_transaction(
    state: TraceState,
    now: datetime,
    grace: timedelta,
    unattributed_name: str = UNATTRIBUTED,
) -> str | None:
    """The trace's transaction: its root's, else `unattributed_name` once `grace` has
    passed since it was first seen (exactly `grace` counts as passed), else None (wait)."""
    if state.root_transaction is not None:
        return state.root_transaction
    elapsed_ns = ns_from_utc(now) - ns_from_utc(state.first_seen)  # refuses naive datetimes
    if elapsed_ns >= ns_from_duration(grace):
        return unattributed_name
    return None


def parse_config(config: object) -> TotalsConfig:
    """Validate a totals naming configuration (the `CONFIG_KEYS` of the sink's).

    Raises `ConfigError` naming the exact key, e.g.
    ``config.transaction.rules[0].match.service.name: must be a string or a list
    of strings, got integer``.
    """
    from spancost.config import parse  # noqa: PLC0415 - validation, only when asked
    from spancost.settings.totals import NamingSettings  # noqa: PLC0415

    return totals_config(parse(NamingSettings, config))


def totals_config(settings: NamingSettings) -> TotalsConfig:
    """The validated naming settings (or a sink's, which hold them) as a `TotalsConfig`."""
    owner = settings.domains.owner
    return TotalsConfig(
        transaction_attribute=settings.transaction.attribute,
        rules=tuple(
            TransactionRule(
                transaction=rule.transaction,
                service=_matcher(MATCH_SERVICE, rule.match.service_name),
                name=_matcher(MATCH_NAME, rule.match.name),
            )
            for rule in settings.transaction.rules
        ),
        domains_by_transaction=settings.domains.by_transaction,
        domains_by_service=settings.domains.by_service,
        max_clock_skew=timedelta(seconds=settings.max_clock_skew),
        orphan_grace=timedelta(seconds=settings.orphan_grace),
        unattributed_name=settings.unattributed_name,
        owner_attribute=None if owner is None else owner.attribute,
        domains_by_owner={} if owner is None else owner.domains,
    )


def _matcher(key: str, patterns: tuple[str, ...] | None) -> Matcher | None:
    """Exact strings, or fnmatch globs where they have ``*``, ``?`` or ``[``."""
    if patterns is None:
        return None
    globs = tuple(item for item in patterns if any(char in item for char in "*?["))
    return Matcher(key, strings=frozenset(patterns).difference(globs), globs=globs)
