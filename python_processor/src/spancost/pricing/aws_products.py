"""The AWS Price List API's data, without the API: queries to send and answers to read.

Pure functions: `ec2_query` / `lambda_query` / `fargate_query` say what to ask
``GetProducts`` for, and `ec2_price` / `lambda_prices` / `fargate_prices` turn
the ``PriceList`` items it answered (each one a JSON document in a string) into
`Price` values. `spancost.pricing.aws` does the I/O around them.

A ``PriceList`` item, trimmed to what is read here::

    {"product": {"productFamily": "Compute Instance", "sku": "...",
                 "attributes": {"regionCode": "us-east-1", "instanceType": "t3.xlarge",
                                "operatingSystem": "Linux", "tenancy": "Shared",
                                "preInstalledSw": "NA", "capacitystatus": "Used",
                                "usagetype": "BoxUsage:t3.xlarge", ...}},
     "terms": {"OnDemand": {"<sku>.<offerTermCode>": {
         "effectiveDate": "2024-06-01T00:00:00Z",
         "priceDimensions": {"<sku>.<offerTermCode>.<rateCode>": {
             "unit": "Hrs", "beginRange": "0", "endRange": "Inf",
             "pricePerUnit": {"USD": "0.1664000000"}}}}},
               "Reserved": {...}},
     "publicationDate": "2024-06-13T18:30:00Z", "version": "20240613183000"}

Lambda and Fargate products are told apart by their ``usagetype``, which
carries a region prefix (``USE1-``, ``EU-``, ``APN1-``; none for some
us-east-1 products): ``Lambda-GB-Second``, ``Lambda-GB-Second-ARM``,
``Request``, ``Request-ARM`` (service ``AWSLambda``) and
``Fargate-vCPU-Hours:perCPU``, ``Fargate-GB-Hours``,
``Fargate-ARM-vCPU-Hours:perCPU``, ``Fargate-ARM-GB-Hours`` (service
``AmazonECS``). Anything around those names (``Global-Request``, the free tier;
``Lambda-Edge-Request``; ``SpotUsage:Fargate-...``; ``...-SpotDiscount``) is a
different product and is not matched.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from spancost.errors import SpancostError
from spancost.pricing.model import ARCHES, Arch, Ec2Key, FargatePrice, LambdaPrice, Price

__all__ = [
    "EC2_SERVICE_CODE",
    "ENDPOINT_REGIONS",
    "FARGATE_SERVICE_CODE",
    "LAMBDA_SERVICE_CODE",
    "OPERATING_SYSTEMS",
    "SOURCE_NAME",
    "PriceListError",
    "PriceListFormatError",
    "Query",
    "ec2_price",
    "ec2_prices",
    "ec2_query",
    "ec2_region_query",
    "fargate_prices",
    "fargate_query",
    "is_plausible_instance_type",
    "is_plausible_region",
    "lambda_prices",
    "lambda_query",
]

SOURCE_NAME: Final = "aws_pricelist"

# The regions that serve the Price List Query API; each answers for every region.
ENDPOINT_REGIONS: Final = ("us-east-1", "eu-central-1", "ap-south-1")

EC2_SERVICE_CODE: Final = "AmazonEC2"
LAMBDA_SERVICE_CODE: Final = "AWSLambda"
FARGATE_SERVICE_CODE: Final = "AmazonECS"

# The `operatingSystem` values of AmazonEC2 compute products.
OPERATING_SYSTEMS: Final = (
    "Linux",
    "Windows",
    "RHEL",
    "Red Hat Enterprise Linux with HA",
    "SUSE",
    "Ubuntu Pro",
)

# What every EC2 price here means: on-demand, shared tenancy, no pre-installed
# software (SQL Server, ...), a running instance (not an unused reservation),
# the licence included (not BYOL).
_EC2_FIXED_FILTERS: Final = (
    ("tenancy", "Shared"),
    ("preInstalledSw", "NA"),
    ("capacitystatus", "Used"),
    ("licenseModel", "No License required"),
    ("marketoption", "OnDemand"),
)

_REGION_RE: Final = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")
_INSTANCE_TYPE_RE: Final = re.compile(r"[a-z][a-z0-9-]*\.[a-z0-9-]+")
# A usage type's region prefix: USE1-, EU-, APN1-, UGW1-, ...; "Global-" and
# "Lambda-Edge-" are not one (lower-case letters).
_PREFIX: Final = r"(?:[A-Z]{2,}[0-9]*-)?"
_LAMBDA_USAGE: Final[dict[tuple[Arch, str], re.Pattern[str]]] = {
    ("x86_64", "gb_second"): re.compile(_PREFIX + r"Lambda-GB-Second"),
    ("arm64", "gb_second"): re.compile(_PREFIX + r"Lambda-GB-Second-ARM"),
    ("x86_64", "request"): re.compile(_PREFIX + r"Request"),
    ("arm64", "request"): re.compile(_PREFIX + r"Request-ARM"),
}
_FARGATE_USAGE: Final[dict[tuple[Arch, str], re.Pattern[str]]] = {
    ("x86_64", "vcpu_hour"): re.compile(_PREFIX + r"Fargate-vCPU-Hours:perCPU"),
    ("arm64", "vcpu_hour"): re.compile(_PREFIX + r"Fargate-ARM-vCPU-Hours:perCPU"),
    ("x86_64", "gb_hour"): re.compile(_PREFIX + r"Fargate-GB-Hours"),
    ("arm64", "gb_hour"): re.compile(_PREFIX + r"Fargate-ARM-GB-Hours"),
}


class PriceListError(SpancostError):
    """The AWS Price List API could not be asked, or failed to answer."""


class PriceListFormatError(PriceListError):
    """The AWS Price List API answered something that is not a price list item."""


@dataclass(frozen=True, slots=True)
class Query:
    """One ``GetProducts`` request: a service code and TERM_MATCH filters (field, value)."""

    service_code: str
    filters: tuple[tuple[str, str], ...]


def is_plausible_region(region: str) -> bool:
    """Whether `region` looks like an AWS region code (``us-east-1``), so asking is worth it."""
    return _REGION_RE.fullmatch(region) is not None


def is_plausible_instance_type(instance_type: str) -> bool:
    """Whether `instance_type` looks like an EC2 instance type (``m5.large``)."""
    return _INSTANCE_TYPE_RE.fullmatch(instance_type) is not None


def ec2_query(key: Ec2Key) -> Query:
    """The on-demand price of one EC2 instance type in one region, for one OS."""
    return Query(
        EC2_SERVICE_CODE,
        (
            ("regionCode", key.region),
            ("instanceType", key.instance_type),
            ("operatingSystem", key.operating_system),
            *_EC2_FIXED_FILTERS,
        ),
    )


def lambda_query(region: str) -> Query:
    """Every Lambda product of a region (a few dozen); both architectures come in one answer."""
    return Query(LAMBDA_SERVICE_CODE, (("regionCode", region),))


def fargate_query(region: str) -> Query:
    """Every ECS product of a region (Fargate and a few others); both architectures at once."""
    return Query(FARGATE_SERVICE_CODE, (("regionCode", region),))


@dataclass(frozen=True, slots=True)
class _Dimension:
    usd: float
    unit: str
    begin_range: float
    as_of: str


@dataclass(frozen=True, slots=True)
class _Product:
    attributes: Mapping[str, Any]
    dimensions: tuple[_Dimension, ...]


def ec2_region_query(region: str, operating_system: str) -> Query:
    """Every instance type's on-demand price in one region for one OS (for the snapshot)."""
    return Query(
        EC2_SERVICE_CODE,
        (("regionCode", region), ("operatingSystem", operating_system), *_EC2_FIXED_FILTERS),
    )


def ec2_price(items: Iterable[str | Mapping[str, Any]], key: Ec2Key) -> Price | None:
    """The hourly on-demand price of `key` in a ``GetProducts`` answer; None if absent."""
    return ec2_prices(items, key.region, key.operating_system, key.instance_type).get(
        key.instance_type
    )


def ec2_prices(
    items: Iterable[str | Mapping[str, Any]],
    region: str,
    operating_system: str,
    instance_type: str | None = None,
) -> dict[str, Price]:
    """Hourly on-demand prices by instance type in a ``GetProducts`` answer.

    Products that are not on-demand, shared, without software, licence included,
    running, in `region` for `operating_system` (whatever the filters sent) are
    ignored. When an instance type still has several, a ``BoxUsage`` usage type
    and a non-zero price win.
    """
    wanted = {"regionCode": region, "operatingSystem": operating_system, **dict(_EC2_FIXED_FILTERS)}
    if instance_type is not None:
        wanted["instanceType"] = instance_type
    best: dict[str, tuple[tuple[bool, bool], Price]] = {}
    for product in _products(items):
        attributes = product.attributes
        if any(attributes.get(name, value) != value for name, value in wanted.items()):
            continue
        # A product that lacks one of the fields filtered on cannot be told apart.
        if any(
            name not in attributes for name in ("regionCode", "instanceType", "operatingSystem")
        ):
            continue
        found_type = str(attributes["instanceType"])
        box_usage = "BoxUsage" in str(attributes.get("usagetype", "BoxUsage"))
        for dimension in product.dimensions:
            if dimension.unit != "Hrs":
                continue
            rank = (box_usage, dimension.usd > 0)
            if found_type not in best or rank > best[found_type][0]:
                price = Price(dimension.usd, "hour", SOURCE_NAME, dimension.as_of)
                best[found_type] = (rank, price)
    return {name: price for name, (_, price) in best.items()}


def lambda_prices(items: Iterable[str | Mapping[str, Any]], region: str) -> dict[Arch, LambdaPrice]:
    """Lambda's GB-second (first tier) and request prices of `region`, by architecture.

    An architecture is present only when both of its prices are.
    """
    found = _by_usage_type(items, region, _LAMBDA_USAGE)
    result: dict[Arch, LambdaPrice] = {}
    for arch in ARCHES:
        duration, request = found.get((arch, "gb_second")), found.get((arch, "request"))
        if duration is not None and request is not None:
            result[arch] = LambdaPrice(
                gb_second=Price(duration.usd, "gb_second", SOURCE_NAME, duration.as_of),
                request=Price(request.usd, "request", SOURCE_NAME, request.as_of),
            )
    return result


def fargate_prices(
    items: Iterable[str | Mapping[str, Any]], region: str
) -> dict[Arch, FargatePrice]:
    """Fargate's vCPU-hour and GB-hour prices of `region` (Linux, on-demand), by architecture."""
    found = _by_usage_type(items, region, _FARGATE_USAGE)
    result: dict[Arch, FargatePrice] = {}
    for arch in ARCHES:
        vcpu, memory = found.get((arch, "vcpu_hour")), found.get((arch, "gb_hour"))
        if vcpu is not None and memory is not None:
            result[arch] = FargatePrice(
                vcpu_hour=Price(vcpu.usd, "vcpu_hour", SOURCE_NAME, vcpu.as_of),
                gb_hour=Price(memory.usd, "gb_hour", SOURCE_NAME, memory.as_of),
            )
    return result


def _by_usage_type(
    items: Iterable[str | Mapping[str, Any]],
    region: str,
    patterns: Mapping[tuple[Arch, str], re.Pattern[str]],
) -> dict[tuple[Arch, str], _Dimension]:
    """For each pattern, the first tier (lowest ``beginRange``) of the product it names."""
    found: dict[tuple[Arch, str], _Dimension] = {}
    for product in _products(items):
        if product.attributes.get("regionCode", region) != region or not product.dimensions:
            continue
        usage_type = str(product.attributes.get("usagetype", ""))
        for name, pattern in patterns.items():
            if pattern.fullmatch(usage_type):
                first = min(product.dimensions, key=lambda d: d.begin_range)
                if name not in found or first.begin_range < found[name].begin_range:
                    found[name] = first
    return found


def _products(items: Iterable[str | Mapping[str, Any]]) -> Iterable[_Product]:
    for index, item in enumerate(items):
        yield _product(item, index)


def _product(item: str | Mapping[str, Any], index: int) -> _Product:
    """One price list item, read; `PriceListFormatError` when it is not one."""
    where = f"PriceList[{index}]"
    if isinstance(item, str):
        try:
            document = json.loads(item)
        except ValueError as exc:
            raise PriceListFormatError(f"{where} is not JSON: {exc}") from exc
    else:
        document = item
    if not isinstance(document, Mapping):
        raise PriceListFormatError(f"{where} is not a JSON object")
    product = _mapping(document, "product", where)
    attributes = _mapping(product, "attributes", f"{where}.product")
    terms = document.get("terms", {})
    on_demand = terms.get("OnDemand", {}) if isinstance(terms, Mapping) else {}
    if not isinstance(on_demand, Mapping):
        raise PriceListFormatError(f"{where}.terms.OnDemand is not an object")
    published = str(document.get("publicationDate") or document.get("version") or "")
    dimensions: list[_Dimension] = []
    for term_code, term in on_demand.items():
        term_where = f"{where}.terms.OnDemand.{term_code}"
        if not isinstance(term, Mapping):
            raise PriceListFormatError(f"{term_where} is not an object")
        as_of = _as_of(str(term.get("effectiveDate") or published))
        for rate_code, dimension in _mapping(term, "priceDimensions", term_where).items():
            dimension_where = f"{term_where}.priceDimensions.{rate_code}"
            if not isinstance(dimension, Mapping):
                raise PriceListFormatError(f"{dimension_where} is not an object")
            usd = _mapping(dimension, "pricePerUnit", dimension_where).get("USD")
            if usd is None:
                continue  # priced in another currency only (China regions)
            dimensions.append(
                _Dimension(
                    usd=_number(usd, f"{dimension_where}.pricePerUnit.USD"),
                    unit=str(dimension.get("unit", "")),
                    begin_range=_number(
                        dimension.get("beginRange", "0"), f"{dimension_where}.beginRange"
                    ),
                    as_of=as_of,
                )
            )
    return _Product(attributes, tuple(dimensions))


def _as_of(stamp: str) -> str:
    """``2024-06-01T00:00:00Z`` → ``2024-06-01``: prices take effect on a date."""
    if re.match(r"\d{4}-\d{2}-\d{2}(?:T|$)", stamp):
        return stamp[:10]
    return stamp or "unknown"


def _mapping(parent: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = parent.get(name)
    if not isinstance(value, Mapping):
        raise PriceListFormatError(f"{where}.{name} is missing or not an object")
    return value


def _number(value: object, where: str) -> float:
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise PriceListFormatError(f"{where} is not a number: {value!r}") from exc
    if math.isnan(number) or number < 0:
        raise PriceListFormatError(f"{where} is not a price: {value!r}")
    return number
