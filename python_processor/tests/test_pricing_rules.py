"""User price rules: validation with exact keys, matching, first match wins, triggers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from spancost.errors import ConfigError
from spancost.pricing.rules import Rule, first_match, parse_rules, span_triggers
from spancost.vocabulary.otlp import Unusable, Value


def rules(*items: Any) -> tuple[Rule, ...]:
    return parse_rules({"rules": list(items)})


def lookup(values: dict[str, Value]) -> Any:
    return values.get


def test_exact_glob_list_and_typed_matches() -> None:
    (rule,) = rules(
        {
            "name": "r",
            "match": {
                "service.name": "checkout",
                "host.name": "rack?-node-*",
                "db.system.name": ["postgresql", "mysql"],
                "http.response.status_code": 503,
                "feature.flag": True,
            },
            "per_hour_usd": 1,
        }
    )
    good: dict[str, Value] = {
        "service.name": "checkout",
        "host.name": "rack7-node-12",
        "db.system.name": "mysql",
        "http.response.status_code": 503,
        "feature.flag": True,
    }
    assert rule.matches(lookup(good))
    others: list[tuple[str, Value]] = [
        ("service.name", "Checkout"),  # case-sensitive
        ("service.name", "checkout-v2"),  # exact, not a prefix
        ("host.name", "rack12-node-1"),
        ("db.system.name", "sqlite"),
        ("http.response.status_code", "503"),  # a string is not the integer
        ("http.response.status_code", 503.0),
        ("feature.flag", 1),  # an integer is not a boolean
        ("feature.flag", Unusable("array")),
    ]
    for key, other in others:
        assert not rule.matches(lookup({**good, key: other})), (key, other)
    missing = {k: v for k, v in good.items() if k != "host.name"}
    assert not rule.matches(lookup(missing))
    (one,) = rules({"name": "one", "match": {"x": 1}, "per_hour_usd": 1})
    assert not one.matches(lookup({"x": True}))


def test_first_match_wins_and_kinds() -> None:
    parsed = rules(
        {"name": "specific", "match": {"service.name": "db-primary"}, "per_hour_usd": 2.5},
        {"name": "db", "match": {"service.name": "db-*"}, "per_hour_usd": 1.0},
        {
            "name": "egress",
            "match": {"rpc.service": "S3"},
            "per_unit_usd": 9e-11,
            "unit_attribute": "http.response.body.size",
        },
        {
            "name": "rds",
            "match": {"db.system.name": "postgresql"},
            "per_hour_usd": 0.3,
            "applies_to": "all",
        },
    )
    assert first_match(parsed, lookup({"service.name": "db-primary"})) is parsed[0]
    assert first_match(parsed, lookup({"service.name": "db-replica"})) is parsed[1]
    assert first_match(parsed, lookup({"rpc.service": "S3"})) is parsed[2]
    assert first_match(parsed, lookup({"service.name": "web"})) is None
    specific, db, egress, rds = parsed
    assert specific.is_segment_rule and specific.source == "rule:specific"
    assert specific.local_roots_only
    assert not egress.is_segment_rule and egress.unit_attribute == "http.response.body.size"
    assert not rds.is_segment_rule and not rds.local_roots_only
    pricing = db.segment_pricing()
    assert (pricing.model, pricing.included_model) == ("rule.duration", "rule.included_in_segment")
    assert pricing.usd_per_second * 3600 == pytest.approx(1.0)
    assert pricing.as_of == "config"


def test_span_triggers() -> None:
    parsed = rules(
        {
            "name": "a",
            "match": {"server.address": ["api.stripe.com", "api.twilio.com"]},
            "per_unit_usd": 0.01,
        },
        {"name": "b", "match": {"host.name": "rack-*"}, "per_hour_usd": 0.2},
        {
            "name": "c",
            "match": {"service.name": "x"},
            "per_unit_usd": 1e-9,
            "unit_attribute": "messaging.message.body.size",
        },
    )
    a, _, c = parsed
    # The resource matches none: a span needs a literal of a, a key of b (a glob), or c's value.
    assert span_triggers(parsed, None) == {"api.stripe.com", "api.twilio.com", "host.name", "x"}
    # The resource matches c: spans may override its key, and its unit is read per span.
    assert span_triggers(parsed, c) == {
        "api.stripe.com",
        "api.twilio.com",
        "host.name",
        "service.name",
        "messaging.message.body.size",
    }
    assert span_triggers(parsed, a) == {"server.address"}


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"rules": "x"}, "rules", "must be a list of rules"),
        ({"rules": ["x"]}, "rules[0]", "must be a mapping"),
        (
            {"rules": [{"name": "a", "match": {"k": "v"}, "per_hour_usd": 1, "pre_hour": 1}]},
            "rules[0].pre_hour",
            "unknown key",
        ),
        ({"rules": [{"match": {"k": "v"}, "per_hour_usd": 1}]}, "rules[0].name", "is required"),
        (
            {"rules": [{"name": "a b", "match": {"k": "v"}, "per_hour_usd": 1}]},
            "rules[0].name",
            "letters",
        ),
        (
            {"rules": [{"name": "", "match": {"k": "v"}, "per_hour_usd": 1}]},
            "rules[0].name",
            "non-empty",
        ),
        (
            {"rules": [{"name": 3, "match": {"k": "v"}, "per_hour_usd": 1}]},
            "rules[0].name",
            "must be a string",
        ),
        (
            {
                "rules": [
                    {"name": "a", "match": {"k": "v"}, "per_hour_usd": 1},
                    {"name": "a", "match": {"k": "w"}, "per_hour_usd": 1},
                ]
            },
            "rules[1].name",
            "duplicate rule name 'a' (also rules[0])",
        ),
        ({"rules": [{"name": "a", "per_hour_usd": 1}]}, "rules[0].match", "is required"),
        (
            {"rules": [{"name": "a", "match": {}, "per_hour_usd": 1}]},
            "rules[0].match",
            "at least one",
        ),
        (
            {"rules": [{"name": "a", "match": ["k"], "per_hour_usd": 1}]},
            "rules[0].match",
            "must be a mapping",
        ),
        (
            {
                "rules": [
                    {"name": "a", "match": {"k": "v"}, "per_hour_usd": 1},
                    {"name": "b", "match": {"k": "v"}, "per_hour_usd": 1},
                    {"name": "c", "match": {"service.name": {"eq": "x"}}, "per_hour_usd": 1},
                ]
            },
            "rules[2].match.service.name",
            "must be a string, a list of strings, an integer or a boolean, got mapping",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": 1.5}, "per_hour_usd": 1}]},
            "rules[0].match.k",
            "got number",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": None}, "per_hour_usd": 1}]},
            "rules[0].match.k",
            "got null",
        ),
        (
            {"rules": [{"name": "a", "match": {"host.name": ["a", 2]}, "per_hour_usd": 1}]},
            "rules[0].match.host.name[1]",
            "must be a string, got integer",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": []}, "per_hour_usd": 1}]},
            "rules[0].match.k",
            "at least one value",
        ),
        (
            {"rules": [{"name": "a", "match": {" ": "v"}, "per_hour_usd": 1}]},
            "rules[0].match. ",
            "must not be empty",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": "v"}}]},
            "rules[0].per_hour_usd",
            "is required (or per_unit_usd)",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": "v"}, "per_hour_usd": 1, "per_unit_usd": 1}]},
            "rules[0].per_unit_usd",
            "cannot be combined",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": "v"}, "per_hour_usd": -1}]},
            "rules[0].per_hour_usd",
            "must be >= 0",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": "v"}, "per_hour_usd": "1"}]},
            "rules[0].per_hour_usd",
            "must be a number, got string",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": "v"}, "per_hour_usd": True}]},
            "rules[0].per_hour_usd",
            "must be a number, got boolean",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": "v"}, "per_unit_usd": math.inf}]},
            "rules[0].per_unit_usd",
            "finite",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": "v"}, "per_unit_usd": math.nan}]},
            "rules[0].per_unit_usd",
            "finite",
        ),
        (
            {
                "rules": [
                    {"name": "a", "match": {"k": "v"}, "per_hour_usd": 1, "unit_attribute": "b"}
                ]
            },
            "rules[0].unit_attribute",
            "only allowed with per_unit_usd",
        ),
        (
            {
                "rules": [
                    {"name": "a", "match": {"k": "v"}, "per_unit_usd": 1, "unit_attribute": " "}
                ]
            },
            "rules[0].unit_attribute",
            "must not be empty",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": "v"}, "per_unit_usd": 1, "unit_attribute": 3}]},
            "rules[0].unit_attribute",
            "must be a string",
        ),
        (
            {
                "rules": [
                    {"name": "a", "match": {"k": "v"}, "per_hour_usd": 1, "applies_to": "roots"}
                ]
            },
            "rules[0].applies_to",
            "must be one of local_roots, all",
        ),
        (
            {
                "rules": [
                    {
                        "name": "a",
                        "match": {"k": "v"},
                        "per_unit_usd": 1,
                        "applies_to": "local_roots",
                    }
                ]
            },
            "rules[0].applies_to",
            "must be 'all'",
        ),
        (
            {"rules": [{"name": "a", "match": {"k": "v"}, "per_hour_usd": 1, "as_of": " "}]},
            "rules[0].as_of",
            "must not be empty",
        ),
    ],
)
def test_every_bad_rule_names_its_key(config: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_rules(config)
    assert caught.value.key == key
    assert message in caught.value.message
