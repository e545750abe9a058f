"""``currency``: the table that converts US dollars for reports and budgets (see
`spancost.pricing.fx`)."""

from __future__ import annotations

import math
import os
import re
from typing import Annotated, Final

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema, model_validator

from spancost.config import ConfigModel, Duration, default, describe_type, invalid

__all__ = [
    "CODE_RE",
    "DEFAULT_MAX_CHANGE",
    "USD",
    "CurrencySettings",
    "FxSourceSettings",
    "is_rate",
]

USD: Final = "USD"
CODE_RE: Final = re.compile(r"[A-Z]{3}")
DEFAULT_MAX_CHANGE: Final = 0.25


def is_rate(value: object) -> bool:
    """A positive finite number (not a boolean)."""
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and value > 0
    )


def _https(url: str) -> str:
    if not re.match(r"https://[^/\s:]", url):
        raise invalid(f"must be an https:// URL (budgets act on these rates), got {url!r}")
    return url


def _max_change(value: object) -> object:
    if not is_rate(value):
        raise invalid(f"must be a positive number, got {describe_type(value)} {value!r}")
    return float(value)  # type: ignore[arg-type]


def _ca_file(path: str) -> str:
    if path and not os.path.isfile(path):
        raise invalid(f"no such file: {path!r}")
    return path


class FxSourceSettings(ConfigModel):
    """Fresher rates from a URL (a JSON document of USD -> X ``rates``), over https."""

    url: Annotated[str, AfterValidator(_https)]
    refresh: Duration = default("1h")
    timeout: Duration = default("10s")
    max_change: Annotated[
        float,
        BeforeValidator(_max_change),
        WithJsonSchema({"type": "number", "exclusiveMinimum": 0}),
    ] = DEFAULT_MAX_CHANGE
    """A fetched rate more than a factor of 1 + max_change from the one in use is refused."""
    ca_file: Annotated[str, AfterValidator(_ca_file)] = ""
    """A private CA for the source's certificate."""


def _rates(rates: object) -> object:
    if not isinstance(rates, dict):
        return rates  # the dict type says what is wrong
    checked: dict[str, float] = {}
    for code, rate in rates.items():
        if not isinstance(code, str) or not CODE_RE.fullmatch(code):
            raise invalid("must be an ISO 4217 currency code in capitals, such as EUR", code)
        if not is_rate(rate):
            raise invalid(
                f"must be a positive number (1 USD in {code}), got {describe_type(rate)} {rate!r}",
                code,
            )
        if code == USD and rate != 1:
            raise invalid("USD is the base currency; its rate is 1", code)
        checked[code] = float(rate)
    return checked


class CurrencySettings(ConfigModel):
    """The currency reports and budgets are shown in, and its rates."""

    code: str = USD
    """The currency to show (ISO 4217, any case)."""
    rates: Annotated[
        dict[str, float],
        BeforeValidator(_rates),
        WithJsonSchema(
            {
                "type": "object",
                "propertyNames": {"pattern": "^[A-Z]{3}$"},
                "additionalProperties": {"type": "number", "exclusiveMinimum": 0},
            }
        ),
    ] = default({})
    """1 USD in each currency (``EUR: 0.92``): the start and the fallback."""
    source: FxSourceSettings | None = None

    @model_validator(mode="after")
    def _code_has_a_rate(self) -> CurrencySettings:
        code = self.code.strip().upper()
        if not CODE_RE.fullmatch(code):
            raise invalid(f"must be an ISO 4217 code such as EUR, got {code!r}", "code")
        if code != USD and code not in self.rates:
            raise invalid(
                f"no rate for {code}: add currency.rates.{code} "
                "(the configured rates are the fallback when the source cannot be reached)",
                "code",
            )
        return self

    @property
    def currency(self) -> str:
        """`code` as it is compared: stripped, in capitals."""
        return self.code.strip().upper()
