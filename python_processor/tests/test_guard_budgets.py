"""The budgets file: defaults, currencies, webhooks, and errors that name the key."""

from __future__ import annotations

import os
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from spancost.errors import ConfigError
from spancost.guard.budgets import (
    NON_PRODUCTION_ENVIRONMENTS,
    Budget,
    BudgetsFile,
    load_budgets,
    parse_budgets,
)

EXAMPLE = Path(__file__).parents[2] / "configs" / "guard" / "budgets.yaml"


def one(budget: dict[str, Any], **top: Any) -> Budget:
    return parse_budgets({"budgets": {"checkout": budget}, **top}).budgets[0]


def test_defaults() -> None:
    budget = one({"limit": 150, "namespaces": ["shop"]})
    assert budget == Budget(
        domain="checkout",
        limit=150.0,
        currency="USD",
        namespaces=("shop",),
        selector="domain=checkout",
        scale_factor=Fraction(7, 10),
        min_replicas=1,
        warn_ratio=0.8,
        restore_ratio=0.9,
        cooldown=timedelta(minutes=30),
        dry_run=False,
    )
    config = parse_budgets({"budgets": {"checkout": {"limit": 1, "namespaces": ["a"]}}})
    assert config.exclude_environments == frozenset(NON_PRODUCTION_ENVIRONMENTS)
    assert config.webhooks == ()
    assert config.dry_run is False
    assert config.managed_namespaces == ()
    assert config.namespaces == ("a",)


def test_every_key_and_defaults_section() -> None:
    config = parse_budgets(
        {
            "currency": {"code": "EUR", "rates": {"EUR": 0.9, "GBP": 0.8}},
            "exclude_environments": ["Staging", "ci"],
            "defaults": {"cooldown": "1h", "namespaces": ["shop"], "scale_factor": 0.5},
            "dry_run": True,
            "managed_namespaces": ["legacy", "shop", "legacy"],
            "budgets": {
                "checkout": {
                    "limit": 100,
                    "selector": "app.kubernetes.io/part-of=checkout,tier!=web",
                    "min_replicas": 2,
                    "warn_ratio": 0.5,
                    "restore_ratio": 1,
                    "max_unpriced_share": 0.5,
                    "dry_run": True,
                },
                "search": {"limit": 20.5, "currency": "gbp", "namespaces": ["a", "b", "a"]},
            },
        }
    )
    checkout, search = config.budgets
    assert checkout.currency == "EUR"  # the file's currency code
    assert checkout.namespaces == ("shop",)  # from defaults
    assert checkout.cooldown == timedelta(hours=1)
    assert (checkout.scale_factor, checkout.min_replicas) == (Fraction(1, 2), 2)
    assert (checkout.warn_ratio, checkout.restore_ratio, checkout.dry_run) == (0.5, 1.0, True)
    assert (checkout.max_unpriced_share, search.max_unpriced_share) == (0.5, 0.2)
    assert search.currency == "GBP"
    assert search.namespaces == ("a", "b")
    assert search.selector == "domain=search"
    assert config.exclude_environments == {"staging", "ci"}
    assert config.dry_run is True
    assert config.managed_namespaces == ("legacy", "shop")
    assert config.namespaces == ("a", "b", "legacy", "shop")  # every namespace the guard reads


@pytest.mark.parametrize(
    ("budget", "key", "message"),
    [
        ({"namespaces": ["a"]}, "budgets.checkout.limit", "is required"),
        ({"limit": 0, "namespaces": ["a"]}, "budgets.checkout.limit", "above 0"),
        ({"limit": "10", "namespaces": ["a"]}, "budgets.checkout.limit", "must be a number"),
        ({"limit": True, "namespaces": ["a"]}, "budgets.checkout.limit", "must be a number"),
        ({"limit": 1}, "budgets.checkout.namespaces", "is required"),
        ({"limit": 1, "namespaces": []}, "budgets.checkout.namespaces", "at least one"),
        ({"limit": 1, "namespaces": ["Shop"]}, "budgets.checkout.namespaces[0]", "RFC 1123"),
        ({"limit": 1, "namespaces": ["a"], "scale_factor": 1.5}, "budgets.checkout.scale_factor",
         "above 0 and below 1"),
        ({"limit": 1, "namespaces": ["a"], "scale_factor": 1}, "budgets.checkout.scale_factor",
         "below 1"),
        ({"limit": 1, "namespaces": ["a"], "min_replicas": -1}, "budgets.checkout.min_replicas",
         "0 or more"),
        ({"limit": 1, "namespaces": ["a"], "min_replicas": 1.5}, "budgets.checkout.min_replicas",
         "integer"),
        ({"limit": 1, "namespaces": ["a"], "warn_ratio": 1}, "budgets.checkout.warn_ratio",
         "below 1"),
        ({"limit": 1, "namespaces": ["a"], "restore_ratio": 1.2},
         "budgets.checkout.restore_ratio", "at most 1"),
        ({"limit": 1, "namespaces": ["a"], "max_unpriced_share": 1.5},
         "budgets.checkout.max_unpriced_share", "from 0 to 1"),
        ({"limit": 1, "namespaces": ["a"], "cooldown": "soon"}, "budgets.checkout.cooldown",
         "duration"),
        ({"limit": 1, "namespaces": ["a"], "dry_run": "yes"}, "budgets.checkout.dry_run",
         "boolean"),
        ({"limit": 1, "namespaces": ["a"], "currency": "EUR"}, "budgets.checkout.currency",
         "no exchange rate"),
        ({"limit": 1, "namespaces": ["a"], "selector": ""}, "budgets.checkout.selector",
         "must not be empty"),
        ({"limit": 1, "namespaces": ["a"], "selector": "a=b=c"}, "budgets.checkout.selector",
         "not a label selector"),
        ({"limit": 1, "namespaces": ["a"], "scale": 0.5}, "budgets.checkout.scale",
         "unknown key"),
    ],
)  # fmt: skip
def test_invalid_budget_names_the_key(budget: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        one(budget)
    assert caught.value.key == key
    assert message in caught.value.message
    assert str(caught.value).startswith(f"config.{key}: ")


def test_selectors_the_api_server_accepts() -> None:
    for selector in (
        "domain=checkout",
        "domain==checkout,tier!=db",
        "tier in (web, api),!canary",
        "environment notin (qa),app",
        "app.kubernetes.io/name=x",
    ):
        assert one({"limit": 1, "namespaces": ["a"], "selector": selector}).selector == selector


def test_domain_that_is_not_a_label_value_needs_a_selector() -> None:
    with pytest.raises(ConfigError, match=r"budgets\.GET /\.selector: is required"):
        parse_budgets({"budgets": {"GET /": {"limit": 1, "namespaces": ["a"]}}})


@pytest.mark.parametrize(
    ("written", "exact"),
    [
        (0.7, Fraction(7, 10)),
        (0.35, Fraction(7, 20)),
        (0.1, Fraction(1, 10)),
        (0.5, Fraction(1, 2)),
    ],
)
def test_scale_factor_is_the_decimal_the_file_wrote(written: float, exact: Fraction) -> None:
    """YAML gives the float nearest to 0.7 (Fraction(0.7) is not 7/10); the budget keeps 7/10."""
    assert one({"limit": 1, "namespaces": ["a"], "scale_factor": written}).scale_factor == exact
    config = parse_budgets(
        {
            "defaults": {"scale_factor": written},
            "budgets": {"checkout": {"limit": 1, "namespaces": ["a"]}},
        }
    )
    assert config.budgets[0].scale_factor == exact


@pytest.mark.parametrize(
    ("document", "key"),
    [
        ({}, "budgets"),
        ({"budgets": {}}, "budgets"),
        ({"budgets": {"x": {"limit": 1, "namespaces": ["a"]}}, "extra": 1}, "extra"),
        ({"budgets": [1]}, "budgets"),
        ({"budgets": {"x": {"limit": 1, "namespaces": ["a"]}}, "defaults": {"limit": 1}},
         "defaults.limit"),
        ({"budgets": {"x": {"limit": 1, "namespaces": ["a"]}}, "exclude_environments": "ci"},
         "exclude_environments"),
        ({"budgets": {"x": {"limit": 1, "namespaces": ["a"]}}, "currency": {"code": "EUR"}},
         "currency.code"),
        ({"budgets": {"x": {"limit": 1, "namespaces": ["a"]}}, "managed_namespaces": "a"},
         "managed_namespaces"),
        ({"budgets": {"x": {"limit": 1, "namespaces": ["a"]}}, "managed_namespaces": ["A"]},
         "managed_namespaces[0]"),
    ],
)  # fmt: skip
def test_invalid_file_names_the_key(document: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_budgets(document)
    assert caught.value.key == key


def test_webhooks() -> None:
    budgets = {"x": {"limit": 1, "namespaces": ["a"]}}
    config = parse_budgets(
        {
            "budgets": budgets,
            "alerts": {
                "webhooks": [
                    {"url": "http://127.0.0.1:9/hook"},
                    {
                        "url": "https://events.pagerduty.com/v2/enqueue",
                        "format": "pagerduty",
                        "routing_key_env": "PD_KEY",
                        "timeout": "2s",
                        "retries": 5,
                        "backoff": "100ms",
                    },
                ]
            },
        },
        environ={"PD_KEY": "secret-key"},
    )
    plain, pagerduty = config.webhooks
    assert (plain.format, plain.retries, plain.timeout, plain.backoff) == ("json", 3, 5.0, 0.5)
    assert (pagerduty.format, pagerduty.routing_key) == ("pagerduty", "secret-key")
    assert (pagerduty.timeout, pagerduty.retries, pagerduty.backoff) == (2.0, 5, 0.1)
    assert "secret-key" not in repr(pagerduty)


@pytest.mark.parametrize(
    ("webhook", "key"),
    [
        ({"url": "ftp://x"}, "alerts.webhooks[0].url"),
        ({"url": "http://x", "format": "slack"}, "alerts.webhooks[0].format"),
        ({"url": "http://x", "format": "pagerduty"}, "alerts.webhooks[0].routing_key"),
        ({"url": "http://x", "routing_key_env": "UNSET_VARIABLE"},
         "alerts.webhooks[0].routing_key_env"),
        ({"url": "http://x", "retries": 11}, "alerts.webhooks[0].retries"),
        ({"url": "http://x", "timeout": 5}, "alerts.webhooks[0].timeout"),
    ],
)  # fmt: skip
def test_invalid_webhook_names_the_key(webhook: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_budgets(
            {
                "budgets": {"x": {"limit": 1, "namespaces": ["a"]}},
                "alerts": {"webhooks": [webhook]},
            },
            environ={},
        )
    assert caught.value.key == key


def test_load_budgets_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the budgets file"):
        load_budgets(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("budgets: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_budgets(bad)


def test_budgets_file_reload_follows_the_content(tmp_path: Path) -> None:
    """As a ConfigMap volume updates: a new directory, the symlink swapped to it."""
    mount = tmp_path / "mount"
    mount.mkdir()

    def publish(version: str, text: str) -> None:
        (tmp_path / version).mkdir()
        (tmp_path / version / "budgets.yaml").write_text(text)
        (mount / "..data_tmp").symlink_to(tmp_path / version)
        os.replace(mount / "..data_tmp", mount / "..data")

    publish("v1", "budgets:\n  checkout: {limit: 100, namespaces: [shop]}\n")
    (mount / "budgets.yaml").symlink_to(mount / "..data" / "budgets.yaml")
    budgets = BudgetsFile(mount / "budgets.yaml")
    first = budgets.config
    assert budgets.reload() is None  # unchanged
    publish("v2", "budgets:\n  search: {limit: 40, namespaces: [shop]}\n")
    changed = budgets.reload()
    assert changed is not None and changed is budgets.config
    assert [b.domain for b in changed.budgets] == ["search"]
    assert budgets.reload() is None
    # A bad version: reported once, the last good one stays.
    publish("v3", "budgets:\n  search: {limit: -1, namespaces: [shop]}\n")
    with pytest.raises(ConfigError, match=r"budgets\.search\.limit: must be above 0"):
        budgets.reload()
    assert budgets.reload() is None
    assert budgets.config is changed
    publish("v4", "budgets: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        budgets.reload()
    (mount / "budgets.yaml").unlink()
    with pytest.raises(ConfigError, match="cannot read"):
        budgets.reload()
    assert budgets.reload() is None
    (mount / "budgets.yaml").symlink_to(mount / "..data" / "budgets.yaml")
    publish("v5", "budgets:\n  checkout: {limit: 100, namespaces: [shop]}\n")
    back = budgets.reload()
    assert back is not None and back.budgets == first.budgets


def test_a_budgets_file_that_is_bad_from_the_start_raises(tmp_path: Path) -> None:
    path = tmp_path / "budgets.yaml"
    path.write_text("budgets: {}\n")
    with pytest.raises(ConfigError, match="at least one domain"):
        BudgetsFile(path)


def test_the_example_budgets_file_is_valid() -> None:
    config = load_budgets(EXAMPLE, environ={"PAGERDUTY_ROUTING_KEY": "k"})
    assert [budget.domain for budget in config.budgets] == ["checkout", "search"]


def test_the_budgets_configmap_carries_the_example_file() -> None:
    import yaml  # noqa: PLC0415

    configmap = yaml.safe_load((EXAMPLE.parent / "budgets-configmap.yaml").read_text())
    assert configmap["kind"] == "ConfigMap"
    assert configmap["data"]["budgets.yaml"] == EXAMPLE.read_text(), (
        "configs/guard/budgets-configmap.yaml must embed configs/guard/budgets.yaml verbatim"
    )
