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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

from spancost.config import MISSING, ConfigSection, describe_type, join_index, parse_duration
from spancost.errors import ConfigError
from spancost.pricing.rules import Matcher
from spancost.totals.aggregate import SpanContribution, ns_from_duration, ns_from_utc

__all__ = [
    "CONFIG_KEYS",
    "CONTESTED",
    "DEFAULT_MAX_CLOCK_SKEW",
    "DEFAULT_ORPHAN_GRACE",
    "DEFAULT_TRANSACTION_ATTRIBUTE",
    "UNATTRIBUTED",
    "TotalsConfig",
    "TraceState",
    "TransactionRule",
    "domain_name",
    "owner_domain",
    "parse_config",
    "resolve_transaction",
    "trace_domain",
    "transaction_name",
]

DEFAULT_TRANSACTION_ATTRIBUTE: Final = "business.transaction"
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
"""The keys `parse_config` reads (a sink adds its own with ``extra_keys``)."""

MATCH_SERVICE: Final = "service.name"
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

    transaction_attribute: str = DEFAULT_TRANSACTION_ATTRIBUTE
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


def parse_config(config: object, *, extra_keys: Iterable[str] = ()) -> TotalsConfig:
    """Validate a totals configuration (a mapping or a `ConfigSection`).

    Raises `ConfigError` naming the exact key, e.g.
    ``config.transaction.rules[0].match.service.name: must be a string or a list
    of strings, got integer``. `extra_keys` are other keys the caller reads
    from the same section (a sink's database settings).
    """
    section = config if isinstance(config, ConfigSection) else ConfigSection(config)
    section.allow_only(*CONFIG_KEYS, *extra_keys)
    transaction = section.get_section("transaction", {})
    transaction.allow_only("attribute", "rules")
    domains = section.get_section("domains", {})
    domains.allow_only("by_transaction", "by_service", "owner")
    owner_attribute, by_owner = _owner(domains)
    return TotalsConfig(
        transaction_attribute=_name(transaction, "attribute", DEFAULT_TRANSACTION_ATTRIBUTE),
        rules=_rules(transaction),
        domains_by_transaction=_name_map(domains, "by_transaction"),
        domains_by_service=_name_map(domains, "by_service"),
        max_clock_skew=_duration(section, "max_clock_skew", DEFAULT_MAX_CLOCK_SKEW),
        orphan_grace=_duration(section, "orphan_grace", DEFAULT_ORPHAN_GRACE),
        unattributed_name=_name(section, "unattributed_name", UNATTRIBUTED),
        owner_attribute=owner_attribute,
        domains_by_owner=by_owner,
    )


def _owner(domains: ConfigSection) -> tuple[str | None, dict[str, str]]:
    if "owner" not in domains:
        return None, {}
    owner = domains.get_section("owner")
    owner.allow_only("attribute", "domains")
    attribute = _name(owner, "attribute")
    return attribute, _name_map(owner, "domains")


def _name(section: ConfigSection, key: str, default: Any = MISSING) -> str:
    value = section.get_str(key, default)
    if not value.strip():
        raise ConfigError(section.key(key), "must not be empty")
    return value


def _name_map(section: ConfigSection, key: str) -> dict[str, str]:
    mapping = section.get_section(key, {})
    result: dict[str, str] = {}
    for name, _value in mapping.items():
        if not name.strip():
            raise ConfigError(mapping.key(name), "name must not be empty")
        result[name] = _name(mapping, name)
    return result


def _duration(section: ConfigSection, key: str, default: timedelta) -> timedelta:
    if key not in section:
        return default
    return timedelta(seconds=parse_duration(section.get_raw(key), section.key(key)))


def _rules(transaction: ConfigSection) -> tuple[TransactionRule, ...]:
    raw = transaction.get_raw("rules", [])
    path = transaction.key("rules")
    if not isinstance(raw, list | tuple):
        raise ConfigError(path, f"must be a list, got {describe_type(raw)}")
    rules: list[TransactionRule] = []
    for index, item in enumerate(raw):
        rule = ConfigSection(item, join_index(path, index))
        rule.allow_only("match", "transaction")
        match = rule.get_section("match")
        match.allow_only(MATCH_SERVICE, MATCH_NAME)
        if not len(match):
            raise ConfigError(match.path, f"must match {MATCH_SERVICE}, {MATCH_NAME} or both")
        rules.append(
            TransactionRule(
                transaction=_name(rule, "transaction"),
                service=_matcher(match, MATCH_SERVICE),
                name=_matcher(match, MATCH_NAME),
            )
        )
    return tuple(rules)


def _matcher(match: ConfigSection, key: str) -> Matcher | None:
    """A string (exact, or an fnmatch glob if it has ``*``, ``?`` or ``[``) or a list of them."""
    if key not in match:
        return None
    value: Any = match.get_raw(key)
    path = match.key(key)
    items = value if isinstance(value, list | tuple) else [value]
    if not isinstance(value, str | list | tuple):
        raise ConfigError(
            path, f"must be a string or a list of strings, got {describe_type(value)}"
        )
    if not items:
        raise ConfigError(path, "must list at least one value")
    strings: set[str] = set()
    globs: list[str] = []
    for index, item in enumerate(items):
        item_path = path if isinstance(value, str) else join_index(path, index)
        if not isinstance(item, str):
            raise ConfigError(item_path, f"must be a string, got {describe_type(item)}")
        if not item:
            raise ConfigError(item_path, "must not be empty")
        if any(char in item for char in "*?["):
            globs.append(item)
        else:
            strings.add(item)
    return Matcher(key, strings=frozenset(strings), globs=tuple(globs))
