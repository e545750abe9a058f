"""The bundled AWS price snapshot: anchors, coverage, honesty, and the loader's checks."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import pytest

from spancost.pricing.model import Ec2Key
from spancost.pricing.snapshot import (
    BundledPrices,
    SnapshotError,
    load_bundled,
    load_snapshot,
)

REGIONS = (
    "us-east-1",
    "us-east-2",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-northeast-1",
)
FAMILIES = (
    *("m5", "m6i", "m6a", "m6g", "m7i", "m7g", "m7a"),
    *("c5", "c6i", "c6a", "c6g", "c7i", "c7g"),
    *("r5", "r6i", "r6a", "r6g", "r7i", "r7g"),
)
SIZES = ("large", "xlarge", "2xlarge", "4xlarge")
BURSTABLE = ("t3", "t3a", "t4g")
BURSTABLE_SIZES = ("micro", "small", "medium", "large", "xlarge", "2xlarge")


def raw_snapshot() -> dict[str, Any]:
    text = resources.files("spancost.pricing").joinpath("data", "aws_prices.json").read_text()
    document: dict[str, Any] = json.loads(text)
    return document


@pytest.mark.parametrize(
    ("instance_type", "hourly"),
    [
        ("t3.xlarge", 0.1664),
        ("m5.large", 0.096),
        ("c5.large", 0.085),
        ("r5.large", 0.126),
        ("m6g.large", 0.077),
        ("t4g.medium", 0.0336),
    ],
)
def test_well_known_us_east_1_prices(instance_type: str, hourly: float) -> None:
    price = load_bundled().ec2(Ec2Key("us-east-1", instance_type, "Linux"))
    assert price is not None
    assert price.usd == hourly
    assert (price.unit, price.source) == ("hour", "bundled")


def test_lambda_and_fargate_anchors() -> None:
    prices = load_bundled()
    x86 = prices.lambda_("us-east-1", "x86_64")
    arm = prices.lambda_("us-east-1", "arm64")
    assert x86 is not None and arm is not None
    assert x86.gb_second.usd == 0.0000166667
    assert arm.gb_second.usd == 0.0000133334
    assert x86.request.usd == arm.request.usd == pytest.approx(0.20 / 1_000_000, rel=1e-12)
    fargate_x86 = prices.fargate("us-east-1", "x86_64")
    fargate_arm = prices.fargate("us-east-1", "arm64")
    assert fargate_x86 is not None and fargate_arm is not None
    assert (fargate_x86.vcpu_hour.usd, fargate_x86.gb_hour.usd) == (0.04048, 0.004445)
    assert (fargate_arm.vcpu_hour.usd, fargate_arm.gb_hour.usd) == (0.03238, 0.00356)


@pytest.mark.parametrize("region", REGIONS)
def test_every_region_has_every_family_size_and_serverless_price(region: str) -> None:
    prices = load_bundled()
    wanted = [f"{f}.{s}" for f in FAMILIES for s in SIZES]
    wanted += [f"{f}.{s}" for f in BURSTABLE for s in BURSTABLE_SIZES]
    missing = [t for t in wanted if prices.ec2(Ec2Key(region, t, "Linux")) is None]
    assert missing == []
    for arch in ("x86_64", "arm64"):
        assert prices.lambda_(region, arch) is not None
        assert prices.fargate(region, arch) is not None
    assert prices.knows_region(region)


def test_sizes_are_priced_in_proportion_within_a_family() -> None:
    prices = load_bundled()
    for region in REGIONS:
        for family in FAMILIES:
            large = prices.ec2(Ec2Key(region, f"{family}.large"))
            four = prices.ec2(Ec2Key(region, f"{family}.4xlarge"))
            assert large is not None and four is not None
            assert four.usd == pytest.approx(8 * large.usd, rel=1e-9)


def test_regional_prices_are_plausible() -> None:
    """No region is cheaper than us-east-1 or more than 40 % dearer, for any instance type."""
    prices = load_bundled()
    for key in prices.ec2_keys():
        base = prices.ec2(Ec2Key("us-east-1", key.instance_type, key.operating_system))
        price = prices.ec2(key)
        assert base is not None and price is not None
        assert base.usd <= price.usd <= 1.4 * base.usd, key


def test_prices_are_json_numbers_and_floats_in_memory() -> None:
    def walk(node: object) -> None:
        if isinstance(node, dict):
            for value in node.values():
                walk(value)
        else:
            assert isinstance(node, int | float) and not isinstance(node, bool), node
            assert node > 0

    document = raw_snapshot()
    for section in ("ec2", "lambda", "fargate"):
        walk(document[section])
    prices = load_bundled()
    assert all(type(prices.ec2(key).usd) is float for key in prices.ec2_keys())  # type: ignore[union-attr]


def test_provenance_is_honest() -> None:
    document = raw_snapshot()
    assert document["format"] == 1
    assert document["currency"] == "USD"
    assert document["as_of"] == load_bundled().as_of
    provenance = document["provenance"]
    assert "not fetched" in provenance.lower()
    assert "spancost prices refresh" in provenance
    price = load_bundled().ec2(Ec2Key("us-east-1", "m5.large"))
    assert price is not None and price.as_of == document["as_of"]


def test_unknown_keys_answer_none() -> None:
    prices = load_bundled()
    assert prices.ec2(Ec2Key("us-east-1", "m5.large", "Windows")) is None
    assert prices.ec2(Ec2Key("mars-north-1", "m5.large")) is None
    assert prices.ec2(Ec2Key("us-east-1", "x9.huge")) is None
    assert prices.lambda_("mars-north-1", "arm64") is None
    assert not prices.knows_region("mars-north-1")


def test_document_round_trip(tmp_path: Path) -> None:
    prices = load_bundled()
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(prices.to_document()))
    again = load_snapshot(path)
    assert again.to_document() == prices.to_document()
    assert again.ec2(Ec2Key("eu-west-1", "c6g.xlarge")) == prices.ec2(
        Ec2Key("eu-west-1", "c6g.xlarge")
    )


def minimal(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "format": 1,
        "currency": "USD",
        "as_of": "2025-01-01",
        "provenance": "test",
        "ec2": {"Linux": {"us-east-1": {"m5.large": 0.096}}},
        "lambda": {"us-east-1": {"arm64": {"gb_second": 1e-5, "request": 2e-7}}},
        "fargate": {"us-east-1": {"x86_64": {"vcpu_hour": 0.04, "gb_hour": 0.004}}},
    }
    document.update(overrides)
    return document


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (minimal(format=2), "format must be 1"),
        (minimal(currency="EUR"), "currency must be USD"),
        (minimal(as_of=""), "as_of must be a non-empty string"),
        (minimal(ec2={"Linux": {"us-east-1": {"m5.large": "0.096"}}}), "ec2.Linux.us-east-1.m5"),
        (minimal(ec2={"Linux": {"us-east-1": {"m5.large": -1}}}), "finite number >= 0"),
        (minimal(ec2={"Linux": {"us-east-1": {"m5.large": True}}}), "finite number >= 0"),
        (minimal(ec2={"Linux": {"us-east-1": {"m5.large": float("nan")}}}), "finite"),
        (minimal(ec2={"Linux": ["m5.large"]}), "ec2.Linux: must be a JSON object"),
        (
            minimal(lambda_={}, **{"lambda": {"us-east-1": {"arm": {}}}}),
            "lambda.us-east-1.arm: architecture",
        ),
        (
            minimal(fargate={"us-east-1": {"x86_64": {"vcpu_hour": 0.04}}}),
            "fargate.us-east-1.x86_64.gb_hour",
        ),
        ([], "must be a JSON object"),
    ],
)
def test_malformed_snapshots_are_refused(document: object, message: str) -> None:
    with pytest.raises(SnapshotError, match=message.replace(".", r"\.").replace("[", r"\[")):
        BundledPrices.from_document(document, "snap")


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(SnapshotError, match="cannot read price snapshot"):
        load_snapshot(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(SnapshotError, match="not valid JSON"):
        load_snapshot(bad)
