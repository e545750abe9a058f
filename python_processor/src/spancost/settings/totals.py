"""``spancost.totals``'s configuration: how traces are named and charged
(`spancost.totals.naming`), and where the sink stores them (`spancost.plugins.totals`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema, model_validator

from spancost.config import (
    ConfigModel,
    Duration,
    Integer,
    Name,
    default,
    describe_type,
    invalid,
    list_of,
)
from spancost.settings.allocation import AllocationSettings
from spancost.totals.naming import UNATTRIBUTED
from spancost.vocabulary.keys import BUSINESS_TRANSACTION, SERVICE_NAME

__all__ = [
    "DomainsSettings",
    "NamingSettings",
    "OwnerSettings",
    "TotalsSinkSettings",
    "TransactionRuleSettings",
    "TransactionSettings",
]


def _pattern(value: object) -> object:
    if not isinstance(value, str | list | tuple):
        raise invalid(f"must be a string or a list of strings, got {describe_type(value)}")
    items = [value] if isinstance(value, str) else value
    if not items:
        raise invalid("must list at least one value")
    for index, item in enumerate(items):
        at = () if isinstance(value, str) else (index,)
        if not isinstance(item, str):
            raise invalid(f"must be a string, got {describe_type(item)}", *at)
        if not item:
            raise invalid("must not be empty", *at)
    return tuple(items)


Pattern = Annotated[
    tuple[str, ...],
    BeforeValidator(_pattern),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1},
                {"type": "array", "items": {"type": "string", "minLength": 1}, "minItems": 1},
            ]
        }
    ),
]
"""A string (exact, or an fnmatch glob if it has ``*``, ``?`` or ``[``) or a list of them."""


def _names(names: dict[str, str]) -> dict[str, str]:
    for name in names:
        if not name.strip():
            raise invalid("name must not be empty", name)
    return names


NameMap = Annotated[dict[str, Name], AfterValidator(_names)]
"""Name -> name, neither blank."""


class RootMatchSettings(ConfigModel):
    service_name: Pattern | None = default(None, alias=SERVICE_NAME)
    """The root span's ``service.name``."""
    name: Pattern | None = None
    """The root span's name."""

    @model_validator(mode="after")
    def _something(self) -> RootMatchSettings:
        if self.service_name is None and self.name is None:
            raise invalid("must match service.name, name or both")
        return self


class TransactionRuleSettings(ConfigModel):
    """Root spans whose service and name match are transaction `transaction`."""

    match: RootMatchSettings
    transaction: Name


class TransactionSettings(ConfigModel):
    attribute: Name = BUSINESS_TRANSACTION
    """The attribute that names a trace's transaction (on the root span, else its resource)."""
    rules: Annotated[tuple[TransactionRuleSettings, ...], list_of("a list")] = ()
    """Tried in order when the root carries no such attribute."""


class OwnerSettings(ConfigModel):
    """Who pays, from what a sender cannot forge in a cluster."""

    attribute: Name
    """The resource attribute that says who sent a span (``k8s.namespace.name``)."""
    domains: NameMap = default({})
    """Owner -> its domain; an owner not listed is its own domain."""


class DomainsSettings(ConfigModel):
    by_transaction: NameMap = default({})
    by_service: NameMap = default({})
    owner: OwnerSettings | None = None


class NamingSettings(ConfigModel):
    """How traces are named and whose budget pays (the part a store keeps)."""

    transaction: TransactionSettings = default({})
    domains: DomainsSettings = default({})
    max_clock_skew: Duration = default("2h")
    """A span ending later than this after it arrived is quarantined (``future``)."""
    orphan_grace: Duration = default("10m")
    """How long a trace waits for its root before it is unattributed."""
    unattributed_name: Name = UNATTRIBUTED


Positive = Annotated[int, Integer(ge=1, message="must be a positive integer")]


class TotalsSinkSettings(NamingSettings):
    """Sums each trace's ``cost.usd`` into PostgreSQL or SQLite."""

    database_url: str | None = None
    """``postgresql://...``; empty or null: SQLite in the data directory."""
    migrate: bool = True
    """Create and upgrade the schema at start-up."""
    max_connections: Positive = 4
    retention_months: Positive = 13
    """Months kept before the current one (as ``spancost db maintain`` keeps them: its
    ``DEFAULT_RETENTION_MONTHS``)."""
    maintenance_interval: Duration = default("30s")
    reconnect_interval: Duration = default("5s")
    allocation: AllocationSettings | None = None
    """This node's usage, priced, split to transactions."""
