"""EC2 spot prices without the API: what to ask ``DescribeSpotPriceHistory``, how to read it.

Pure functions: `spot_query` says what to ask for one instance type and
operating system in one region, `spot_prices` turns the ``SpotPriceHistory``
items of the answer into `SpotPrices`: the price in effect in each availability
zone, and the price of the region for a node whose zone is not known.
`spancost.pricing.aws_spot` does the I/O around them.

An item as boto3 returns it (``spotPriceHistorySet/item`` in the XML)::

    {"AvailabilityZone": "us-east-1a", "InstanceType": "m5.large",
     "ProductDescription": "Linux/UNIX", "SpotPrice": "0.035800",
     "Timestamp": datetime.datetime(2025, 6, 1, 11, 52, 7, tzinfo=tzutc())}

The query's ``StartTime`` and ``EndTime`` are both "now": the API then answers,
for each zone, the last price change before that moment, which is the price in
effect (its ``Timestamp`` says when it took effect, possibly days ago).

**A zone that is not known** gets the mean of the zones' prices. Spot prices
differ by zone, and with the zone unknown any one of them is a guess; the mean is
the one whose errors cancel in a sum. Budgets add prices over many nodes, and
node groups (EC2 Auto Scaling, EKS managed node groups, Karpenter with topology
spread) balance their nodes across zones, so the mean books their spend right
where the highest price would book every such node at the dearest zone's rate.
The error on one node is at most the spread between zones, and it is gone as soon
as the zone is known (``cloud.availability_zone``, from node facts).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from spancost.errors import SpancostError
from spancost.pricing.model import Price

__all__ = [
    "PRODUCT_DESCRIPTIONS",
    "SOURCE_NAME",
    "SpotKey",
    "SpotPriceError",
    "SpotPriceFormatError",
    "SpotPrices",
    "SpotQuery",
    "spot_prices",
    "spot_query",
]

SOURCE_NAME: Final = "aws_spot"

PRODUCT_DESCRIPTIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "Linux": ("Linux/UNIX", "Linux/UNIX (Amazon VPC)"),
    "Windows": ("Windows", "Windows (Amazon VPC)"),
}
"""The ``ProductDescriptions`` asked for each operating system (`Ec2Key.operating_system`).

Both names of each: the "(Amazon VPC)" ones date from EC2-Classic, and an
account may see its prices under either; in each zone the latest price wins. The
other operating systems of the Price List (RHEL, SUSE, Ubuntu Pro) carry a
licence on top of the spot price: they are not asked, and the spot discount
applies to their on-demand price."""


class SpotPriceError(SpancostError):
    """The EC2 spot price history could not be asked, or failed to answer."""


class SpotPriceFormatError(SpotPriceError):
    """The EC2 spot price history answered an item that is not a spot price."""


@dataclass(frozen=True, slots=True)
class SpotKey:
    """What one query prices: an instance type running an operating system in a region."""

    region: str
    instance_type: str
    operating_system: str  # a key of PRODUCT_DESCRIPTIONS


@dataclass(frozen=True, slots=True)
class SpotQuery:
    """One ``DescribeSpotPriceHistory`` request, sent to the region's endpoint."""

    instance_types: tuple[str, ...]
    product_descriptions: tuple[str, ...]
    at: dt.datetime  # StartTime and EndTime: the prices in effect at this moment


@dataclass(frozen=True, slots=True)
class SpotPrices:
    """The spot prices of one `SpotKey`: by zone, and the region's (the zones' mean)."""

    zones: Mapping[str, Price]
    region: Price

    def for_zone(self, zone: str | None) -> Price:
        """The zone's price; the region's when the zone is unknown or has none here
        (another region's zone, a typo, a zone without this instance type)."""
        if zone is not None:
            price = self.zones.get(zone)
            if price is not None:
                return price
        return self.region


def spot_query(key: SpotKey, now: dt.datetime) -> SpotQuery:
    """What to ask for `key` at `now` (UTC). `SpotPriceError` for an OS without spot prices."""
    descriptions = PRODUCT_DESCRIPTIONS.get(key.operating_system)
    if descriptions is None:
        raise SpotPriceError(f"no spot price history for operating system {key.operating_system!r}")
    return SpotQuery((key.instance_type,), descriptions, now)


def spot_prices(items: Iterable[Mapping[str, Any]], key: SpotKey) -> SpotPrices | None:
    """The prices in effect by zone, from the answer's items; None if it has none for `key`.

    Items for another instance type or operating system are not `key`'s and are
    left out; in each zone the latest item wins. Raises `SpotPriceFormatError`
    for an item of `key` without a zone, a time or a finite price >= 0.
    """
    descriptions = PRODUCT_DESCRIPTIONS.get(key.operating_system, ())
    latest: dict[str, tuple[dt.datetime, float]] = {}
    for index, item in enumerate(items):
        if (
            item.get("InstanceType") != key.instance_type
            or item.get("ProductDescription") not in descriptions
        ):
            continue
        where = f"SpotPriceHistory[{index}]"
        zone = item.get("AvailabilityZone")
        if not isinstance(zone, str) or not zone:
            raise SpotPriceFormatError(f"{where}: no AvailabilityZone")
        stamp = item.get("Timestamp")
        if not isinstance(stamp, dt.datetime) or stamp.tzinfo is None:
            raise SpotPriceFormatError(f"{where}: Timestamp is not a time, got {stamp!r}")
        usd = _usd(item.get("SpotPrice"), where)
        seen = latest.get(zone)
        if seen is None or stamp > seen[0]:
            latest[zone] = (stamp, usd)
    if not latest:
        return None
    zones = {zone: _price(usd, stamp) for zone, (stamp, usd) in sorted(latest.items())}
    mean = math.fsum(usd for _, usd in latest.values()) / len(latest)
    newest = max(stamp for stamp, _ in latest.values())
    return SpotPrices(zones, _price(mean, newest))


def _usd(value: object, where: str) -> float:
    try:
        usd = float(value) if isinstance(value, str) else math.nan
    except ValueError:
        usd = math.nan
    if not math.isfinite(usd) or usd < 0:
        raise SpotPriceFormatError(f"{where}: SpotPrice is not a price, got {value!r}")
    return usd


def _price(usd: float, stamp: dt.datetime) -> Price:
    """A spot price per hour, as of the moment it took effect (UTC, to the second)."""
    as_of = stamp.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Price(usd, "hour", SOURCE_NAME, as_of)
