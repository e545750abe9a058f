"""The budgets file of ``spancost guard``: YAML in, a validated `GuardConfig` out.

::

    currency: {rates: {EUR: 0.92}}          # optional FX table (spancost.pricing.fx)
    exclude_environments: [ci, staging]     # optional; default NON_PRODUCTION_ENVIRONMENTS
    managed_namespaces: [shop, legacy]      # optional; where to find what a removed budget held
    defaults: {cooldown: 1h}                # optional; any budget key but limit
    alerts:
      webhooks:
        - {url: https://events.pagerduty.com/v2/enqueue, format: pagerduty,
           routing_key_env: PAGERDUTY_ROUTING_KEY}
    budgets:
      checkout:                             # the domain, as the totals store names it
        limit: 150                          # per rolling 24 h, in `currency`
        currency: EUR
        namespaces: [shop]

Every error is a `ConfigError` naming the key, e.g.
``config.budgets.checkout.scale_factor: must be a number above 0 and below 1, got 1.5``.

`BudgetsFile` is the file under a running loop: re-read when its content changes,
the last good version kept when a new one is bad.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, Literal, cast

import yaml

from spancost.config import join_index, parse
from spancost.errors import ConfigError
from spancost.pricing.fx import FxTable
from spancost.settings.budgets import (
    BudgetDefaults,
    BudgetSettings,
    BudgetsFileSettings,
    WebhookSettings,
)
from spancost.vocabulary import normalize_environment

__all__ = [
    "DEFAULT_COOLDOWN",
    "DEFAULT_MAX_UNPRICED_SHARE",
    "DEFAULT_MIN_REPLICAS",
    "DEFAULT_RESTORE_RATIO",
    "DEFAULT_SCALE_FACTOR",
    "DEFAULT_WARN_RATIO",
    "NON_PRODUCTION_ENVIRONMENTS",
    "Budget",
    "BudgetsFile",
    "GuardConfig",
    "WebhookConfig",
    "load_budgets",
    "parse_budgets",
]

DEFAULT_SCALE_FACTOR: Final = Fraction(7, 10)
DEFAULT_MIN_REPLICAS: Final = 1
DEFAULT_WARN_RATIO: Final = 0.8
DEFAULT_RESTORE_RATIO: Final = 0.9
DEFAULT_MAX_UNPRICED_SHARE: Final = 0.2
"""Above it, a domain's spend reads low (too much of its traffic unpriced): a warning."""
DEFAULT_COOLDOWN: Final = timedelta(minutes=30)
DEFAULT_WEBHOOK_TIMEOUT: Final = 5.0
DEFAULT_WEBHOOK_RETRIES: Final = 3
DEFAULT_WEBHOOK_BACKOFF: Final = 0.5

NON_PRODUCTION_ENVIRONMENTS: Final = (
    "ci",
    "dev",
    "development",
    "local",
    "preview",
    "qa",
    "sandbox",
    "stage",
    "staging",
    "test",
    "testing",
    "uat",
)
"""Environments whose spend never counts against a budget unless `exclude_environments`
says otherwise (names as the totals store keeps them: stripped, case-folded)."""

WebhookFormat = Literal["pagerduty", "json"]


@dataclass(frozen=True, slots=True)
class Budget:
    """One domain's rolling 24 h budget and what the guard does about it."""

    domain: str
    limit: float
    """The most the domain may spend in 24 h, in `currency`."""
    currency: str
    namespaces: tuple[str, ...]
    selector: str
    """A Kubernetes label selector for the domain's Deployments."""
    scale_factor: Fraction = DEFAULT_SCALE_FACTOR
    """Exact: the decimal the file gives (0.7 is 7/10, not the binary float next to it)."""
    min_replicas: int = DEFAULT_MIN_REPLICAS
    warn_ratio: float = DEFAULT_WARN_RATIO
    restore_ratio: float = DEFAULT_RESTORE_RATIO
    cooldown: timedelta = DEFAULT_COOLDOWN
    dry_run: bool = False
    max_unpriced_share: float = DEFAULT_MAX_UNPRICED_SHARE
    """Above this share of unpriced spans the guard warns that the spend reads low."""


@dataclass(frozen=True, slots=True)
class WebhookConfig:
    """Where alerts are POSTed, in which shape, and how hard to try."""

    url: str
    format: WebhookFormat = "json"
    routing_key: str = ""
    """PagerDuty's integration key (format ``pagerduty`` only)."""
    timeout: float = DEFAULT_WEBHOOK_TIMEOUT
    retries: int = DEFAULT_WEBHOOK_RETRIES
    backoff: float = DEFAULT_WEBHOOK_BACKOFF
    """urllib3's backoff factor: sleeps of backoff, 2 x backoff, 4 x backoff, ... seconds."""

    def __repr__(self) -> str:  # never print the routing key
        return f"WebhookConfig(url={self.url!r}, format={self.format!r})"


@dataclass(frozen=True, slots=True)
class GuardConfig:
    """The whole budgets file, validated."""

    budgets: tuple[Budget, ...]
    fx: FxTable = field(default_factory=FxTable)
    exclude_environments: frozenset[str] = frozenset(NON_PRODUCTION_ENVIRONMENTS)
    webhooks: tuple[WebhookConfig, ...] = ()
    dry_run: bool = False
    managed_namespaces: tuple[str, ...] = ()
    """Where the guard also looks for Deployments it holds for a domain no budget covers
    (a budget removed, or a namespace removed from it): the file's ``managed_namespaces``."""

    @property
    def namespaces(self) -> tuple[str, ...]:
        """Every namespace the guard reads: the budgets' and the managed ones, sorted."""
        named = {namespace for budget in self.budgets for namespace in budget.namespaces}
        return tuple(sorted(named | set(self.managed_namespaces)))


def load_budgets(path: Path, environ: Mapping[str, str] | None = None) -> GuardConfig:
    """Read and validate the budgets file at `path` (`ConfigError` naming the key)."""
    return _parse_file(path, _read(path), environ)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            "", f"cannot read the budgets file {path}: {exc.strerror or exc}"
        ) from exc


def _parse_file(path: Path, content: bytes, environ: Mapping[str, str] | None) -> GuardConfig:
    try:
        document = yaml.safe_load(content.decode("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError("", f"the budgets file {path} is not valid YAML: {exc}") from exc
    return parse_budgets(document, environ)


class BudgetsFile:
    """The budgets file of a running loop, re-read when its content changes.

    A ConfigMap volume updates by swapping a symlink to a new directory, which
    leaves the mtime of the path the guard opens meaningless; so every `reload`
    reads the file (a few hundred bytes) and compares the bytes.
    """

    def __init__(self, path: Path, environ: Mapping[str, str] | None = None) -> None:
        """Read the file now (`ConfigError` if it is bad: there is no last good one yet)."""
        self.path = path
        self._environ = environ
        content = _read(path)
        self.config = _parse_file(path, content, environ)
        self._seen: bytes | None = content
        """What the file held at the last look (None: it could not be read)."""

    def reload(self) -> GuardConfig | None:
        """The new config when the file changed to a valid one; None when it did not change.

        A change to a bad file raises `ConfigError` once (the same bad content again is
        "no change"); `config` keeps the last good one meanwhile.
        """
        try:
            content = _read(self.path)
        except ConfigError:
            changed, self._seen = self._seen is not None, None
            if changed:
                raise
            return None
        if content == self._seen:
            return None
        self._seen = content
        self.config = _parse_file(self.path, content, self._environ)
        return self.config


def parse_budgets(document: object, environ: Mapping[str, str] | None = None) -> GuardConfig:
    """Validate a parsed budgets document (see the module docstring)."""
    env = os.environ if environ is None else environ
    raw = document if document is not None else {}
    settings = parse(BudgetsFileSettings, raw)
    assert isinstance(raw, Mapping)  # the settings parsed
    fx = FxTable(raw.get("currency", {}), path="currency")
    excluded = settings.exclude_environments
    if excluded is None:
        excluded = NON_PRODUCTION_ENVIRONMENTS
    return GuardConfig(
        budgets=tuple(
            _budget(domain, budget, settings.defaults, fx)
            for domain, budget in settings.budgets.items()
        ),
        fx=fx,
        exclude_environments=frozenset(
            NON_PRODUCTION_ENVIRONMENTS
            if excluded is None
            else map(normalize_environment, excluded)
        ),
        webhooks=tuple(
            _webhook(webhook, join_index("alerts.webhooks", index), env)
            for index, webhook in enumerate(settings.alerts.webhooks)
        ),
        dry_run=settings.dry_run,
        managed_namespaces=settings.managed_namespaces,
    )


def _budget(domain: str, budget: BudgetSettings, defaults: BudgetDefaults, fx: FxTable) -> Budget:
    """`budget` with what it leaves unset taken from `defaults`, then the defaults' defaults."""

    def pick(name: str, fallback: Any) -> Any:
        value = getattr(budget, name)
        if value is None:
            value = getattr(defaults, name)
        return fallback if value is None else value

    namespaces: tuple[str, ...] = pick("namespaces", ())  # the settings require some
    scale_factor = pick("scale_factor", None)
    return Budget(
        domain=domain,
        limit=budget.limit,
        currency=pick("currency", fx.code).strip().upper(),
        namespaces=namespaces,
        selector=pick("selector", f"domain={domain}"),
        # Exact: YAML hands over a binary float (0.7 is 0.69999999999999995559...); its
        # repr is the shortest decimal that reads back as it, the decimal the file wrote.
        scale_factor=DEFAULT_SCALE_FACTOR if scale_factor is None else Fraction(repr(scale_factor)),
        min_replicas=pick("min_replicas", DEFAULT_MIN_REPLICAS),
        warn_ratio=pick("warn_ratio", DEFAULT_WARN_RATIO),
        restore_ratio=pick("restore_ratio", DEFAULT_RESTORE_RATIO),
        cooldown=timedelta(seconds=pick("cooldown", DEFAULT_COOLDOWN.total_seconds())),
        dry_run=pick("dry_run", False),
        max_unpriced_share=pick("max_unpriced_share", DEFAULT_MAX_UNPRICED_SHARE),
    )


def _webhook(webhook: WebhookSettings, path: str, environ: Mapping[str, str]) -> WebhookConfig:
    routing_key = webhook.routing_key
    if webhook.routing_key_env is not None:
        # Read here, not in the settings: the variable belongs to where the guard runs.
        routing_key = environ.get(webhook.routing_key_env, "")
        if not routing_key:
            raise ConfigError(
                f"{path}.routing_key_env",
                f"the environment variable {webhook.routing_key_env} is not set",
            )
    return WebhookConfig(
        url=webhook.url,
        format=cast(WebhookFormat, webhook.format),
        routing_key=routing_key,
        timeout=webhook.timeout,
        retries=webhook.retries,
        backoff=webhook.backoff,
    )
