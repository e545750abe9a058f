"""`AwsSpotPrices` with a real boto3 EC2 client against the fake EC2 endpoint on 127.0.0.1,
and a spot node priced through the real `CostPlugin`.

Expected money is computed here from the numbers the fake serves (and, for the
fallback, from the bundled snapshot's on-demand price), never copied from the code.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from spancost.errors import ConfigError
from spancost.plugin import Events
from spancost.plugins.cost import CostPlugin
from spancost.pricing.aws_spot import AwsSpotConfig, AwsSpotPrices
from spancost.pricing.aws_spot_history import (
    SpotKey,
    SpotPriceFormatError,
    spot_prices,
)
from spancost.pricing.catalog import PriceBook, build_price_book
from spancost.pricing.model import Ec2Key, Price, SpotPriceSource, Unpriced
from spancost.pricing.snapshot import load_bundled
from tests.builders import Value, all_spans, attribute_map, attributes
from tests.fake_ec2 import FakeEc2, SpotRecord, offline_ec2_env, serve

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
T1 = NOW - dt.timedelta(days=2, hours=3)  # spot prices change rarely: days-old changes are current
T2 = NOW - dt.timedelta(hours=7, minutes=12)
T3 = NOW - dt.timedelta(minutes=41, seconds=5)

# m5.large in us-east-1: three zones, each with an older change that is no longer in
# effect, and one zone whose current price is listed under the "(Amazon VPC)" name.
HISTORY = [
    SpotRecord("us-east-1a", "m5.large", 0.0412, T1 - dt.timedelta(days=1)),
    SpotRecord("us-east-1a", "m5.large", 0.0351, T1),
    SpotRecord("us-east-1b", "m5.large", 0.0298, T2 - dt.timedelta(days=3)),
    SpotRecord("us-east-1b", "m5.large", 0.0367, T2),
    SpotRecord("us-east-1c", "m5.large", 0.0423, T1, "Linux/UNIX"),
    SpotRecord("us-east-1c", "m5.large", 0.0389, T3, "Linux/UNIX (Amazon VPC)"),
    SpotRecord("us-east-1a", "m5.large", 0.0913, T2, "Windows"),
    SpotRecord("us-east-1a", "c5.large", 0.0311, T2),
    SpotRecord("eu-west-1a", "m5.large", 0.0402, T3),
    SpotRecord("eu-west-1b", "m5.large", 0.0395, T2),
]
CURRENT = {"us-east-1a": (0.0351, T1), "us-east-1b": (0.0367, T2), "us-east-1c": (0.0389, T3)}
M5 = Ec2Key("us-east-1", "m5.large")

MakeSource = Callable[..., AwsSpotPrices]


def stamp(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def region_mean(prices: Mapping[str, tuple[float, dt.datetime]]) -> Price:
    """The price of a node whose zone is unknown: the mean of the zones', as of the newest."""
    usd = sum(usd for usd, _ in prices.values()) / len(prices)
    return Price(usd, "hour", "aws_spot", stamp(max(moment for _, moment in prices.values())))


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail("condition not met in time")
        time.sleep(0.01)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeEc2]:
    offline_ec2_env(monkeypatch)
    with serve(HISTORY) as server:
        yield server


@pytest.fixture
def make_source(fake: FakeEc2) -> Iterator[MakeSource]:
    sources: list[AwsSpotPrices] = []

    def make(**overrides: Any) -> AwsSpotPrices:
        config = {
            "endpoint_url": fake.url,
            "refresh": "30s",
            "max_attempts": 3,
            "timeout": "2s",
            **overrides,
        }
        source = AwsSpotPrices(config)
        sources.append(source)
        return source

    yield make
    for source in sources:
        source.close()


def fetched(source: AwsSpotPrices, key: Ec2Key) -> Price | None:
    """The source's answer for `key` once the background fetch it started is done."""
    source.ec2_spot(key)
    assert source.wait_until_idle(10)
    return source.ec2_spot(key)


# -- the source ------------------------------------------------------------------------------


def test_is_a_spot_price_source_that_knows_no_on_demand_price(make_source: MakeSource) -> None:
    source = make_source()
    assert isinstance(source, SpotPriceSource)
    assert source.name == "aws_spot"
    assert source.ec2(M5) is None
    assert source.lambda_("us-east-1", "x86_64") is None
    assert source.fargate("us-east-1", "arm64") is None
    assert not source.knows_region("us-east-1")


def test_cold_miss_answers_at_once_then_the_background_fills_the_cache(
    fake: FakeEc2, make_source: MakeSource
) -> None:
    fake.answering.clear()  # the endpoint holds the fetch until the test lets it answer
    source = make_source()
    zone_b = Ec2Key("us-east-1", "m5.large", availability_zone="us-east-1b")
    assert source.ec2_spot(zone_b) is None
    # Answered while the endpoint still holds the fetch: the lookup did not wait for it.
    assert not source.wait_until_idle(0), "no fetch was left to the background"
    assert (source.misses, source.failures) == (1, 0)
    fake.answering.set()
    assert source.wait_until_idle(10)
    usd, moment = CURRENT["us-east-1b"]
    assert source.ec2_spot(zone_b) == Price(usd, "hour", "aws_spot", stamp(moment))
    assert (source.fetches, source.hits) == (1, 1)


def test_the_request_on_the_wire(fake: FakeEc2, make_source: MakeSource) -> None:
    source = make_source()
    before = dt.datetime.now(dt.UTC)
    assert fetched(source, Ec2Key("eu-west-1", "m5.large")) is not None
    (request,) = fake.spot_requests()
    assert request.params["Action"] == "DescribeSpotPriceHistory"
    assert request.params["Version"] == "2016-11-15"
    assert request.values("InstanceType") == ["m5.large"]
    assert request.values("ProductDescription") == ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"]
    # A zero-width window at "now": the prices in effect now, not a history.
    assert request.params["StartTime"] == request.params["EndTime"]
    asked_at = dt.datetime.fromisoformat(request.params["StartTime"].replace("Z", "+00:00"))
    assert before - dt.timedelta(seconds=1) <= asked_at <= dt.datetime.now(dt.UTC)
    assert request.headers["content-type"].startswith("application/x-www-form-urlencoded")
    # Signed by a real client for the span's region: EC2 is regional.
    assert request.region == "eu-west-1"
    assert "/eu-west-1/ec2/aws4_request" in request.headers["authorization"]


def test_each_region_is_asked_with_its_own_signature(
    fake: FakeEc2, make_source: MakeSource
) -> None:
    source = make_source()
    source.ec2_spot(M5)
    source.ec2_spot(Ec2Key("eu-west-1", "m5.large"))
    assert source.wait_until_idle(10)
    assert sorted(r.region for r in fake.spot_requests()) == ["eu-west-1", "us-east-1"]
    eu = source.ec2_spot(Ec2Key("eu-west-1", "m5.large", availability_zone="eu-west-1a"))
    assert eu == Price(0.0402, "hour", "aws_spot", stamp(T3))


def test_pagination_follows_next_token(fake: FakeEc2, make_source: MakeSource) -> None:
    fake.page_size = 1
    source = make_source()
    assert fetched(source, M5) == region_mean(CURRENT)
    requests = fake.spot_requests()
    # One item a page: a zone's current price under each of the two product names
    # (us-east-1c has both), and the last page's empty <nextToken/> ends it.
    assert len(requests) == 4
    assert [r.params.get("NextToken") for r in requests] == [None, "page:1", "page:2", "page:3"]
    for zone, (usd, moment) in CURRENT.items():
        key = Ec2Key("us-east-1", "m5.large", availability_zone=zone)
        assert source.ec2_spot(key) == Price(usd, "hour", "aws_spot", stamp(moment))


def test_the_zone_price_when_known_the_mean_of_the_zones_when_not(
    make_source: MakeSource,
) -> None:
    source = make_source()
    fetched(source, M5)
    for zone, (usd, moment) in CURRENT.items():
        key = Ec2Key("us-east-1", "m5.large", availability_zone=zone)
        assert source.ec2_spot(key) == Price(usd, "hour", "aws_spot", stamp(moment))
    mean = region_mean(CURRENT)
    assert mean.usd == pytest.approx((0.0351 + 0.0367 + 0.0389) / 3, rel=1e-12)
    assert source.ec2_spot(M5) == mean
    # A zone the answer has no price for (another region's, a typo) gets the region's.
    for zone in ("us-east-1z", "eu-west-1a"):
        assert source.ec2_spot(Ec2Key("us-east-1", "m5.large", availability_zone=zone)) == mean


def test_windows_is_asked_under_its_own_product_description(
    fake: FakeEc2, make_source: MakeSource
) -> None:
    source = make_source()
    key = Ec2Key("us-east-1", "m5.large", "Windows", "us-east-1a")
    assert fetched(source, key) == Price(0.0913, "hour", "aws_spot", stamp(T2))
    (request,) = fake.spot_requests()
    assert request.values("ProductDescription") == ["Windows", "Windows (Amazon VPC)"]


def test_implausible_keys_and_other_operating_systems_are_never_sent(
    fake: FakeEc2, make_source: MakeSource
) -> None:
    source = make_source()
    assert source.ec2_spot(Ec2Key("xx-fake-9", "m5.large")) is None  # no such endpoint
    assert source.ec2_spot(Ec2Key("us-east-1", "my laptop")) is None
    assert source.ec2_spot(Ec2Key("us-east-1", "m5.large", "RHEL")) is None  # discount applies
    assert source.wait_until_idle(5)
    assert fake.spot_requests() == []
    assert source.misses == 3


def test_not_found_answers_none_and_is_not_asked_again_at_once(
    fake: FakeEc2, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_source()
    key = Ec2Key("us-east-1", "x9.large")
    with caplog.at_level(logging.INFO, logger="spancost.pricing.aws_spot"):
        assert fetched(source, key) is None
    for _ in range(50):
        assert source.ec2_spot(key) is None
    assert len(fake.spot_requests()) == 1
    assert (
        "no price for EC2 spot x9.large (Linux) in us-east-1 in the EC2 spot price history; "
        "callers fall back to the spot discount"
    ) in caplog.text


@pytest.mark.parametrize("retry_mode", ["standard", "adaptive"])
def test_throttling_is_retried_by_botocore(
    fake: FakeEc2, make_source: MakeSource, retry_mode: str
) -> None:
    fake.throttle_next(1)
    source = make_source(retry_mode=retry_mode)
    assert fetched(source, M5) == region_mean(CURRENT)
    assert len(fake.spot_requests()) == 2  # RequestLimitExceeded, then retried
    assert (source.fetches, source.failures) == (1, 0)


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_are_retried_by_botocore(
    fake: FakeEc2, make_source: MakeSource, status: int
) -> None:
    fake.server_error_next(2, status)
    source = make_source(max_attempts=3)
    assert fetched(source, M5) == region_mean(CURRENT)
    assert len(fake.spot_requests()) == 3
    assert source.failures == 0


def test_retries_exhausted_count_a_failure_then_backoff_recovers(
    fake: FakeEc2, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    fake.server_error_next(2, 500)
    source = make_source(max_attempts=2, refresh="2s")
    with caplog.at_level(logging.INFO, logger="spancost.pricing.aws_spot"):
        assert fetched(source, M5) is None  # no price yet: the caller applies the discount
        assert len(fake.spot_requests()) == 2
        assert source.failures == 1
        assert not source.healthy
        assert "fetching EC2 spot m5.large (Linux) in us-east-1 failed" in caplog.text
        assert "callers fall back to the spot discount" in caplog.text
        # Retried after refresh/16 since somebody still asks; the endpoint answers now.
        wait_for(lambda: source.ec2_spot(M5) is not None)
        assert source.healthy
        assert "fetched again after 1 failed attempts" in caplog.text
    assert source.ec2_spot(M5) == region_mean(CURRENT)


def test_prices_are_refreshed_in_the_background(fake: FakeEc2, make_source: MakeSource) -> None:
    source = make_source(refresh="300ms", max_age="10s")
    zone_a = Ec2Key("us-east-1", "m5.large", availability_zone="us-east-1a")
    assert fetched(source, zone_a) is not None
    change = dt.datetime.now(dt.UTC).replace(microsecond=0) - dt.timedelta(seconds=1)
    fake.add(SpotRecord("us-east-1a", "m5.large", 0.0377, change))
    wait_for(lambda: source.ec2_spot(zone_a) == Price(0.0377, "hour", "aws_spot", stamp(change)))
    assert source.fetches >= 2
    assert source.stale_hits == 0  # refreshed ahead: never answered past its refresh


def test_server_down_keeps_the_last_good_price_until_max_age_then_none(
    fake: FakeEc2, make_source: MakeSource, caplog: pytest.LogCaptureFixture
) -> None:
    source = make_source(refresh="200ms", max_age="800ms", max_attempts=1)
    good = fetched(source, M5)
    confirmed_by = time.monotonic()  # the price was confirmed before this
    assert good == region_mean(CURRENT)
    fake.stop()
    with caplog.at_level(logging.WARNING, logger="spancost.pricing.aws_spot"):
        # The last good price, past its refresh, until it is max_age old; then nothing.
        while (answer := source.ec2_spot(M5)) is not None:
            assert answer == good
            assert time.monotonic() - confirmed_by < 30, "the price never expired"
            time.sleep(0.01)
        expired_after = time.monotonic() - confirmed_by
    assert expired_after >= 0.8 - 0.05  # never used past max_age (the age is >= this)
    assert source.stale_hits > 0
    assert source.failures >= 1
    assert source.expired >= 1
    assert source.ec2_spot(M5) is None
    assert "answering with the last good price" in caplog.text
    assert "more than max_age (1s); not used until fetched again" in caplog.text


def test_concurrent_lookups_fetch_once(fake: FakeEc2, make_source: MakeSource) -> None:
    fake.answering.clear()
    source = make_source()

    def look() -> None:
        for _ in range(200):
            source.ec2_spot(M5)

    threads = [threading.Thread(target=look) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fake.answering.set()
    assert source.wait_until_idle(10)
    assert len(fake.spot_requests()) == 1


def test_disabled_answers_nothing_and_asks_nothing(fake: FakeEc2, make_source: MakeSource) -> None:
    source = make_source(enabled=False)
    assert source.ec2_spot(M5) is None
    source.start()
    assert source.wait_until_idle(5)
    assert fake.spot_requests() == []


def test_close_stops_the_refresher(fake: FakeEc2, make_source: MakeSource) -> None:
    source = make_source()
    fetched(source, M5)
    source.close()
    assert source.ec2_spot(Ec2Key("eu-west-1", "m5.large")) is None
    time.sleep(0.1)
    assert len(fake.spot_requests()) == 1
    assert not [t for t in threading.enumerate() if t.name == "spancost-aws-spot"]


# -- reading the answer (pure) ---------------------------------------------------------------


def item(zone: str, usd: object, moment: object, description: str = "Linux/UNIX") -> dict[str, Any]:
    return {
        "AvailabilityZone": zone,
        "InstanceType": "m5.large",
        "ProductDescription": description,
        "SpotPrice": usd,
        "Timestamp": moment,
    }


KEY = SpotKey("us-east-1", "m5.large", "Linux")


def test_reading_takes_the_latest_per_zone_and_leaves_out_other_products() -> None:
    items = [
        item("us-east-1a", "0.040000", T3, "Linux/UNIX (Amazon VPC)"),
        item("us-east-1a", "0.030000", T1),
        item("us-east-1b", "0.020000", T2),
        item("us-east-1b", "0.090000", T3, "Windows"),  # not Linux
        {**item("us-east-1b", "0.010000", T3), "InstanceType": "c5.large"},  # not m5.large
    ]
    prices = spot_prices(items, KEY)
    assert prices is not None
    assert dict(prices.zones) == {
        "us-east-1a": Price(0.04, "hour", "aws_spot", stamp(T3)),
        "us-east-1b": Price(0.02, "hour", "aws_spot", stamp(T2)),
    }
    assert prices.region == Price((0.04 + 0.02) / 2, "hour", "aws_spot", stamp(T3))
    assert spot_prices([], KEY) is None
    assert spot_prices(items[3:], KEY) is None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (item("us-east-1a", "abc", T1), "SpotPrice is not a price"),
        (item("us-east-1a", "-0.01", T1), "SpotPrice is not a price"),
        (item("us-east-1a", "NaN", T1), "SpotPrice is not a price"),
        (item("us-east-1a", "inf", T1), "SpotPrice is not a price"),
        (item("us-east-1a", 0.03, T1), "SpotPrice is not a price"),
        (item("", "0.03", T1), "no AvailabilityZone"),
        (item("us-east-1a", "0.03", T1.replace(tzinfo=None)), "Timestamp is not a time"),
        (item("us-east-1a", "0.03", "2025-01-01"), "Timestamp is not a time"),
    ],
)
def test_a_malformed_item_fails_the_fetch(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(SpotPriceFormatError, match=message):
        spot_prices([item("us-east-1b", "0.02", T1), bad], KEY)


# -- configuration ----------------------------------------------------------------------------


def test_defaults() -> None:
    assert AwsSpotConfig.from_config({}) == AwsSpotConfig(
        enabled=True,
        endpoint_url=None,
        refresh=300.0,
        max_age=3600.0,
        retry_mode="standard",
        max_attempts=5,
        timeout=10.0,
        max_entries=10_000,
    )


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"refresh": "5 minutes"}, "refresh", "must be a duration"),
        ({"refresh": "0s"}, "refresh", "longer than zero"),
        ({"max_age": 3600}, "max_age", "must be a duration"),
        ({"refresh": "10m", "max_age": "5m"}, "max_age", "must be at least refresh"),
        ({"enabled": "yes"}, "enabled", "must be a boolean"),
        ({"endpoint_url": "ftp://x"}, "endpoint_url", "http:// or https://"),
        ({"retry_mode": "legacy"}, "retry_mode", "standard, adaptive"),
        ({"max_attempts": 0}, "max_attempts", "between 1 and 20"),
        ({"max_entries": True}, "max_entries", "must be an integer"),
        ({"timeout": "soon"}, "timeout", "must be a duration"),
        ({"region": "us-east-1"}, "region", "unknown key"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        AwsSpotPrices(config, path="prices.aws_spot")
    assert info.value.key == f"prices.aws_spot.{key}"
    assert str(info.value).startswith(f"config.prices.aws_spot.{key}: ")


def test_config_errors_through_the_plugin() -> None:
    with pytest.raises(ConfigError) as info:
        CostPlugin({"prices": {"aws_spot": {"enabled": True, "max_age": "1s"}}})
    assert info.value.key == "prices.aws_spot.max_age"


def test_off_by_default() -> None:
    book = build_price_book({})
    assert book.names == ["bundled"]
    assert book.ec2_spot(M5) is None


def test_in_the_price_book_it_changes_no_on_demand_answer(fake: FakeEc2) -> None:
    config = {"aws_spot": {"enabled": True, "endpoint_url": fake.url}}
    book = build_price_book(config)
    try:
        assert book.names == ["aws_spot", "bundled"]
        (spot,) = [s for s in book.sources if isinstance(s, AwsSpotPrices)]
        assert book.ec2(Ec2Key("mars-north-1", "m5.large")) == Unpriced("unknown_region")
        assert book.ec2(Ec2Key("us-east-1", "x9.large")) == Unpriced("unknown_instance_type")
        on_demand = book.ec2(M5)
        assert isinstance(on_demand, Price) and on_demand.source == "bundled"
        assert book.ec2_spot(M5) is None  # cold: asked in the background
        assert spot.wait_until_idle(10)
        assert book.ec2_spot(M5) == region_mean(CURRENT)
    finally:
        book.close()


# -- through the cost plugin ------------------------------------------------------------------

HOUR_NS = 3600 * 10**9
SPOT_NODE: dict[str, Value] = {
    "service.name": "checkout",
    "cloud.provider": "aws",
    "cloud.platform": "aws_eks",
    "host.type": "m5.large",
    "os.type": "linux",
    "aws.ec2.instance.lifecycle": "spot",
}


def price_one_span(plugin: CostPlugin, resource: Mapping[str, Value]) -> dict[str, object]:
    """Price a 90-minute root span of `resource`, as the collector would."""
    rs = ResourceSpans()
    rs.resource.attributes.extend(attributes(resource))
    start = 1_760_000_000_000_000_000
    span = Span(
        trace_id=b"\x02" * 16,
        span_id=b"\x01" * 8,
        name="GET /cart",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start,
        end_time_unix_nano=start + HOUR_NS * 3 // 2,
    )
    rs.scope_spans.append(ScopeSpans(spans=[span]))
    batch = ExportTraceServiceRequest(resource_spans=[rs])
    plugin.process(batch, Events())
    (priced,) = [attribute_map(s.attributes) for s in all_spans(batch)]
    return priced


def live_price(plugin: CostPlugin, resource: Mapping[str, Value]) -> dict[str, object]:
    """The span's attributes once the live spot price answers (plans are cached per
    resource for a minute, so each try is a resource of its own)."""
    deadline = time.monotonic() + 10
    for attempt in range(10**6):
        span = price_one_span(plugin, {**resource, "service.instance.id": f"try-{attempt}"})
        if span["cost.source"] == "aws_spot":
            return span
        assert time.monotonic() < deadline, f"never priced by aws_spot: {span}"
        time.sleep(0.02)
    raise AssertionError("unreachable")


def bundled_on_demand(region: str, instance_type: str) -> float:
    price = load_bundled().ec2(Ec2Key(region, instance_type))
    assert price is not None
    return price.usd


@pytest.fixture
def plugin_config(fake: FakeEc2) -> dict[str, Any]:
    return {
        "prices": {"aws_spot": {"enabled": True, "endpoint_url": fake.url, "max_attempts": 2}},
        "spot": {"discount": 0.65},
    }


def test_a_spot_node_is_priced_at_the_live_price_of_its_zone(
    plugin_config: dict[str, Any],
) -> None:
    plugin = CostPlugin(plugin_config)
    try:
        # The zone alone says the region too (us-east-1b -> us-east-1).
        node = {**SPOT_NODE, "cloud.availability_zone": "us-east-1b"}
        first = price_one_span(plugin, node)
        # Cold: answered at once with the discount, the live price fetched meanwhile.
        assert first["cost.source"] == "bundled"
        assert first["cost.model"] == "ec2.spot.duration"
        span = live_price(plugin, node)
    finally:
        plugin.close()
    usd, moment = CURRENT["us-east-1b"]
    assert span["cost.usd"] == pytest.approx(usd * 1.5, rel=1e-12)
    assert span["cost.model"] == "ec2.spot_price.duration"
    assert span["cost.price_as_of"] == stamp(moment)
    assert span["cost.instance_type"] == "m5.large"
    assert span["cost.currency"] == "USD"


def test_a_spot_node_of_unknown_zone_is_priced_at_the_mean_of_the_zones(
    plugin_config: dict[str, Any],
) -> None:
    plugin = CostPlugin(plugin_config)
    try:
        span = live_price(plugin, {**SPOT_NODE, "cloud.region": "us-east-1"})
    finally:
        plugin.close()
    mean = region_mean(CURRENT)
    assert span["cost.usd"] == pytest.approx(mean.usd * 1.5, rel=1e-12)
    assert span["cost.model"] == "ec2.spot_price.duration"
    assert span["cost.price_as_of"] == mean.as_of


def test_endpoint_down_falls_back_to_the_discount(
    fake: FakeEc2, plugin_config: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    fake.stop()
    plugin = CostPlugin(plugin_config)
    node = {**SPOT_NODE, "cloud.availability_zone": "us-east-1a"}
    on_demand = bundled_on_demand("us-east-1", "m5.large")
    try:
        with caplog.at_level(logging.WARNING, logger="spancost.pricing.aws_spot"):
            price_one_span(plugin, node)
            failed = "fetching EC2 spot m5.large (Linux) in us-east-1 failed"
            wait_for(lambda: failed in caplog.text)
        # After the failure too (a resource of its own: no cached plan).
        span = price_one_span(plugin, {**node, "service.instance.id": "after-failure"})
    finally:
        plugin.close()
    assert "callers fall back to the spot discount" in caplog.text
    assert span["cost.source"] == "bundled"
    assert span["cost.model"] == "ec2.spot.duration"
    assert span["cost.usd"] == pytest.approx(on_demand * (1 - 0.65) * 1.5, rel=1e-12)
    assert span["cost.price_as_of"] == load_bundled().as_of


def test_an_on_demand_node_is_not_asked_for_a_spot_price(
    fake: FakeEc2, plugin_config: dict[str, Any]
) -> None:
    plugin = CostPlugin(plugin_config)
    try:
        node = {**SPOT_NODE, "aws.ec2.instance.lifecycle": "on-demand", "cloud.region": "us-east-1"}
        span = price_one_span(plugin, node)
    finally:
        plugin.close()
    assert span["cost.model"] == "ec2.on_demand.duration"
    assert span["cost.usd"] == pytest.approx(bundled_on_demand("us-east-1", "m5.large") * 1.5)
    assert fake.spot_requests() == []


def test_the_price_book_alone_keeps_spot_zone_out_of_on_demand_keys() -> None:
    """An `Ec2Key` with a zone finds the same on-demand price as one without."""
    book = PriceBook([load_bundled()])
    assert book.ec2(Ec2Key("us-east-1", "m5.large", availability_zone="us-east-1a")) == book.ec2(M5)
    assert Ec2Key("us-east-1", "m5.large", availability_zone="us-east-1a") == M5
