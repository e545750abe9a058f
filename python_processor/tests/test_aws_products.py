"""The pure half of the AWS price source: queries and the reading of PriceList items."""

from __future__ import annotations

import json

import pytest

from spancost.config import parse_duration
from spancost.errors import ConfigError
from spancost.pricing.aws_products import (
    PriceListFormatError,
    ec2_price,
    ec2_query,
    fargate_prices,
    fargate_query,
    is_plausible_instance_type,
    is_plausible_region,
    lambda_prices,
    lambda_query,
)
from spancost.pricing.model import Ec2Key, Price
from tests.fake_pricelist import ec2_product, fargate_products, lambda_products

T3_XLARGE = Ec2Key("us-east-1", "t3.xlarge")

# A real GetProducts item (af-south-1, trimmed of nothing): an unused capacity
# reservation, which is not the on-demand price of a running instance.
UNUSED_RESERVATION_ITEM = json.dumps(
    {
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "capacitystatus": "UnusedCapacityReservation",
                "operatingSystem": "Linux",
                "regionCode": "af-south-1",
                "instanceType": "c5ad.2xlarge",
                "tenancy": "Shared",
                "usagetype": "AFS1-UnusedBox:c5ad.2xlarge",
                "licenseModel": "No License required",
                "preInstalledSw": "NA",
                "location": "Africa (Cape Town)",
                "marketoption": "OnDemand",
                "operation": "RunInstances",
            },
            "sku": "2257YY4K7BWZ4F46",
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                "2257YY4K7BWZ4F46.JRTCKXETXF": {
                    "priceDimensions": {
                        "2257YY4K7BWZ4F46.JRTCKXETXF.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "endRange": "Inf",
                            "beginRange": "0",
                            "pricePerUnit": {"USD": "0.4680000000"},
                        }
                    },
                    "effectiveDate": "2024-04-01T00:00:00Z",
                }
            }
        },
        "version": "20240508191027",
        "publicationDate": "2024-05-08T19:10:27Z",
    }
)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("1h", 3600), ("1h30m", 5400), ("250ms", 0.25), ("1.5h", 5400)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text, "x.refresh") == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "15", "15 minutes", "m", "1d", "0s", "-5m", "5m3", " h"])
def test_parse_duration_refuses(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_duration(text, "prices.aws_pricelist.refresh")
    assert info.value.key == "prices.aws_pricelist.refresh"


def test_parse_duration_refuses_numbers() -> None:
    with pytest.raises(ConfigError, match="must be a duration such as '15m', got integer"):
        parse_duration(900, "refresh")


def test_ec2_query_is_on_demand_shared_no_software() -> None:
    query = ec2_query(Ec2Key("eu-west-1", "m5.large", "Windows"))
    assert query.service_code == "AmazonEC2"
    assert dict(query.filters) == {
        "regionCode": "eu-west-1",
        "instanceType": "m5.large",
        "operatingSystem": "Windows",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
        "marketoption": "OnDemand",
    }


def test_lambda_and_fargate_queries_take_a_whole_region() -> None:
    assert lambda_query("us-west-2").service_code == "AWSLambda"
    assert fargate_query("us-west-2").service_code == "AmazonECS"
    assert dict(lambda_query("us-west-2").filters) == {"regionCode": "us-west-2"}
    assert dict(fargate_query("us-west-2").filters) == {"regionCode": "us-west-2"}


def test_ec2_price_reads_the_on_demand_term_of_a_json_string() -> None:
    item = json.dumps(ec2_product("t3.xlarge", "us-east-1", 0.1664))
    assert ec2_price([item], T3_XLARGE) == Price(0.1664, "hour", "aws_pricelist", "2024-06-01")


def test_ec2_price_ignores_products_of_another_kind() -> None:
    items = [
        json.dumps(ec2_product("t3.xlarge", "us-east-1", 9.0, operating_system="Windows")),
        json.dumps(ec2_product("t3.xlarge", "us-east-1", 9.0, tenancy="Dedicated")),
        json.dumps(ec2_product("t3.xlarge", "us-east-1", 9.0, pre_installed_sw="SQL Std")),
        json.dumps(
            ec2_product("t3.xlarge", "us-east-1", 9.0, capacity_status="UnusedCapacityReservation")
        ),
        json.dumps(
            ec2_product("t3.xlarge", "us-east-1", 9.0, license_model="Bring your own license")
        ),
        json.dumps(ec2_product("t3.xlarge", "us-west-2", 9.0)),
        json.dumps(ec2_product("t3.large", "us-east-1", 9.0)),
        json.dumps(ec2_product("t3.xlarge", "us-east-1", 0.1664)),
    ]
    price = ec2_price(items, T3_XLARGE)
    assert price is not None
    assert price.usd == 0.1664


def test_ec2_price_none_when_absent() -> None:
    assert ec2_price([], T3_XLARGE) is None
    assert ec2_price([UNUSED_RESERVATION_ITEM], Ec2Key("af-south-1", "c5ad.2xlarge")) is None


def test_ec2_price_as_of_falls_back_to_the_publication_date() -> None:
    product = ec2_product("t3.xlarge", "us-east-1", 0.1664)
    for term in product["terms"]["OnDemand"].values():
        del term["effectiveDate"]
    price = ec2_price([product], T3_XLARGE)
    assert price is not None
    assert price.as_of == "2024-06-13"


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("not json", "PriceList\\[0\\] is not JSON"),
        ("[1, 2]", "is not a JSON object"),
        ('{"terms": {}}', "product is missing"),
        (
            json.dumps(ec2_product("t3.xlarge", "us-east-1", 0.1)).replace(
                '"0.1000000000"', '"n/a"'
            ),
            "pricePerUnit.USD is not a number",
        ),
    ],
)
def test_ec2_price_refuses_malformed_items(item: str, message: str) -> None:
    with pytest.raises(PriceListFormatError, match=message):
        ec2_price([item], T3_XLARGE)


@pytest.mark.parametrize("region", ["us-east-1", "eu-west-1"])
def test_lambda_prices_first_tier_of_each_architecture(region: str) -> None:
    items = [json.dumps(p) for p in lambda_products(region)]
    prices = lambda_prices(items, region)
    assert prices["x86_64"].gb_second == Price(
        0.0000166667, "gb_second", "aws_pricelist", "2024-05-01"
    )
    assert prices["arm64"].gb_second.usd == 0.0000133334
    assert prices["x86_64"].request == Price(0.0000002, "request", "aws_pricelist", "2024-05-01")
    assert prices["arm64"].request.usd == 0.0000002


def test_lambda_usage_types_without_a_region_prefix() -> None:
    """Some us-east-1 Lambda products carry no region prefix at all."""
    products = lambda_products("us-east-1")
    for product in products:
        attributes = product["product"]["attributes"]
        attributes["usagetype"] = attributes["usagetype"].removeprefix("USE1-")
    prices = lambda_prices(products, "us-east-1")
    assert prices["x86_64"].gb_second.usd == 0.0000166667
    assert prices["x86_64"].request.usd == 0.0000002


def test_lambda_prices_skip_an_incomplete_architecture_and_other_regions() -> None:
    products = [
        p
        for p in lambda_products("us-west-2")
        if not p["product"]["attributes"]["usagetype"].endswith("Request-ARM")
    ]
    prices = lambda_prices(products, "us-west-2")
    assert set(prices) == {"x86_64"}
    assert lambda_prices(products, "eu-west-1") == {}


def test_fargate_prices_by_architecture() -> None:
    prices = fargate_prices([json.dumps(p) for p in fargate_products("us-east-1")], "us-east-1")
    assert prices["x86_64"].vcpu_hour == Price(0.04048, "vcpu_hour", "aws_pricelist", "2024-04-01")
    assert prices["x86_64"].gb_hour.usd == 0.004445
    assert prices["arm64"].vcpu_hour.usd == 0.03238
    assert prices["arm64"].gb_hour == Price(0.00356, "gb_hour", "aws_pricelist", "2024-04-01")


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("us-east-1", True),
        ("us-gov-west-1", True),
        ("ap-southeast-7", True),
        ("global", False),
        ("US-EAST-1", False),
    ],
)
def test_plausible_region(value: str, ok: bool) -> None:
    assert is_plausible_region(value) is ok


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("m5.large", True),
        ("u-6tb1.metal", True),
        ("mac2-m2pro.metal", True),
        ("m5", False),
        ("m5.large; x", False),
    ],
)
def test_plausible_instance_type(value: str, ok: bool) -> None:
    assert is_plausible_instance_type(value) is ok
