"""Transaction and domain names, orphans, and the totals configuration."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from spancost.config import parse
from spancost.errors import ConfigError
from spancost.settings.totals import TotalsSinkSettings
from spancost.totals import (
    UNATTRIBUTED,
    SpanContribution,
    TotalsConfig,
    TraceState,
    domain_name,
    parse_config,
    resolve_transaction,
    transaction_name,
)
from spancost.totals.naming import CONFIG_KEYS, owner_domain, totals_config, trace_domain

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)

CONFIG = parse_config(
    {
        "transaction": {
            "attribute": "business.transaction",
            "rules": [
                {
                    "match": {"service.name": "checkout*", "name": "POST /cart*"},
                    "transaction": "cart",
                },
                {"match": {"service.name": "checkout*"}, "transaction": "checkout"},
                {"match": {"name": ["GET /health", "GET /ready"]}, "transaction": "probes"},
            ],
        },
        "domains": {
            "by_transaction": {"checkout": "payments", "(unattributed)": "unknown"},
            "by_service": {"checkout-api": "shop", "search": "discovery"},
        },
        "max_clock_skew": "30m",
        "orphan_grace": "15m",
        "unattributed_name": "(unattributed)",
    }
)


def root(
    name: str = "GET /",
    service: str | None = "frontend",
    attribute: str | None = None,
) -> SpanContribution:
    return SpanContribution(
        trace_id="1" * 32,
        span_id="1" * 16,
        start_ns=1,
        end_ns=2,
        is_root=True,
        name=name,
        service=service,
        transaction_attribute=attribute,
    )


# -- transaction names ---------------------------------------------------------------


def test_the_attribute_wins_over_rules_and_the_name() -> None:
    assert transaction_name(root("POST /cart/1", "checkout-api", "buy"), CONFIG) == "buy"


@pytest.mark.parametrize(
    ("name", "service", "expected"),
    [
        ("POST /cart/add", "checkout-api", "cart"),  # the first matching rule
        ("GET /cart", "checkout-api", "checkout"),  # the first rule needs both
        ("POST /cart/add", "frontend", "POST /cart/add"),  # no rule: the root's name
        ("GET /health", "frontend", "probes"),  # a list: any of its values
        ("GET /healthz", "frontend", "GET /healthz"),  # exact, not a prefix
        ("post /cart/add", "checkout-api", "checkout"),  # globs are case-sensitive
        ("GET /", None, "GET /"),  # no service.name never matches a service pattern
        ("   ", "frontend", UNATTRIBUTED),  # a blank root name
    ],
)
def test_rules_then_the_root_name(name: str, service: str | None, expected: str) -> None:
    assert transaction_name(root(name, service), CONFIG) == expected


def test_defaults_name_by_attribute_then_root_name() -> None:
    config = TotalsConfig()
    assert transaction_name(root("GET /"), config) == "GET /"
    assert transaction_name(root("GET /", attribute="checkout"), config) == "checkout"


# -- domains -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("transaction", "service", "expected"),
    [
        ("checkout", "search", "payments"),  # by transaction before by service
        ("cart", "checkout-api", "shop"),  # by service
        ("cart", "frontend", "cart"),  # default: the transaction
        ("cart", None, "cart"),
        (UNATTRIBUTED, "search", "unknown"),
    ],
)
def test_domain_precedence(transaction: str, service: str | None, expected: str) -> None:
    assert domain_name(transaction, service, CONFIG) == expected


# -- orphans -------------------------------------------------------------------------


def test_a_trace_with_its_root_is_named_at_once() -> None:
    state = TraceState(first_seen=NOW, root_transaction="checkout")
    assert resolve_transaction(state, NOW, timedelta(minutes=10)) == "checkout"


def test_an_orphan_waits_for_the_grace_period_then_is_unattributed() -> None:
    state = TraceState(first_seen=NOW)
    grace = timedelta(minutes=10)
    assert resolve_transaction(state, NOW, grace) is None
    assert resolve_transaction(state, NOW + grace - timedelta(microseconds=1), grace) is None
    assert resolve_transaction(state, NOW + grace, grace) == UNATTRIBUTED
    assert resolve_transaction(state, NOW + grace, grace, "orphans") == "orphans"


def test_a_late_root_still_names_the_trace() -> None:
    state = TraceState(first_seen=NOW, root_transaction="checkout")
    assert resolve_transaction(state, NOW + timedelta(days=1), timedelta(minutes=10)) == "checkout"


def test_orphan_resolution_refuses_naive_times() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        resolve_transaction(
            TraceState(first_seen=datetime(2025, 1, 31)),
            NOW,
            timedelta(minutes=10),
        )


# -- configuration -------------------------------------------------------------------


def test_defaults() -> None:
    config = parse_config({})
    assert config == TotalsConfig()
    assert config.transaction_attribute == "business.transaction"
    assert config.max_clock_skew == timedelta(hours=2)
    assert config.orphan_grace == timedelta(minutes=10)
    assert config.unattributed_name == "(unattributed)"
    assert config.rules == ()
    assert dict(config.domains_by_transaction) == {}
    assert dict(config.domains_by_service) == {}


def test_a_full_config() -> None:
    assert CONFIG.max_clock_skew == timedelta(minutes=30)
    assert CONFIG.orphan_grace == timedelta(minutes=15)
    assert [rule.transaction for rule in CONFIG.rules] == ["cart", "checkout", "probes"]
    assert CONFIG.domains_by_service == {"checkout-api": "shop", "search": "discovery"}


def test_durations() -> None:
    for text, expected in [("30s", 30), ("15m", 900), ("2h", 7200), ("1h30m", 5400)]:
        config = parse_config({"max_clock_skew": text, "orphan_grace": text})
        assert config.max_clock_skew == config.orphan_grace == timedelta(seconds=expected)


def test_a_sink_adds_its_own_keys() -> None:
    totals_config(parse(TotalsSinkSettings, {"database_url": "sqlite:///x"}))
    assert "max_clock_skew" in CONFIG_KEYS


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"totals": {}},
            "config.totals: unknown key; allowed keys: domains, max_clock_skew, orphan_grace, "
            "transaction, unattributed_name",
        ),
        ({"transaction": []}, "config.transaction: must be a mapping, got list"),
        (
            {"transaction": {"atribute": "x"}},
            "config.transaction.atribute: unknown key; allowed keys: attribute, rules",
        ),
        (
            {"transaction": {"attribute": 1}},
            "config.transaction.attribute: must be a string, got integer",
        ),
        ({"transaction": {"attribute": " "}}, "config.transaction.attribute: must not be empty"),
        ({"transaction": {"rules": {}}}, "config.transaction.rules: must be a list, got mapping"),
        (
            {"transaction": {"rules": ["x"]}},
            "config.transaction.rules[0]: must be a mapping, got string",
        ),
        (
            {"transaction": {"rules": [{"match": {"name": "a"}}]}},
            "config.transaction.rules[0].transaction: is required",
        ),
        (
            {"transaction": {"rules": [{"transaction": "a"}]}},
            "config.transaction.rules[0].match: is required",
        ),
        (
            {"transaction": {"rules": [{"match": {}, "transaction": "a"}]}},
            "config.transaction.rules[0].match: must match service.name, name or both",
        ),
        (
            {"transaction": {"rules": [{"match": {"host.name": "a"}, "transaction": "a"}]}},
            "config.transaction.rules[0].match.host.name: unknown key; allowed keys: name, "
            "service.name",
        ),
        (
            {
                "transaction": {
                    "rules": [
                        {"match": {"name": "a"}, "transaction": "a"},
                        {"match": {"service.name": 3}, "transaction": "b"},
                    ]
                }
            },
            "config.transaction.rules[1].match.service.name: must be a string or a list of "
            "strings, got integer",
        ),
        (
            {"transaction": {"rules": [{"match": {"name": ["a", True]}, "transaction": "a"}]}},
            "config.transaction.rules[0].match.name[1]: must be a string, got boolean",
        ),
        (
            {"transaction": {"rules": [{"match": {"name": []}, "transaction": "a"}]}},
            "config.transaction.rules[0].match.name: must list at least one value",
        ),
        (
            {"transaction": {"rules": [{"match": {"name": ""}, "transaction": "a"}]}},
            "config.transaction.rules[0].match.name: must not be empty",
        ),
        (
            {"transaction": {"rules": [{"match": {"name": "a"}, "transaction": ""}]}},
            "config.transaction.rules[0].transaction: must not be empty",
        ),
        (
            {
                "transaction": {
                    "rules": [{"match": {"name": "a"}, "transaction": "a", "domain": "x"}]
                }
            },
            "config.transaction.rules[0].domain: unknown key; allowed keys: match, transaction",
        ),
        (
            {"domains": {"by_team": {}}},
            "config.domains.by_team: unknown key; allowed keys: by_service, by_transaction, owner",
        ),
        (
            {"domains": {"by_transaction": {"checkout": 1}}},
            "config.domains.by_transaction.checkout: must be a string, got integer",
        ),
        (
            {"domains": {"by_service": {"api": ""}}},
            "config.domains.by_service.api: must not be empty",
        ),
        (
            {"domains": {"by_service": ["api"]}},
            "config.domains.by_service: must be a mapping, got list",
        ),
        (
            {"max_clock_skew": "2 hours"},
            "config.max_clock_skew: must be a duration such as '30s', '15m' or '1h', got '2 hours'",
        ),
        (
            {"max_clock_skew": 7200},
            "config.max_clock_skew: must be a duration such as '15m', got integer",
        ),
        ({"orphan_grace": "0s"}, "config.orphan_grace: must be longer than zero, got '0s'"),
        ({"unattributed_name": ""}, "config.unattributed_name: must not be empty"),
        (
            {"domains": {"owner": {"domains": {"shop": "shop"}}}},
            "config.domains.owner.attribute: is required",
        ),
        (
            {"domains": {"owner": {"attribute": "k8s.namespace.name", "domains": {"shop": []}}}},
            "config.domains.owner.domains.shop: must be a string, got list",
        ),
        (
            {"domains": {"owner": {"attribute": "ns", "domains": {"shop": " "}}}},
            "config.domains.owner.domains.shop: must not be empty",
        ),
        (
            {"domains": {"owner": {"attribute": "ns", "by": {}}}},
            "config.domains.owner.by: unknown key; allowed keys: attribute, domains",
        ),
        ({"unattributed_name": None}, "config.unattributed_name: must be a string, got null"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(config)
    assert str(caught.value) == message


# -- who pays: domains.owner --------------------------------------------------------

OWNED = parse_config(
    {
        "domains": {
            "by_transaction": {"checkout": "shop", "search": "discovery"},
            "by_service": {"recommender": "discovery"},
            "owner": {
                "attribute": "k8s.namespace.name",
                "domains": {"shop": "shop", "platform": "discovery"},
            },
        }
    }
)


@pytest.mark.parametrize(
    ("owner", "expected"),
    [
        ("shop", "shop"),
        ("platform", "discovery"),
        ("batch-jobs", "batch-jobs"),  # unlisted: its own name
        (None, "(unattributed)"),  # no owner: a sender outside the cluster
    ],
)
def test_a_span_is_charged_to_its_owners_domain(owner: str | None, expected: str) -> None:
    assert owner_domain(OWNED, owner) == expected


@pytest.mark.parametrize(
    ("trace", "expected"),
    [
        (("checkout", "web", True, "shop", False), "shop"),
        # A root from the platform namespace naming shop's transaction: platform's label.
        (("checkout", "web", True, "platform", False), "discovery"),
        (("GET /", "recommender", True, "shop", False), "shop"),  # by_service: not in owner mode
        (("checkout", "web", True, None, False), "(unattributed)"),
        (("checkout", "web", True, "shop", True), "(unattributed)"),  # contested
        (("(unattributed)", "web", False, None, False), "(unattributed)"),  # an orphan
    ],
)
def test_a_trace_is_labelled_with_its_roots_owner(
    trace: tuple[str, str | None, bool, str | None, bool], expected: str
) -> None:
    transaction, service, has_root, owner, contested = trace
    assert OWNED.owner_attribute == "k8s.namespace.name"
    got = trace_domain(
        OWNED,
        transaction=transaction,
        service=service,
        has_root=has_root,
        owner=owner,
        contested=contested,
    )
    assert got == expected


def test_without_an_owner_the_senders_names_decide_as_before() -> None:
    config = parse_config({"domains": {"by_transaction": {"checkout": "shop"}}})
    for owner in (None, "platform"):
        got = trace_domain(
            config,
            transaction="checkout",
            service=None,
            has_root=True,
            owner=owner,
            contested=True,
        )
        assert got == domain_name("checkout", None, config) == "shop"
