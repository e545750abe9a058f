"""The price data model shared by every price source and the pricing core.

A price is a number of US dollars per unit, with where it came from and as of
when. Sources answer lookups purely from memory (the hot path never waits for
the network); `aws.AwsPriceList` and `aws_spot.AwsSpotPrices` refresh their
memory in the background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, runtime_checkable

__all__ = [
    "ARCHES",
    "UNPRICED_REASONS",
    "Arch",
    "Ec2Key",
    "FargatePrice",
    "LambdaPrice",
    "Price",
    "PriceSource",
    "Priced",
    "SpotPriceSource",
    "Unpriced",
    "UnpricedReason",
    "is_valid_price",
]

Arch = Literal["x86_64", "arm64"]
ARCHES: Final[tuple[Arch, ...]] = ("x86_64", "arm64")


@dataclass(frozen=True, slots=True)
class Price:
    """`usd` dollars per `unit`, from `source`, valid as of `as_of` (ISO date or version)."""

    usd: float
    unit: str  # "hour", "gb_second", "request", "vcpu_hour", "gb_hour"
    source: str  # "bundled", "aws_pricelist", "aws_spot", "rule:<name>", ...
    as_of: str


@dataclass(frozen=True, slots=True)
class Ec2Key:
    """An EC2 instance to price: shared tenancy, no pre-installed software.

    `availability_zone` is where it runs, when known. Only spot prices differ by
    zone (`SpotPriceSource`), so it takes no part in equality and hashing: an
    on-demand lookup, and any table or cache keyed by `Ec2Key`, is the same with
    or without it.
    """

    region: str  # "us-east-1"
    instance_type: str  # "m5.large"
    operating_system: str = "Linux"  # "Linux", "Windows", "RHEL", "SUSE"
    availability_zone: str | None = field(default=None, compare=False)  # "us-east-1a"


@dataclass(frozen=True, slots=True)
class LambdaPrice:
    """AWS Lambda: per GB-second of duration and per request, for one architecture."""

    gb_second: Price
    request: Price


@dataclass(frozen=True, slots=True)
class FargatePrice:
    """AWS Fargate: per vCPU-hour and per GB-hour of memory, for one architecture."""

    vcpu_hour: Price
    gb_hour: Price


class PriceSource(Protocol):
    """Answers price lookups from memory; None when it does not know the price.

    Implementations never block on I/O in these methods. Optional extras the
    pricing core uses when present: ``ready`` (bool attribute or property:
    False while a source that loads in the background has nothing yet, so
    misses are reported as ``source_unavailable``), ``close()`` (called when
    the plugin is closed) and ``ec2_spot`` (see `SpotPriceSource`).
    """

    name: str

    def ec2(self, key: Ec2Key) -> Price | None: ...

    def lambda_(self, region: str, arch: Arch) -> LambdaPrice | None: ...

    def fargate(self, region: str, arch: Arch) -> FargatePrice | None: ...

    def knows_region(self, region: str) -> bool: ...


@runtime_checkable
class SpotPriceSource(Protocol):
    """Optional extra of a `PriceSource`: EC2 spot prices (hourly).

    The pricing core asks a source for a spot price only if it has this method;
    otherwise (or on None) it applies the configured spot discount to the
    on-demand price. The key's `Ec2Key.availability_zone` is set when the
    resource says where the node runs.
    """

    def ec2_spot(self, key: Ec2Key) -> Price | None: ...


def is_valid_price(price: object) -> bool:
    """True for a `Price` whose `usd` is a finite, non-negative number (bool refused)."""
    if not isinstance(price, Price):
        return False
    usd = price.usd
    return (
        isinstance(usd, float | int)
        and not isinstance(usd, bool)
        and math.isfinite(usd)
        and usd >= 0
    )


UnpricedReason = Literal[
    "no_resource_info",
    "unknown_instance_type",
    "unknown_region",
    "unknown_model",
    "source_unavailable",
    "bad_attribute",
    "implausible_cost",
    "implausible_tokens",
    "implausible_duration",
    "sidecar_unavailable",
]
"""Why a span could not be priced (the value of ``cost.unpriced_reason``).

``implausible_*``: the span's price, token count or duration is beyond the
configured plausibility limits (`spancost.plugins.cost`, ``limits``): a sender's
number that large is not booked. ``sidecar_unavailable`` is written by the
collector, not by the plugin: the sidecar did not answer for the span's batch
(`spancost.plugin.Ownership`)."""

UNPRICED_REASONS: Final[tuple[UnpricedReason, ...]] = (
    "no_resource_info",
    "unknown_instance_type",
    "unknown_region",
    "unknown_model",
    "source_unavailable",
    "bad_attribute",
    "implausible_cost",
    "implausible_tokens",
    "implausible_duration",
    "sidecar_unavailable",
)


@dataclass(frozen=True, slots=True)
class Priced:
    """A span's price: `usd` (finite, >= 0) and how it was found.

    `source` answered the price ("bundled", "aws_pricelist", "aws_spot",
    "genai-prices", "rule:<name>"), `model` says how it was computed
    ("ec2.on_demand.duration", "llm.tokens", ...), `as_of` when the price was
    valid, `instance_type` what ran the compute (empty when not compute).
    """

    usd: float
    source: str
    model: str
    as_of: str
    instance_type: str = ""


@dataclass(frozen=True, slots=True)
class Unpriced:
    """A span that could not be priced, and why."""

    reason: UnpricedReason
