"""User price rules: attribute matches → an hourly rate or a unit price.

For what no built-in source prices (on-premises machines, RDS, SaaS calls)::

    rules:
      - name: onprem
        match: {host.name: "rack*-node-*"}           # glob (fnmatch), case-sensitive
        per_hour_usd: 0.35                           # duration model, charged on local roots
      - name: rds-orders
        match: {db.system.name: postgresql, server.address: orders.*.rds.amazonaws.com}
        per_hour_usd: 0.272
        applies_to: all                              # every matching span, by its own duration
      - name: s3-egress
        match: {rpc.service: S3, rpc.method: GetObject}
        per_unit_usd: 0.00000000009                  # usage model: * the attribute below
        unit_attribute: http.response.body.size

A rule matches a span when every ``match`` entry matches; a key is looked up on
the span's attributes first, then on its resource's. A string is an exact value,
or a glob if it contains ``*``, ``?`` or ``[``; a list of strings matches any
of them; an integer or a boolean matches that exact typed value. The first
rule that matches decides (see `first_match`).

Pure: the validated settings (`spancost.settings.rules`; `parse_rules` raises
`ConfigError` naming the exact key, e.g. ``rules[2].match.service.name``) turned into
matchers (`rules_of`), and matching over plain values.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from spancost.pricing.compute import SegmentPricing
from spancost.vocabulary.otlp import Value

if TYPE_CHECKING:
    from spancost.settings.rules import MatchValue, RuleSettings

__all__ = [
    "APPLIES_TO",
    "Matcher",
    "Rule",
    "first_match",
    "parse_rules",
    "rules_of",
    "span_triggers",
]

APPLIES_TO: Final = ("local_roots", "all")
RULE_AS_OF: Final = "config"
_GLOB_CHARS: Final = frozenset("*?[")


@dataclass(frozen=True, slots=True)
class Matcher:
    """One ``match`` entry: attribute `key` against exact values and globs."""

    key: str
    strings: frozenset[str] = frozenset()
    globs: tuple[str, ...] = ()
    typed: tuple[int | bool, ...] = ()

    def matches(self, value: Value | None) -> bool:
        if value is None:
            return False
        if isinstance(value, str):
            return value in self.strings or any(
                fnmatch.fnmatchcase(value, glob) for glob in self.globs
            )
        if isinstance(value, bool | int):
            # bool is an int subclass: True must not match 1, nor 1 match True.
            return any(type(t) is type(value) and t == value for t in self.typed)
        return False


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated price rule."""

    name: str
    matchers: tuple[Matcher, ...]
    per_hour_usd: float | None = None
    per_unit_usd: float | None = None
    unit_attribute: str | None = None
    local_roots_only: bool = True
    as_of: str = RULE_AS_OF

    @property
    def source(self) -> str:
        """``cost.source`` of spans it prices."""
        return f"rule:{self.name}"

    @property
    def is_segment_rule(self) -> bool:
        """An hourly rate charged once per service segment (like EC2 compute)."""
        return self.per_hour_usd is not None and self.local_roots_only

    @property
    def keys(self) -> frozenset[str]:
        """Every attribute the rule reads."""
        keys = {m.key for m in self.matchers}
        if self.unit_attribute:
            keys.add(self.unit_attribute)
        return frozenset(keys)

    @property
    def literals(self) -> frozenset[str] | None:
        """Every exact string it matches, or None if it also matches globs or typed values."""
        if any(m.globs or m.typed for m in self.matchers):
            return None
        return frozenset(s for m in self.matchers for s in m.strings)

    def matches(self, lookup: Callable[[str], Value | None]) -> bool:
        return all(m.matches(lookup(m.key)) for m in self.matchers)

    def segment_pricing(self) -> SegmentPricing:
        """The duration model of a ``per_hour_usd`` rule."""
        assert self.per_hour_usd is not None  # callers check
        return SegmentPricing(
            source=self.source,
            model="rule.duration",
            included_model="rule.included_in_segment",
            as_of=self.as_of,
            instance_type="",
            usd_per_second=self.per_hour_usd / 3600.0,
        )


def span_triggers(rules: Sequence[Rule], resource_rule: Rule | None) -> frozenset[str]:
    """Strings without which a span's own attributes cannot change its rule.

    `resource_rule` is the rule the resource's attributes alone match. A span
    can only fall out of it by carrying one of its keys (or needs its unit
    attribute), and can only newly match an earlier rule by carrying one of
    that rule's values: its literal strings when it has only those, else its
    keys. A span whose attributes contain none of these strings is priced as
    its resource says, so it need not be read attribute by attribute.
    """
    triggers: set[str] = set()
    for rule in rules:
        if rule is resource_rule:
            triggers |= rule.keys
            break
        literals = rule.literals
        triggers |= literals if literals is not None else {m.key for m in rule.matchers}
    return frozenset(triggers)


def first_match(rules: Sequence[Rule], lookup: Callable[[str], Value | None]) -> Rule | None:
    """The first rule all of whose entries match, or None."""
    for rule in rules:
        if rule.matches(lookup):
            return rule
    return None


def parse_rules(config: object) -> tuple[Rule, ...]:
    """The ``rules`` of a section (a mapping with only that key), validated."""
    from spancost.config import parse  # noqa: PLC0415 - validation, only when asked
    from spancost.settings.rules import RulesSettings  # noqa: PLC0415

    return rules_of(parse(RulesSettings, config).rules)


def rules_of(settings: Sequence[RuleSettings]) -> tuple[Rule, ...]:
    """The validated ``rules`` as matchers."""
    return tuple(
        Rule(
            name=rule.name,
            matchers=tuple(_matcher(key, value) for key, value in rule.match.items()),
            per_hour_usd=rule.per_hour_usd,
            per_unit_usd=rule.per_unit_usd,
            unit_attribute=None if rule.unit_attribute is None else rule.unit_attribute.strip(),
            local_roots_only=rule.local_roots_only,
            as_of=rule.as_of.strip(),
        )
        for rule in settings
    )


def _matcher(key: str, value: MatchValue) -> Matcher:
    if isinstance(value, bool | int):
        return Matcher(key, typed=(value,))
    items = (value,) if isinstance(value, str) else value
    globs = tuple(item for item in items if _GLOB_CHARS.intersection(item))
    return Matcher(key, strings=frozenset(items).difference(globs), globs=globs)
