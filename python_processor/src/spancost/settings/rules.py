"""User price rules, as ``spancost.cost`` takes them under ``rules`` (see
`spancost.pricing.rules`, which turns them into matchers)."""

from __future__ import annotations

import re
from typing import Annotated, Final

from pydantic import AfterValidator, BeforeValidator, Field, WithJsonSchema, model_validator

from spancost.config import (
    Choice,
    ConfigModel,
    Name,
    Number,
    attribute_map,
    describe_type,
    invalid,
    list_of,
)
from spancost.pricing.rules import APPLIES_TO, RULE_AS_OF

__all__ = ["MatchValue", "RuleSettings", "Rules", "RulesSettings"]

_NAME: Final = re.compile(r"^[A-Za-z0-9_.-]+$")


def _match_value(value: object) -> object:
    if isinstance(value, bool | int | str):
        return value
    if not isinstance(value, list | tuple):
        raise invalid(
            "must be a string, a list of strings, an integer or a boolean, "
            f"got {describe_type(value)}"
        )
    if not value:
        raise invalid("must list at least one value")
    for index, item in enumerate(value):
        if not isinstance(item, str):
            raise invalid(f"must be a string, got {describe_type(item)}", index)
    return tuple(value)


MatchValue = Annotated[
    str | bool | int | tuple[str, ...],
    BeforeValidator(_match_value),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": ["string", "integer", "boolean"]},
                {"type": "array", "items": {"type": "string"}, "minItems": 1},
            ]
        }
    ),
]
"""An exact string, a glob (``*``, ``?``, ``[``), a list of them, an integer or a boolean."""


def _rule_name(name: str) -> str:
    if not _NAME.match(name.strip()):
        raise invalid("must be a non-empty name of letters, digits, '_', '.' or '-'")
    return name.strip()


class RuleSettings(ConfigModel):
    """Spans whose attributes match are priced at an hourly rate or a unit price."""

    name: Annotated[str, AfterValidator(_rule_name)]
    """Names the rule in ``cost.source`` (``rule:<name>``)."""
    match: Annotated[
        dict[str, MatchValue],
        attribute_map("must match at least one attribute"),
        Field(json_schema_extra={"minProperties": 1}),
    ]
    """Attribute -> value; every entry must match (the span's attributes, then its resource's)."""
    per_hour_usd: Annotated[float, Number(ge=0)] | None = None
    """Hourly rate (the duration model)."""
    per_unit_usd: Annotated[float, Number(ge=0)] | None = None
    """Price of one unit of ``unit_attribute`` (the usage model)."""
    unit_attribute: str | None = None
    """The span attribute that counts the units."""
    applies_to: Annotated[str, Choice(APPLIES_TO)] | None = None
    """``local_roots`` (once per service segment; default for ``per_hour_usd``) or ``all``."""
    as_of: Name = RULE_AS_OF
    """``cost.price_as_of`` of the spans it prices."""

    @model_validator(mode="after")
    def _one_price(self) -> RuleSettings:
        if self.per_hour_usd is not None and self.per_unit_usd is not None:
            raise invalid("cannot be combined with per_hour_usd", "per_unit_usd")
        if self.per_hour_usd is None and self.per_unit_usd is None:
            raise invalid("is required (or per_unit_usd)", "per_hour_usd")
        if self.unit_attribute is not None:
            if self.per_unit_usd is None:
                raise invalid("is only allowed with per_unit_usd", "unit_attribute")
            if not self.unit_attribute.strip():
                raise invalid("must not be empty", "unit_attribute")
        if self.per_unit_usd is not None and self.applies_to not in (None, "all"):
            raise invalid("must be 'all' for a per_unit_usd rule", "applies_to")
        return self

    @property
    def local_roots_only(self) -> bool:
        """Charged once per service segment (on its local root), not on every span."""
        if self.applies_to is None:
            return bool(self.per_hour_usd)
        return self.applies_to == "local_roots"


def _unique_names(rules: tuple[RuleSettings, ...]) -> tuple[RuleSettings, ...]:
    seen: dict[str, int] = {}
    for index, rule in enumerate(rules):
        if rule.name in seen:
            raise invalid(
                f"duplicate rule name {rule.name!r} (also rules[{seen[rule.name]}])",
                index,
                "name",
            )
        seen[rule.name] = index
    return rules


Rules = Annotated[
    tuple[RuleSettings, ...], list_of("a list of rules"), AfterValidator(_unique_names)
]
"""The rules, in the order they are tried; names unique."""


class RulesSettings(ConfigModel):
    """A section holding only ``rules``."""

    rules: Rules = ()
