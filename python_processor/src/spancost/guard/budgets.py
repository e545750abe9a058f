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

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any, Final, Literal

import yaml

from spancost.config import MISSING, ConfigSection, describe_type, join_index, parse_duration
from spancost.errors import ConfigError
from spancost.pricing.fx import FxTable
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
WEBHOOK_FORMATS: Final[tuple[WebhookFormat, ...]] = ("pagerduty", "json")

_BUDGET_KEYS: Final = (
    "limit",
    "currency",
    "namespaces",
    "selector",
    "scale_factor",
    "min_replicas",
    "warn_ratio",
    "restore_ratio",
    "max_unpriced_share",
    "cooldown",
    "dry_run",
)
_DEFAULT_KEYS: Final = tuple(key for key in _BUDGET_KEYS if key != "limit")
_TOP_KEYS: Final = (
    "budgets",
    "defaults",
    "currency",
    "exclude_environments",
    "managed_namespaces",
    "alerts",
    "dry_run",
)
# RFC 1123 label: what a namespace name must be.
_NAMESPACE_RE: Final = re.compile(r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?")
# A label value (also the domain in the default selector ``domain=<domain>``).
_LABEL_VALUE_RE: Final = re.compile(r"([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?")
# A label key, optionally prefixed: ``app``, ``app.kubernetes.io/name``.
_LABEL_KEY: Final = (
    r"([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
)
_VALUE: Final = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_SELECTOR_TERM_RE: Final = re.compile(
    rf"\s*(!\s*{_LABEL_KEY}|{_LABEL_KEY}(\s*(==|=|!=)\s*({_VALUE})?"
    rf"|\s+(in|notin)\s*\(\s*({_VALUE})?(\s*,\s*({_VALUE})?)*\s*\))?)\s*"
)


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
    top = ConfigSection(document if document is not None else {})
    top.allow_only(*_TOP_KEYS)
    fx = FxTable(top.get_section("currency", {}), path="currency")
    defaults = top.get_section("defaults", {})
    defaults.allow_only(*_DEFAULT_KEYS)
    budgets_section = top.get_section("budgets")
    if not len(budgets_section):
        raise ConfigError(budgets_section.path, "must name at least one domain")
    budgets = tuple(
        _budget(domain, section, defaults, fx) for domain, section in budgets_section.sections()
    )
    managed = _namespace_list(top, "managed_namespaces") if "managed_namespaces" in top else ()
    return GuardConfig(
        budgets=budgets,
        fx=fx,
        exclude_environments=_environments(top),
        webhooks=_webhooks(top.get_section("alerts", {}), env),
        dry_run=top.get_bool("dry_run", False),
        managed_namespaces=managed,
    )


def _budget(domain: str, section: ConfigSection, defaults: ConfigSection, fx: FxTable) -> Budget:
    section.allow_only(*_BUDGET_KEYS)
    if not domain.strip():
        raise ConfigError(section.path, "the domain name must not be empty")

    def pick(name: str) -> tuple[ConfigSection, bool]:
        """The section a key comes from (the budget's, else the defaults), and if it is set."""
        if name in section:
            return section, True
        return defaults, name in defaults

    limit = _number(section, "limit")
    if not limit > 0:
        raise ConfigError(section.key("limit"), f"must be above 0, got {limit!r}")

    where, present = pick("currency")
    currency = where.get_str("currency").strip().upper() if present else fx.code
    fx.check(currency, where.key("currency") if present else section.key("currency"))

    namespaces = _namespaces(section, *pick("namespaces"))
    selector = _selector(domain, section, *pick("selector"))

    where, _ = pick("scale_factor")
    scale_factor = _fraction(where, "scale_factor", DEFAULT_SCALE_FACTOR)
    if not 0 < scale_factor < 1:
        raise ConfigError(
            where.key("scale_factor"),
            f"must be a number above 0 and below 1, got {where.get_raw('scale_factor')!r}",
        )
    where, _ = pick("warn_ratio")
    warn_ratio = _number(where, "warn_ratio", DEFAULT_WARN_RATIO)
    if not 0 < warn_ratio < 1:
        raise ConfigError(
            where.key("warn_ratio"), f"must be a number above 0 and below 1, got {warn_ratio!r}"
        )
    where, _ = pick("restore_ratio")
    restore_ratio = _number(where, "restore_ratio", DEFAULT_RESTORE_RATIO)
    if not 0 < restore_ratio <= 1:
        raise ConfigError(
            where.key("restore_ratio"),
            f"must be a number above 0 and at most 1, got {restore_ratio!r}",
        )
    where, _ = pick("max_unpriced_share")
    max_unpriced_share = _number(where, "max_unpriced_share", DEFAULT_MAX_UNPRICED_SHARE)
    if not 0 <= max_unpriced_share <= 1:
        raise ConfigError(
            where.key("max_unpriced_share"),
            f"must be a number from 0 to 1, got {max_unpriced_share!r}",
        )
    where, _ = pick("min_replicas")
    min_replicas = _integer(where, "min_replicas", DEFAULT_MIN_REPLICAS)
    if min_replicas < 0:
        raise ConfigError(where.key("min_replicas"), f"must be 0 or more, got {min_replicas}")
    where, present = pick("cooldown")
    cooldown = (
        timedelta(seconds=parse_duration(where.get_raw("cooldown"), where.key("cooldown")))
        if present
        else DEFAULT_COOLDOWN
    )
    where, _ = pick("dry_run")
    return Budget(
        domain=domain,
        limit=limit,
        currency=currency,
        namespaces=namespaces,
        selector=selector,
        scale_factor=scale_factor,
        min_replicas=min_replicas,
        warn_ratio=warn_ratio,
        restore_ratio=restore_ratio,
        cooldown=cooldown,
        dry_run=where.get_bool("dry_run", False),
        max_unpriced_share=max_unpriced_share,
    )


def _namespaces(section: ConfigSection, where: ConfigSection, present: bool) -> tuple[str, ...]:
    if not present:
        raise ConfigError(section.key("namespaces"), "is required (the namespaces to act in)")
    namespaces = _namespace_list(where, "namespaces")
    if not namespaces:
        raise ConfigError(where.key("namespaces"), "must list at least one namespace")
    return namespaces


def _namespace_list(where: ConfigSection, name: str) -> tuple[str, ...]:
    namespaces = where.get_str_list(name)
    for index, namespace in enumerate(namespaces):
        if not _NAMESPACE_RE.fullmatch(namespace):
            raise ConfigError(
                join_index(where.key(name), index),
                f"must be a namespace name (RFC 1123 label), got {namespace!r}",
            )
    return tuple(dict.fromkeys(namespaces))


def _selector(domain: str, section: ConfigSection, where: ConfigSection, present: bool) -> str:
    if present:
        selector = where.get_str("selector").strip()
        _check_selector(selector, where.key("selector"))
        return selector
    if _LABEL_VALUE_RE.fullmatch(domain):
        return f"domain={domain}"
    raise ConfigError(
        section.key("selector"),
        f"is required: the domain {domain!r} is not a valid label value, so the default "
        "selector domain=<domain> cannot be used",
    )


def _number(section: ConfigSection, name: str, default: Any = MISSING) -> float:
    value = section.get_raw(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(section.key(name), f"must be a number, got {describe_type(value)}")
    return float(value)


def _fraction(section: ConfigSection, name: str, default: Fraction) -> Fraction:
    """The number as the file writes it, exactly.

    YAML hands over a binary float (0.7 is 0.6999999999999999555910790149937...);
    its repr is the shortest decimal that reads back as that float, which is the
    decimal the file wrote (for up to 15 significant digits).
    """
    if name not in section:
        return default
    value = _number(section, name)
    return Fraction(repr(value))


def _integer(section: ConfigSection, name: str, default: int) -> int:
    value = section.get_raw(name, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(section.key(name), f"must be an integer, got {describe_type(value)}")
    return value


def _check_selector(selector: str, key: str) -> None:
    """Refuse what the API server would refuse, so a typo fails at start, not at 3 a.m."""
    if not selector:
        raise ConfigError(key, "must not be empty (it would select every Deployment)")
    for term in _split_selector(selector):
        if not _SELECTOR_TERM_RE.fullmatch(term):
            raise ConfigError(key, f"is not a label selector: cannot read {term.strip()!r}")


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


def _environments(top: ConfigSection) -> frozenset[str]:
    if "exclude_environments" not in top:
        return frozenset(NON_PRODUCTION_ENVIRONMENTS)
    names = top.get_str_list("exclude_environments")
    return frozenset(normalize_environment(name) for name in names)


def _webhooks(alerts: ConfigSection, environ: Mapping[str, str]) -> tuple[WebhookConfig, ...]:
    alerts.allow_only("webhooks")
    raw = alerts.get_raw("webhooks", [])
    path = alerts.key("webhooks")
    if not isinstance(raw, list | tuple):
        raise ConfigError(path, f"must be a list, got {describe_type(raw)}")
    return tuple(
        _webhook(ConfigSection(item, join_index(path, i)), environ) for i, item in enumerate(raw)
    )


def _webhook(section: ConfigSection, environ: Mapping[str, str]) -> WebhookConfig:
    section.allow_only(
        "url", "format", "routing_key", "routing_key_env", "timeout", "retries", "backoff"
    )
    url = section.get_str("url")
    if not re.match(r"https?://[^/\s]+", url):
        raise ConfigError(section.key("url"), f"must be an http:// or https:// URL, got {url!r}")
    fmt = section.get_str("format", "json")
    if fmt not in WEBHOOK_FORMATS:
        raise ConfigError(
            section.key("format"), f"must be one of {', '.join(WEBHOOK_FORMATS)}, got {fmt!r}"
        )
    routing_key = section.get_str("routing_key", "")
    if "routing_key_env" in section:
        if routing_key:
            raise ConfigError(
                section.key("routing_key_env"), "give routing_key or routing_key_env, not both"
            )
        variable = section.get_str("routing_key_env")
        routing_key = environ.get(variable, "")
        if not routing_key:
            raise ConfigError(
                section.key("routing_key_env"), f"the environment variable {variable} is not set"
            )
    if fmt == "pagerduty" and not routing_key:
        raise ConfigError(
            section.key("routing_key"),
            "is required for format pagerduty (or routing_key_env naming a variable)",
        )
    retries = _integer(section, "retries", DEFAULT_WEBHOOK_RETRIES)
    if not 0 <= retries <= 10:
        raise ConfigError(section.key("retries"), f"must be between 0 and 10, got {retries}")
    return WebhookConfig(
        url=url,
        format=fmt,
        routing_key=routing_key,
        timeout=_seconds(section, "timeout", DEFAULT_WEBHOOK_TIMEOUT),
        retries=retries,
        backoff=_seconds(section, "backoff", DEFAULT_WEBHOOK_BACKOFF),
    )


def _seconds(section: ConfigSection, name: str, default: float) -> float:
    if name not in section:
        return default
    return parse_duration(section.get_raw(name), section.key(name))
