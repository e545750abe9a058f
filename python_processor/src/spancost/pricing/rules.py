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

Pure: parsing (`parse_rules`, which raises `ConfigError` naming the exact key,
e.g. ``rules[2].match.service.name``) and matching over plain values.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

from spancost.config import MISSING, ConfigSection, describe_type, join_index, join_key
from spancost.errors import ConfigError
from spancost.pricing.compute import SegmentPricing
from spancost.pricing.facts import Value

__all__ = [
    "APPLIES_TO",
    "Matcher",
    "Rule",
    "first_match",
    "parse_rules",
    "read_number",
    "span_triggers",
]

APPLIES_TO: Final = ("local_roots", "all")
_NAME: Final = re.compile(r"^[A-Za-z0-9_.-]+$")
_GLOB_CHARS: Final = frozenset("*?[")
_RULE_KEYS: Final = (
    "name",
    "match",
    "per_hour_usd",
    "per_unit_usd",
    "unit_attribute",
    "applies_to",
    "as_of",
)
RULE_AS_OF: Final = "config"


def read_number(
    section: ConfigSection,
    name: str,
    default: Any = MISSING,
    *,
    minimum: float = 0.0,
    maximum: float = math.inf,
    exclusive_maximum: bool = False,
) -> float:
    """A finite number (integer or float, not boolean) in range; `ConfigError` names the key."""
    value = section.get_raw(name, default)
    if name not in section:
        return float(value)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(section.key(name), f"must be a number, got {describe_type(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise ConfigError(section.key(name), f"must be a finite number, got {value!r}")
    if number < minimum:
        raise ConfigError(section.key(name), f"must be >= {minimum:g}, got {value!r}")
    if number > maximum or (exclusive_maximum and number == maximum):
        bound = "<" if exclusive_maximum else "<="
        raise ConfigError(section.key(name), f"must be {bound} {maximum:g}, got {value!r}")
    return number


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


def parse_rules(section: ConfigSection, name: str = "rules") -> tuple[Rule, ...]:
    """The ``rules`` list of the plugin's configuration, validated."""
    raw = section.get_raw(name, default=[])
    path = section.key(name)
    if not isinstance(raw, list | tuple):
        raise ConfigError(path, f"must be a list of rules, got {describe_type(raw)}")
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for index, item in enumerate(raw):
        rule = _parse_rule(ConfigSection(item, join_index(path, index)))
        if rule.name in seen:
            raise ConfigError(
                join_key(join_index(path, index), "name"),
                f"duplicate rule name {rule.name!r} (also {join_index(path, seen[rule.name])})",
            )
        seen[rule.name] = index
        rules.append(rule)
    return tuple(rules)


def _parse_rule(rule: ConfigSection) -> Rule:
    rule.allow_only(*_RULE_KEYS)
    name = rule.get_str("name").strip()
    if not _NAME.match(name):
        raise ConfigError(
            rule.key("name"), "must be a non-empty name of letters, digits, '_', '.' or '-'"
        )
    matchers = _parse_match(rule.get_section("match"))
    per_hour = read_number(rule, "per_hour_usd", None) if "per_hour_usd" in rule else None
    per_unit = read_number(rule, "per_unit_usd", None) if "per_unit_usd" in rule else None
    if per_hour is not None and per_unit is not None:
        raise ConfigError(rule.key("per_unit_usd"), "cannot be combined with per_hour_usd")
    if per_hour is None and per_unit is None:
        raise ConfigError(rule.key("per_hour_usd"), "is required (or per_unit_usd)")
    unit_attribute: str | None = None
    if "unit_attribute" in rule:
        if per_unit is None:
            raise ConfigError(rule.key("unit_attribute"), "is only allowed with per_unit_usd")
        unit_attribute = rule.get_str("unit_attribute").strip()
        if not unit_attribute:
            raise ConfigError(rule.key("unit_attribute"), "must not be empty")
    applies_to = rule.get_str("applies_to", default="local_roots" if per_hour else "all")
    if applies_to not in APPLIES_TO:
        raise ConfigError(
            rule.key("applies_to"), f"must be one of {', '.join(APPLIES_TO)}, got {applies_to!r}"
        )
    if per_unit is not None and applies_to != "all":
        raise ConfigError(rule.key("applies_to"), "must be 'all' for a per_unit_usd rule")
    as_of = rule.get_str("as_of", default=RULE_AS_OF).strip()
    if not as_of:
        raise ConfigError(rule.key("as_of"), "must not be empty")
    return Rule(
        name=name,
        matchers=matchers,
        per_hour_usd=per_hour,
        per_unit_usd=per_unit,
        unit_attribute=unit_attribute,
        local_roots_only=applies_to == "local_roots",
        as_of=as_of,
    )


def _parse_match(match: ConfigSection) -> tuple[Matcher, ...]:
    if not len(match):
        raise ConfigError(match.path, "must match at least one attribute")
    matchers: list[Matcher] = []
    for key, value in match.items():
        path = match.key(key)
        if not key.strip():
            raise ConfigError(path, "attribute name must not be empty")
        matchers.append(_parse_matcher(key, value, path))
    return tuple(matchers)


def _parse_matcher(key: str, value: object, path: str) -> Matcher:
    if isinstance(value, bool | int) and not isinstance(value, float):
        return Matcher(key, typed=(value,))
    if isinstance(value, str):
        items: list[object] = [value]
    elif isinstance(value, list | tuple):
        if not value:
            raise ConfigError(path, "must list at least one value")
        items = list(value)
    else:
        raise ConfigError(
            path,
            f"must be a string, a list of strings, an integer or a boolean, "
            f"got {describe_type(value)}",
        )
    strings: set[str] = set()
    globs: list[str] = []
    for index, item in enumerate(items):
        item_path = join_index(path, index) if isinstance(value, list | tuple) else path
        if not isinstance(item, str):
            raise ConfigError(item_path, f"must be a string, got {describe_type(item)}")
        if _GLOB_CHARS.intersection(item):
            globs.append(item)
        else:
            strings.add(item)
    return Matcher(key, strings=frozenset(strings), globs=tuple(globs))
