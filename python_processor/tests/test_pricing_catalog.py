"""Price sources: the registry, the fallback order and how misses are explained."""

from __future__ import annotations

import json
import logging
import sys
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from spancost.errors import ConfigError
from spancost.pricing.catalog import FALLBACK_ORDER, SOURCE_FACTORIES, PriceBook, build_price_book
from spancost.pricing.model import (
    Arch,
    Ec2Key,
    FargatePrice,
    LambdaPrice,
    Price,
    PriceSource,
    Unpriced,
)
from spancost.pricing.snapshot import load_bundled

M5 = Ec2Key("us-east-1", "m5.large")


class FakeSource:
    """A live source that knows what it is given."""

    def __init__(
        self,
        name: str = "aws_pricelist",
        ec2: Mapping[Ec2Key, Any] | None = None,
        *,
        ready: bool = True,
        regions: frozenset[str] = frozenset({"us-east-1"}),
        fail: bool = False,
    ) -> None:
        self.name = name
        self.prices = dict(ec2 or {})
        self.ready = ready
        self.regions = regions
        self.fail = fail
        self.closed = False

    def ec2(self, key: Ec2Key) -> Price | None:
        if self.fail:
            raise RuntimeError("boom")
        return self.prices.get(key)

    def lambda_(self, region: str, arch: Arch) -> LambdaPrice | None:
        if self.fail:
            raise RuntimeError("boom")
        return None

    def fargate(self, region: str, arch: Arch) -> FargatePrice | None:
        return None

    def knows_region(self, region: str) -> bool:
        return region in self.regions

    def close(self) -> None:
        self.closed = True


def test_fallback_order_is_live_then_bundled() -> None:
    assert FALLBACK_ORDER == ("aws_pricelist", "aws_spot", "bundled")
    assert set(SOURCE_FACTORIES) == {"aws_pricelist", "aws_spot", "bundled"}


def test_first_valid_price_wins() -> None:
    live = FakeSource(ec2={M5: Price(0.1, "hour", "aws_pricelist", "2026-11-01")})
    book = PriceBook([live, load_bundled()])
    assert book.ec2(M5) == Price(0.1, "hour", "aws_pricelist", "2026-11-01")
    other = Ec2Key("us-east-1", "c5.large")
    price = book.ec2(other)
    assert isinstance(price, Price) and price.source == "bundled" and price.usd == 0.085
    assert book.names == ["aws_pricelist", "bundled"]


@pytest.mark.parametrize(
    "bad",
    [
        Price(float("nan"), "hour", "aws_pricelist", "x"),
        Price(-1.0, "hour", "aws_pricelist", "x"),
        Price(float("inf"), "hour", "aws_pricelist", "x"),
        Price("0.1", "hour", "aws_pricelist", "x"),  # type: ignore[arg-type]
        Price(True, "hour", "aws_pricelist", "x"),
        "0.1",
    ],
)
def test_invalid_prices_fall_through(bad: Any, caplog: pytest.LogCaptureFixture) -> None:
    book = PriceBook([FakeSource(ec2={M5: bad}), load_bundled()])
    with caplog.at_level(logging.WARNING):
        price = book.ec2(M5)
    assert isinstance(price, Price) and price.source == "bundled"
    assert "invalid price" in caplog.text


def test_a_failing_source_never_fails_a_lookup(caplog: pytest.LogCaptureFixture) -> None:
    book = PriceBook([FakeSource(fail=True), load_bundled()])
    with caplog.at_level(logging.WARNING):
        for _ in range(5):
            price = book.ec2(M5)
            assert isinstance(price, Price) and price.source == "bundled"
        assert book.lambda_("us-east-1", "x86_64") is not None
    # Logged once, not once per lookup.
    assert caplog.text.count("failed a lookup") == 1
    assert PriceBook([FakeSource(fail=True)]).ec2(M5) == Unpriced("source_unavailable")


def test_misses_are_explained() -> None:
    bundled = load_bundled()
    assert PriceBook([bundled]).ec2(Ec2Key("us-east-1", "x9.huge")) == Unpriced(
        "unknown_instance_type"
    )
    assert PriceBook([bundled]).ec2(Ec2Key("mars-1", "m5.large")) == Unpriced("unknown_region")
    # A live source still loading: it might know, so the miss is "unavailable".
    loading = FakeSource(ready=False)
    assert PriceBook([loading, bundled]).ec2(Ec2Key("us-east-1", "x9.huge")) == Unpriced(
        "source_unavailable"
    )
    # ... but what the snapshot knows is priced meanwhile.
    assert isinstance(PriceBook([loading, bundled]).ec2(M5), Price)
    assert PriceBook([]).ec2(M5) == Unpriced("unknown_region")
    # A live source that knows more regions than the snapshot.
    live = FakeSource(regions=frozenset({"me-central-1"}))
    assert PriceBook([live, bundled]).ec2(Ec2Key("me-central-1", "m5.large")) == Unpriced(
        "unknown_instance_type"
    )


def test_ready_may_be_a_method() -> None:
    class Loading(FakeSource):
        def is_ready(self) -> bool:
            return False

    source = Loading()
    source.ready = source.is_ready  # type: ignore[assignment]
    assert PriceBook([source]).ec2(M5) == Unpriced("source_unavailable")


def test_close_closes_sources() -> None:
    live = FakeSource()
    PriceBook([live, load_bundled()]).close()
    assert live.closed


def build(config: dict[str, Any], **factories: Any) -> PriceBook:
    return build_price_book(config, {**SOURCE_FACTORIES, **factories} if factories else None)


def test_defaults_bundled_only() -> None:
    book = build({})
    assert book.names == ["bundled"]


def test_disabled_sources_are_not_built() -> None:
    built: list[Any] = []

    def factory(config: Mapping[str, Any], path: str) -> PriceSource:
        built.append((config, path))
        return FakeSource()

    assert build(
        {"aws_pricelist": {"enabled": False, "refresh": "15m"}}, aws_pricelist=factory
    ).names == ["bundled"]
    assert built == []
    book = build({"aws_pricelist": {"enabled": True, "refresh": "15m"}}, aws_pricelist=factory)
    assert book.names == ["aws_pricelist", "bundled"]
    # The source gets its own section without `enabled`, and its key path for errors.
    assert built == [({"refresh": "15m"}, "prices.aws_pricelist")]
    assert build({"bundled": {"enabled": False}}).names == []


def test_aws_pricelist_is_imported_only_when_enabled(monkeypatch: pytest.MonkeyPatch) -> None:
    """The factory imports spancost.pricing.aws inside itself; here a stand-in module."""
    seen: list[Any] = []

    class AwsPriceList(FakeSource):
        def __init__(self, config: Mapping[str, Any], *, path: str) -> None:
            super().__init__()
            seen.append((dict(config), path))
            if config.get("refresh") == "never":
                raise ConfigError(f"{path}.refresh", "must be a duration")

    module = types.ModuleType("spancost.pricing.aws")
    module.AwsPriceList = AwsPriceList  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "spancost.pricing.aws", module)
    book = build({"aws_pricelist": {"enabled": True, "refresh": "15m"}})
    assert book.names == ["aws_pricelist", "bundled"]
    assert seen == [({"refresh": "15m"}, "prices.aws_pricelist")]
    with pytest.raises(ConfigError) as caught:
        build({"aws_pricelist": {"enabled": True, "refresh": "never"}})
    assert caught.value.key == "prices.aws_pricelist.refresh"

    monkeypatch.setitem(sys.modules, "spancost.pricing.aws", None)  # import fails
    with pytest.raises(ConfigError) as missing:
        build({"aws_pricelist": {"enabled": True}})
    assert missing.value.key == "prices.aws_pricelist"
    assert "cannot be enabled" in missing.value.message
    assert build({"aws_pricelist": {"enabled": False}}).names == ["bundled"]


def test_a_source_built_before_a_config_error_is_closed() -> None:
    live = FakeSource()

    def bad_bundled(config: Mapping[str, Any], path: str) -> PriceSource:
        raise ConfigError(f"{path}.path", "nope")

    with pytest.raises(ConfigError):
        build(
            {"aws_pricelist": {"enabled": True}},
            aws_pricelist=lambda config, path: live,
            bundled=bad_bundled,
        )
    assert live.closed


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"aws": {}}, "prices.aws"),
        ({"bundled": {"enabled": "yes"}}, "prices.bundled.enabled"),
        ({"bundled": {"file": "x"}}, "prices.bundled.file"),
        ({"bundled": []}, "prices.bundled"),
        ({"bundled": {"path": "/nonexistent/prices.json"}}, "prices.bundled.path"),
    ],
)
def test_config_errors(config: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(config)
    assert caught.value.key == key


def test_bundled_path_replaces_the_snapshot(tmp_path: Path) -> None:
    document = load_bundled().to_document()
    document["as_of"] = "2026-11-01"
    document["ec2"]["Linux"]["us-east-1"]["m5.large"] = 0.1
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(document))
    book = build({"bundled": {"path": str(path)}})
    assert book.ec2(M5) == Price(0.1, "hour", "bundled", "2026-11-01")


def test_real_aws_pricelist_is_wired_when_present() -> None:
    """With the other source installed, `enabled: true` builds it through the registry."""
    aws = pytest.importorskip("spancost.pricing.aws")
    book = build({"aws_pricelist": {"enabled": True, "refresh": "15m"}})
    try:
        assert book.names == ["aws_pricelist", "bundled"]
        assert isinstance(book.sources[0], aws.AwsPriceList)
    finally:
        book.close()


def test_default_operating_system_comes_from_the_live_source() -> None:
    assert PriceBook([load_bundled()]).default_operating_system == "Linux"
    live = FakeSource()
    live.operating_system = "Windows"  # type: ignore[attr-defined]
    assert PriceBook([live, load_bundled()]).default_operating_system == "Windows"
