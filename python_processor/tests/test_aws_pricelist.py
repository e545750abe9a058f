"""`AwsPriceList` with a real boto3 client against the fake Price List API on 127.0.0.1."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from spancost.errors import ConfigError
from spancost.pricing.aws import AwsPriceList, AwsPriceListConfig
from spancost.pricing.model import Ec2Key, Price, PriceSource
from tests.fake_pricelist import (
    FakePriceList,
    ec2_product,
    fargate_products,
    lambda_products,
    offline_aws_env,
    serve,
)

T3_XLARGE = Ec2Key("us-east-1", "t3.xlarge")
M5_LARGE_WINDOWS = Ec2Key("eu-west-1", "m5.large", "Windows")

PRODUCTS = [
    ec2_product("t3.xlarge", "us-east-1", 0.1664),
    ec2_product("t3.xlarge", "us-east-1", 0.3, operating_system="Windows"),
    ec2_product("t3.xlarge", "us-east-1", 0.5, tenancy="Dedicated"),
    ec2_product("m5.large", "eu-west-1", 0.2, operating_system="Windows"),
    ec2_product("m5.large", "eu-west-1", 0.107),
    *lambda_products("us-east-1"),
    *fargate_products("us-east-1"),
]

MakeSource = Callable[..., AwsPriceList]


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakePriceList]:
    offline_aws_env(monkeypatch)
    with serve(PRODUCTS, page_size=1) as server:
        yield server


@pytest.fixture
def make_source(fake: FakePriceList) -> Iterator[MakeSource]:
    sources: list[AwsPriceList] = []

    def make(**overrides: Any) -> AwsPriceList:
        config = {
            "enabled": True,
            "endpoint_url": fake.url,
            "refresh": "30s",
            "max_attempts": 3,
            "timeout": "2s",
            **overrides,
        }
        source = AwsPriceList(config)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def test_is_a_price_source(make_source: MakeSource) -> None:
    source: PriceSource = make_source()
    assert source.name == "aws_pricelist"


def test_cold_miss_answers_at_once_then_the_background_fills_the_cache(
    fake: FakePriceList, make_source: MakeSource
) -> None:
    fake.answering.clear()  # the API holds the fetch until the test lets it answer
    source = make_source()
    assert source.ec2(T3_XLARGE) is None
    # Answered while the API still holds the fetch: the lookup did not wait for it.
    assert not source.wait_until_idle(0), "no fetch was left to the background"
    assert source.failures == 0
    assert source.misses == 1
    fake.answering.set()
    assert source.wait_until_idle(5)
    assert source.ec2(T3_XLARGE) == Price(0.1664, "hour", "aws_pricelist", "2024-06-01")
    assert (source.fetches, source.failures, source.hits) == (1, 0, 1)


def test_filters_sent_are_exactly_the_on_demand_shared_ones(
    fake: FakePriceList, make_source: MakeSource
) -> None:
    source = make_source()
    source.ec2(M5_LARGE_WINDOWS)
    assert source.wait_until_idle(5)
    assert source.ec2(M5_LARGE_WINDOWS) == Price(0.2, "hour", "aws_pricelist", "2024-06-01")
    (request,) = fake.get_products_requests()
    assert request.body["ServiceCode"] == "AmazonEC2"
    assert request.body["FormatVersion"] == "aws_v1"
    assert all(f["Type"] == "TERM_MATCH" for f in request.body["Filters"])
    assert request.filters() == {
        "regionCode": "eu-west-1",
        "instanceType": "m5.large",
        "operatingSystem": "Windows",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
        "marketoption": "OnDemand",
    }
    assert request.headers["content-type"] == "application/x-amz-json-1.1"
    assert request.headers["x-amz-target"] == "AWSPriceListService.GetProducts"
    # Signed by a real client, for the Price List endpoint's region.
    assert "/us-east-1/pricing/aws4_request" in request.headers["authorization"]


def test_pagination_follows_next_token(fake: FakePriceList, make_source: MakeSource) -> None:
    source = make_source()
    assert source.lambda_("us-east-1", "arm64") is None
    assert source.wait_until_idle(5)
    prices = source.lambda_("us-east-1", "arm64")
    assert prices is not None
    assert prices.gb_second.usd == 0.0000133334
    requests = fake.get_products_requests()
    assert len(requests) == len(lambda_products("us-east-1"))  # one item a page
    assert [r.body.get("NextToken") for r in requests] == [None] + [
        f"page:{i}" for i in range(1, len(requests))
    ]
    # Both architectures came with the one query.
    x86 = source.lambda_("us-east-1", "x86_64")
    assert x86 is not None
    assert x86.gb_second.usd == 0.0000166667
    assert len(fake.get_products_requests()) == len(requests)


def test_fargate_by_architecture(fake: FakePriceList, make_source: MakeSource) -> None:
    source = make_source()
    source.fargate("us-east-1", "x86_64")
    assert source.wait_until_idle(5)
    x86, arm = source.fargate("us-east-1", "x86_64"), source.fargate("us-east-1", "arm64")
    assert x86 is not None
    assert arm is not None
    assert (x86.vcpu_hour.usd, x86.gb_hour.usd) == (0.04048, 0.004445)
    assert (arm.vcpu_hour.usd, arm.gb_hour.usd) == (0.03238, 0.00356)
    assert fake.get_products_requests()[0].body["ServiceCode"] == "AmazonECS"


@pytest.mark.parametrize("retry_mode", ["standard", "adaptive"])
def test_throttling_is_retried_by_botocore(
    fake: FakePriceList, make_source: MakeSource, retry_mode: str
) -> None:
    fake.throttle_next(1)
    source = make_source(retry_mode=retry_mode)
    source.ec2(T3_XLARGE)
    assert source.wait_until_idle(10)
    assert len(fake.get_products_requests()) == 2  # throttled, then retried
    price = source.ec2(T3_XLARGE)
    assert price is not None
    assert price.usd == 0.1664
    assert (source.fetches, source.failures) == (1, 0)


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_by_botocore(
    fake: FakePriceList, make_source: MakeSource, status: int
) -> None:
    fake.server_error_next(2, status)
    source = make_source(max_attempts=3)
    source.ec2(T3_XLARGE)
    assert source.wait_until_idle(10)
    assert len(fake.get_products_requests()) == 3
    assert source.ec2(T3_XLARGE) is not None
    assert source.failures == 0


def test_retries_exhausted_counts_a_failure_and_falls_back(
    fake: FakePriceList, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    fake.server_error_next(2, 500)
    source = make_source(max_attempts=2, refresh="10s")
    with caplog.at_level(logging.WARNING, logger="spancost.pricing.aws"):
        source.ec2(T3_XLARGE)
        assert source.wait_until_idle(10)
    assert len(fake.get_products_requests()) == 2
    assert source.failures == 1
    assert source.ec2(T3_XLARGE) is None  # no last good price: the caller uses its snapshot
    assert "fetching EC2 t3.xlarge (Linux) in us-east-1 failed" in caplog.text
    assert "fall back to the bundled snapshot" in caplog.text
    # It is retried with backoff (refresh/16 here) since somebody still asks.
    wait_for(lambda: source.ec2(T3_XLARGE) is not None)


def test_api_down_keeps_the_last_good_price_after_expiry(
    fake: FakePriceList, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_source(refresh="300ms", max_attempts=2)
    source.ec2(T3_XLARGE)
    assert source.wait_until_idle(5)
    good = source.ec2(T3_XLARGE)
    assert good is not None
    fake.stop()
    with caplog.at_level(logging.WARNING, logger="spancost.pricing.aws"):
        # Until a refresh has failed and the expired price was served anyway, it is
        # the last good one every time (the deadline only bounds a hang).
        deadline = time.monotonic() + 30
        while not (source.failures >= 1 and source.stale_hits > 0):
            assert time.monotonic() < deadline, "no failed refresh and stale answer in 30 s"
            assert source.ec2(T3_XLARGE) == good
            time.sleep(0.02)
        assert source.ec2(T3_XLARGE) == good
    assert "answering with the last good price, as of 2024-06-01" in caplog.text


def test_entries_are_refreshed_before_they_expire(
    fake: FakePriceList, make_source: MakeSource
) -> None:
    source = make_source(refresh="300ms")
    source.ec2(T3_XLARGE)
    assert source.wait_until_idle(5)
    fake.set_price({"instanceType": "t3.xlarge", "operatingSystem": "Linux"}, 0.2)
    wait_for(lambda: (p := source.ec2(T3_XLARGE)) is not None and p.usd == 0.2)
    assert source.fetches >= 2
    assert source.stale_hits == 0  # refreshed ahead: never served past its expiry


def test_an_unused_entry_is_not_refreshed_forever(
    fake: FakePriceList, make_source: MakeSource
) -> None:
    source = make_source(refresh="100ms")
    source.ec2(T3_XLARGE)
    assert source.wait_until_idle(5)
    time.sleep(0.5)
    assert len(fake.get_products_requests()) == 1
    # Next use: the last price answers at once (stale) and a refresh follows.
    assert source.ec2(T3_XLARGE) is not None
    assert source.stale_hits == 1
    wait_for(lambda: len(fake.get_products_requests()) == 2)


def test_not_found_answers_none_and_is_not_asked_again_at_once(
    fake: FakePriceList, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_source()
    key = Ec2Key("us-east-1", "x9.nonexistent")
    with caplog.at_level(logging.INFO, logger="spancost.pricing.aws"):
        source.ec2(key)
        assert source.wait_until_idle(5)
    for _ in range(100):
        assert source.ec2(key) is None
    assert len(fake.get_products_requests()) == 1
    assert "no price for EC2 x9.nonexistent (Linux) in us-east-1" in caplog.text


def test_implausible_keys_are_never_sent(fake: FakePriceList, make_source: MakeSource) -> None:
    source = make_source()
    assert source.ec2(Ec2Key("us-east-1", "not an instance type")) is None
    assert source.ec2(Ec2Key("mars-1", "t3.xlarge")) is None
    assert source.ec2(Ec2Key("us-east-1", "t3.xlarge", "BeOS")) is None
    assert source.lambda_("", "x86_64") is None
    assert source.wait_until_idle(5)
    assert fake.get_products_requests() == []
    assert source.misses == 4


def test_a_full_cache_drops_new_keys(
    fake: FakePriceList, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_source(max_entries=1)
    with caplog.at_level(logging.WARNING, logger="spancost.pricing.aws"):
        source.ec2(T3_XLARGE)
        source.ec2(M5_LARGE_WINDOWS)
    assert source.wait_until_idle(5)
    assert source.dropped == 1
    assert "cache full (max_entries=1)" in caplog.text
    assert len(fake.get_products_requests()) == 1


def test_concurrent_lookups_fetch_once(fake: FakePriceList, make_source: MakeSource) -> None:
    fake.delay = 0.1
    source = make_source()

    def look() -> None:
        for _ in range(200):
            source.ec2(T3_XLARGE)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert source.wait_until_idle(5)
    assert len(fake.get_products_requests()) == 1
    assert source.hits + source.misses == 1600


def test_disabled_answers_nothing_and_asks_nothing(
    fake: FakePriceList, make_source: MakeSource
) -> None:
    source = make_source(enabled=False)
    assert source.ec2(T3_XLARGE) is None
    assert not source.knows_region("us-east-1")
    source.start()
    assert source.wait_until_idle(5)
    assert fake.get_products_requests() == []


def test_knows_region(make_source: MakeSource) -> None:
    source = make_source()
    assert source.knows_region("us-east-1")
    assert source.knows_region("ap-southeast-2")
    assert source.knows_region("us-gov-west-1")
    assert not source.knows_region("mars-north-1")


def test_close_stops_the_refresher(fake: FakePriceList, make_source: MakeSource) -> None:
    source = make_source()
    source.ec2(T3_XLARGE)
    assert source.wait_until_idle(5)
    source.close()
    assert source.ec2(Ec2Key("eu-west-1", "m5.large")) is None
    time.sleep(0.1)
    assert len(fake.get_products_requests()) == 1
    assert not [t for t in threading.enumerate() if t.name == "spancost-aws-pricelist"]


def test_endpoint_region_selects_the_signing_region(
    fake: FakePriceList, make_source: MakeSource
) -> None:
    source = make_source(endpoint_region="ap-south-1")
    source.ec2(T3_XLARGE)
    assert source.wait_until_idle(5)
    assert (
        "/ap-south-1/pricing/aws4_request"
        in fake.get_products_requests()[0].headers["authorization"]
    )


def test_fetch_now_for_the_cli(fake: FakePriceList, make_source: MakeSource) -> None:
    source = make_source()
    assert source.fetch_ec2(T3_XLARGE) == Price(0.1664, "hour", "aws_pricelist", "2024-06-01")
    fake.stop()
    from spancost.pricing.aws import PriceListError  # noqa: PLC0415

    with pytest.raises(PriceListError, match="GetProducts AmazonEC2"):
        make_source(max_attempts=1).fetch_ec2(T3_XLARGE)


# -- configuration --------------------------------------------------------------------------


def test_defaults() -> None:
    config = AwsPriceListConfig.from_config({})
    assert config == AwsPriceListConfig(
        enabled=True,
        endpoint_region="us-east-1",
        endpoint_url=None,
        refresh=900.0,
        retry_mode="standard",
        max_attempts=5,
        timeout=10.0,
        operating_system="Linux",
        max_entries=10_000,
    )


@pytest.mark.parametrize("region", ["us-east-1", "eu-central-1", "ap-south-1"])
def test_endpoint_regions_accepted(region: str) -> None:
    assert AwsPriceListConfig.from_config({"endpoint_region": region}).endpoint_region == region


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"endpoint_region": "eu-west-1"}, "endpoint_region", "served only from us-east-1"),
        ({"endpoint_region": 1}, "endpoint_region", "must be a string"),
        ({"refresh": "15 minutes"}, "refresh", "must be a duration"),
        ({"refresh": "0s"}, "refresh", "longer than zero"),
        ({"timeout": 10}, "timeout", "must be a duration"),
        ({"enabled": "yes"}, "enabled", "must be a boolean"),
        ({"max_attempts": "3"}, "max_attempts", "must be an integer"),
        ({"max_attempts": 0}, "max_attempts", "between 1 and 20"),
        ({"max_attempts": True}, "max_attempts", "must be an integer"),
        ({"retry_mode": "legacy"}, "retry_mode", "standard, adaptive"),
        ({"endpoint_url": "ftp://x"}, "endpoint_url", "http:// or https://"),
        ({"operating_system": "BeOS"}, "operating_system", "must be one of Linux"),
        ({"max_entries": -1}, "max_entries", "at least 1"),
        ({"refersh": "1m"}, "refersh", "unknown key"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        AwsPriceList(config, path="prices.aws_pricelist")
    assert info.value.key == f"prices.aws_pricelist.{key}"
    assert str(info.value).startswith(f"config.prices.aws_pricelist.{key}: ")
    with pytest.raises(ConfigError) as relative:
        AwsPriceList(config)
    assert relative.value.key == key


def test_config_errors_through_the_price_catalog() -> None:
    """The catalog builds this source from ``prices.aws_pricelist`` and names keys from the top."""
    catalog = pytest.importorskip("spancost.pricing.catalog")
    section = {"aws_pricelist": {"enabled": True, "refresh": "soon"}}
    with pytest.raises(ConfigError) as info:
        catalog.build_price_book(section)
    assert info.value.key == "prices.aws_pricelist.refresh"


def test_built_by_the_price_catalog_it_is_enabled(fake: FakePriceList) -> None:
    catalog = pytest.importorskip("spancost.pricing.catalog")
    config = {"aws_pricelist": {"enabled": True, "endpoint_url": fake.url}}
    book = catalog.build_price_book(config)
    try:
        (live,) = [s for s in book.sources if s.name == "aws_pricelist"]
        assert isinstance(live, AwsPriceList)
        assert live.enabled
        assert not live.ready  # nothing fetched yet: a miss is "source_unavailable"
        book.ec2(T3_XLARGE)  # the bundled snapshot answers; the live source fetches
        assert live.wait_until_idle(5)
        assert live.ready
        price = book.ec2(T3_XLARGE)
        assert isinstance(price, Price)
        assert price.source == "aws_pricelist"
    finally:
        book.close()


def test_operating_system_is_case_insensitive() -> None:
    assert (
        AwsPriceListConfig.from_config({"operating_system": "windows"}).operating_system
        == "Windows"
    )
