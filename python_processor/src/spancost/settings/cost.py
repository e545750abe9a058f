"""``spancost.cost``'s configuration (see `spancost.plugins.cost` and the README)."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, model_validator

from spancost.config import (
    Choice,
    ConfigModel,
    Duration,
    Name,
    NameList,
    Number,
    default,
    invalid,
)
from spancost.pricing.compute import normalize_arch
from spancost.settings.node_facts import NodeFactsSettings
from spancost.settings.prices import PricesSettings
from spancost.settings.rules import Rules
from spancost.vocabulary.keys import AWS_EC2_INSTANCE_LIFECYCLE
from spancost.vocabulary.limits import MAX_DURATION_NS, MAX_SPAN_USD, MAX_TOKENS

__all__ = [
    "CostSettings",
    "FargateSettings",
    "FargateTaskSettings",
    "LambdaSettings",
    "LimitsSettings",
    "LlmSettings",
    "SpotSettings",
]


class SpotSettings(ConfigModel):
    """What marks a spot instance, and its discount when no live spot price answers."""

    attribute: Name = AWS_EC2_INSTANCE_LIFECYCLE
    """The resource attribute that marks a spot instance."""
    values: NameList = Field(("spot",), min_length=1)
    """Its values meaning spot (any case); a boolean ``true`` counts too."""
    discount: Annotated[float, Number(ge=0, lt=1)] = 0.7
    """Fraction off the on-demand price on spot (0.7: pay 30 %)."""


class LimitsSettings(ConfigModel):
    """Plausibility: beyond these a span is not booked but counted unpriced."""

    max_span_usd: Annotated[float, Number(ge=0, gt=0, le=MAX_SPAN_USD)] = 1000
    max_tokens: Annotated[float, Number(ge=0, gt=0, le=MAX_TOKENS)] = 2_000_000
    max_duration: Duration = default("24h")
    """Compute is not charged for a span longer than this (at most 366 days)."""

    @model_validator(mode="after")
    def _duration_in_range(self) -> LimitsSettings:
        if not 0 < round(self.max_duration * 1e9) <= MAX_DURATION_NS:
            raise invalid("must be positive and at most 366 days", "max_duration")
        return self


def _service_names(services: dict[str, FargateTaskSettings]) -> dict[str, FargateTaskSettings]:
    for name in services:
        if not name.strip():
            raise invalid("service name must not be empty", name)
    return services


def _arch(arch: str) -> str:
    if normalize_arch(arch) is None:
        raise invalid(f"must be x86_64 or arm64, got {arch!r}")
    return arch


class FargateTaskSettings(ConfigModel):
    """The task size of a service whose resource does not carry it."""

    vcpu: Annotated[float, Number(le=16.0, ge=0, gt=0)]
    memory_gb: Annotated[float, Number(le=120.0, ge=0, gt=0)]
    arch: Annotated[str, AfterValidator(_arch)] = "x86_64"
    """``x86_64`` or ``arm64``."""


class FargateSettings(ConfigModel):
    services: Annotated[dict[str, FargateTaskSettings], AfterValidator(_service_names)] = default(
        {}
    )
    """``service.name`` -> its Fargate task size; a listed service is priced as Fargate."""


class LambdaSettings(ConfigModel):
    max_memory_unit: Annotated[
        str, Choice(("auto", "bytes", "mb"), message="must be auto, bytes or mb")
    ] = "auto"
    """The unit of ``faas.max_memory``."""


class LlmSettings(ConfigModel):
    enabled: bool = True
    """Price ``gen_ai.*`` token usage with genai-prices."""


class CostSettings(ConfigModel):
    """Prices every span and writes the price on it."""

    prices: PricesSettings = default({})
    rules: Rules = ()
    minimum_charge_usd: Annotated[float, Number(ge=0, le=1)] = 0.0
    """Least ``cost.usd`` of a span that carries a charge."""
    trust_upstream: bool = False
    """Leave untouched the spans that already carry a ``cost.usd`` double."""
    spot: SpotSettings = default({})
    fargate: FargateSettings = default({})
    lambda_: LambdaSettings = default({}, alias="lambda")
    llm: LlmSettings = default({})
    limits: LimitsSettings = default({})
    node_facts: NodeFactsSettings | None = None
