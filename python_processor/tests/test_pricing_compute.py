"""Compute pricing, pure: local roots, durations, Lambda billing, task sizes, resource plans."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from typing import Any

import pytest

from spancost.pricing.catalog import PriceBook
from spancost.pricing.compute import (
    ComputeSettings,
    FargateTask,
    SegmentPricing,
    is_local_root,
    lambda_memory_mb,
    normalize_arch,
    parse_task_cpu,
    parse_task_memory_gb,
    plan_compute,
    span_duration_ns,
)
from spancost.pricing.facts import ResourceFacts
from spancost.pricing.model import Ec2Key, Price, Unpriced
from spancost.pricing.snapshot import load_bundled
from spancost.vocabulary.limits import MAX_DURATION_NS
from spancost.vocabulary.otlp import SPAN_KIND_CONSUMER, SPAN_KIND_SERVER, Unusable, Value

INTERNAL, CLIENT, PRODUCER = 1, 3, 4
HAS_IS_REMOTE, IS_REMOTE = 0x100, 0x200
EKS: dict[str, Value] = {
    "cloud.provider": "aws",
    "cloud.platform": "aws_eks",
    "cloud.region": "us-east-1",
    "host.type": "m5.large",
}


def book() -> PriceBook:
    return PriceBook([load_bundled()])


def plan(values: Mapping[str, Value], settings: ComputeSettings | None = None) -> Any:
    facts = ResourceFacts.from_values(values, "aws.ec2.instance.lifecycle", frozenset({"spot"}))
    return plan_compute(facts, book(), settings or ComputeSettings())


@pytest.mark.parametrize(
    ("kind", "flags", "has_parent", "expected"),
    [
        (INTERNAL, 0, False, True),  # a trace root
        (CLIENT, HAS_IS_REMOTE, False, True),
        (INTERNAL, HAS_IS_REMOTE | IS_REMOTE, True, True),  # the flags say the parent is remote
        (SPAN_KIND_SERVER, HAS_IS_REMOTE, True, False),  # ... or that it is local, even for SERVER
        (SPAN_KIND_SERVER, 0, True, True),  # no flags: SERVER/CONSUMER start a segment
        (SPAN_KIND_CONSUMER, 0, True, True),
        (INTERNAL, 0, True, False),
        (CLIENT, 0, True, False),
        (PRODUCER, 0, True, False),
        (SPAN_KIND_SERVER, IS_REMOTE, True, True),  # 0x200 without 0x100 means nothing
        (INTERNAL, IS_REMOTE, True, False),
    ],
)
def test_is_local_root(kind: int, flags: int, has_parent: bool, expected: bool) -> None:
    assert is_local_root(kind, flags, has_parent) is expected


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (1_000, 2_000, 1_000),
        (1_000, 1_000, 0),
        (1_000, 999, None),  # end before start
        (0, 5_000, None),  # unset start
        (1, 1 + MAX_DURATION_NS, MAX_DURATION_NS),
        (1, 2 + MAX_DURATION_NS, None),
        (-5, 10, None),
    ],
)
def test_span_duration(start: int, end: int, expected: int | None) -> None:
    assert span_duration_ns(start, end) == expected


def lambda_pricing(memory_mb: float = 1536, gb_second: float = 0.0000166667) -> SegmentPricing:
    return SegmentPricing(
        source="bundled",
        model="lambda.gb_seconds+requests",
        included_model="lambda.included_in_segment",
        as_of="x",
        instance_type="",
        usd_per_second=memory_mb / 1024 * gb_second,
        per_request_usd=0.2 / 1e6,
        bill_whole_ms=True,
    )


@pytest.mark.parametrize(
    ("duration_ns", "billed_ms"),
    [(120_400_000, 121), (120_000_000, 120), (120_000_001, 121), (1, 1), (0, 1), (999_999, 1)],
)
def test_lambda_bills_whole_milliseconds_rounded_up(duration_ns: int, billed_ms: int) -> None:
    usd = lambda_pricing().charge(duration_ns)
    assert usd == pytest.approx(1.5 * billed_ms / 1000 * 0.0000166667 + 0.2 / 1e6, rel=1e-12)


def test_duration_charge_is_rate_times_wall_time() -> None:
    pricing = SegmentPricing("bundled", "m", "i", "x", "m5.large", usd_per_second=0.096 / 3600)
    assert pricing.charge(1_500_000_000) == pytest.approx(0.096 * 1.5 / 3600, rel=1e-12)
    assert pricing.charge(0) == 0.0


@pytest.mark.parametrize(
    ("value", "unit", "expected"),
    [
        (1536 * 1024 * 1024, "auto", 1536.0),  # bytes, current semantic conventions
        (1536, "auto", 1536.0),  # MB, older ones
        (128, "auto", 128.0),
        (10_240, "mb", 10_240.0),
        (1536 * 1024 * 1024, "bytes", 1536.0),
        (20_000, "auto", None),  # more than Lambda allows
        (0.5, "auto", None),
        (1536, "bytes", None),  # 1536 bytes is not a Lambda
    ],
)
def test_lambda_memory(value: float, unit: Any, expected: float | None) -> None:
    assert lambda_memory_mb(value, unit) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (256, 0.25),
        (1024, 1.0),
        ("512", 0.5),
        (2, 2.0),
        (0.5, 0.5),
        ("0.25 vCPU", 0.25),
        ("4 vcpu", 4.0),
        (32768, None),
        (0, None),
        ("lots", None),
        (True, None),
        (float("nan"), None),
        (Unusable("array"), None),
    ],
)
def test_task_cpu(value: Value, expected: float | None) -> None:
    assert parse_task_cpu(value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (2048, 2.0),
        ("1024", 1.0),
        (512, 0.5),
        (4, 4.0),
        ("2 GB", 2.0),
        ("512 MiB", 0.5),
        ("3gb", 3.0),
        (1_000_000, None),
        ("2 TB", None),
        (-1, None),
    ],
)
def test_task_memory(value: Value, expected: float | None) -> None:
    assert parse_task_memory_gb(value) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, "x86_64"),
        ("amd64", "x86_64"),
        ("ARM64", "arm64"),
        ("aarch64", "arm64"),
        ("s390x", None),
    ],
)
def test_normalize_arch(text: str | None, expected: str | None) -> None:
    assert normalize_arch(text) == expected


def test_ec2_on_demand() -> None:
    pricing = plan(EKS)
    assert isinstance(pricing, SegmentPricing)
    assert pricing.model == "ec2.on_demand.duration"
    assert pricing.included_model == "ec2.included_in_segment"
    assert pricing.instance_type == "m5.large"
    assert pricing.source == "bundled"
    assert pricing.usd_per_second * 3600 == pytest.approx(0.096)


def test_ec2_platform_and_zone_variants() -> None:
    extras: list[dict[str, Value | None]] = [
        {"cloud.platform": "aws_ec2"},
        {"cloud.platform": "aws_ecs"},
        {"cloud.platform": "AWS_EKS", "host.type": "M5.Large"},  # case does not matter
        {"cloud.region": None, "cloud.availability_zone": "us-east-1c"},
    ]
    for extra in extras:
        values = {k: v for k, v in {**EKS, **extra}.items() if v is not None}
        pricing = plan(values)
        assert isinstance(pricing, SegmentPricing), extra
        assert pricing.usd_per_second * 3600 == pytest.approx(0.096)
    # No platform but a host type: an EC2 instance the detector did not name.
    pricing = plan({"cloud.provider": "aws", "cloud.region": "us-east-1", "host.type": "t3.xlarge"})
    assert isinstance(pricing, SegmentPricing)
    assert pricing.usd_per_second * 3600 == pytest.approx(0.1664)


def test_spot_discount_and_spot_price() -> None:
    settings = ComputeSettings(spot_discount=0.7)
    pricing = plan({**EKS, "aws.ec2.instance.lifecycle": "Spot"}, settings)
    assert isinstance(pricing, SegmentPricing)
    assert pricing.model == "ec2.spot.duration"
    assert pricing.usd_per_second * 3600 == pytest.approx(0.096 * 0.3)

    class SpotSource:
        name = "spot_feed"

        def ec2(self, key: Ec2Key) -> Price | None:
            return None

        def ec2_spot(self, key: Ec2Key) -> Price | None:
            return Price(0.0123, "hour", "spot_feed", "2025-06-01")

        def lambda_(self, region: str, arch: Any) -> None:
            return None

        def fargate(self, region: str, arch: Any) -> None:
            return None

        def knows_region(self, region: str) -> bool:
            return False

    facts = ResourceFacts.from_values(
        {**EKS, "aws.ec2.instance.lifecycle": "spot"},
        "aws.ec2.instance.lifecycle",
        frozenset({"spot"}),
    )
    spot = plan_compute(facts, PriceBook([SpotSource(), load_bundled()]), settings)
    assert isinstance(spot, SegmentPricing)
    assert (spot.model, spot.source, spot.as_of) == (
        "ec2.spot_price.duration",
        "spot_feed",
        "2025-06-01",
    )
    assert spot.usd_per_second * 3600 == pytest.approx(0.0123)


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        ({}, "no_resource_info"),
        ({"service.name": "x"}, "no_resource_info"),
        (
            {"cloud.provider": "gcp", "cloud.region": "us-east1", "host.type": "n2"},
            "no_resource_info",
        ),
        ({"cloud.provider": "aws", "cloud.platform": "aws_app_runner"}, "no_resource_info"),
        ({**EKS, "cloud.region": "mars-north-1"}, "unknown_region"),
        ({k: v for k, v in EKS.items() if k != "cloud.region"}, "unknown_region"),
        ({**EKS, "host.type": "x9.huge"}, "unknown_instance_type"),
        ({k: v for k, v in EKS.items() if k != "host.type"}, "unknown_instance_type"),
        ({**EKS, "os.type": "windows"}, "unknown_instance_type"),  # bundled has Linux only
        ({**EKS, "os.type": "darwin"}, "unknown_instance_type"),
        ({**EKS, "host.type": 42}, "bad_attribute"),
        ({**EKS, "cloud.region": Unusable("array")}, "bad_attribute"),
    ],
)
def test_compute_unpriced(values: dict[str, Value], reason: str) -> None:
    assert plan(values) == Unpriced(reason)  # type: ignore[arg-type]


LAMBDA: dict[str, Value] = {
    "cloud.provider": "aws",
    "cloud.platform": "aws_lambda",
    "cloud.region": "us-east-1",
    "faas.max_memory": 1536 * 1024 * 1024,
}


def test_lambda_plans() -> None:
    pricing = plan(LAMBDA)
    assert isinstance(pricing, SegmentPricing)
    assert pricing.bill_whole_ms and pricing.model == "lambda.gb_seconds+requests"
    assert pricing.usd_per_second == pytest.approx(1.5 * 0.0000166667)
    assert pricing.per_request_usd == pytest.approx(2e-7)
    assert pricing.instance_type == "lambda/x86_64/1536MB"
    arm = plan({**LAMBDA, "host.arch": "arm64", "faas.max_memory": 512})
    assert isinstance(arm, SegmentPricing)
    assert arm.usd_per_second == pytest.approx(0.5 * 0.0000133334)
    assert plan({**LAMBDA, "faas.max_memory": "1536"}) == Unpriced("bad_attribute")
    assert plan({**LAMBDA, "faas.max_memory": 999_999_999_999}) == Unpriced("bad_attribute")
    assert plan({k: v for k, v in LAMBDA.items() if k != "faas.max_memory"}) == Unpriced(
        "no_resource_info"
    )
    assert plan({**LAMBDA, "host.arch": "s390x"}) == Unpriced("unknown_instance_type")
    assert plan({**LAMBDA, "cloud.region": "mars-north-1"}) == Unpriced("unknown_region")


ECS_FARGATE: dict[str, Value] = {
    "cloud.provider": "aws",
    "cloud.platform": "aws_ecs",
    "cloud.region": "us-east-1",
    "aws.ecs.launchtype": "fargate",
    "service.name": "checkout",
}


def test_fargate_from_task_attributes() -> None:
    pricing = plan({**ECS_FARGATE, "aws.ecs.task.cpu": 512, "aws.ecs.task.memory": 1024})
    assert isinstance(pricing, SegmentPricing)
    assert pricing.model == "fargate.vcpu_memory.duration"
    assert pricing.usd_per_second * 3600 == pytest.approx(0.5 * 0.04048 + 1.0 * 0.004445)
    assert pricing.instance_type == "fargate/x86_64/0.5vCPU/1GB"
    arm = plan(
        {
            **ECS_FARGATE,
            "aws.ecs.task.cpu": "1 vCPU",
            "aws.ecs.task.memory": "2 GB",
            "host.arch": "arm64",
        }
    )
    assert isinstance(arm, SegmentPricing)
    assert arm.usd_per_second * 3600 == pytest.approx(0.03238 + 2 * 0.00356)
    bad = plan({**ECS_FARGATE, "aws.ecs.task.cpu": "huge", "aws.ecs.task.memory": 1024})
    assert bad == Unpriced("bad_attribute")


def test_fargate_from_configuration() -> None:
    settings = ComputeSettings(fargate_tasks={"checkout": FargateTask(2.0, 4.0, "arm64")})
    pricing = plan(ECS_FARGATE, settings)
    assert isinstance(pricing, SegmentPricing)
    assert pricing.usd_per_second * 3600 == pytest.approx(2 * 0.03238 + 4 * 0.00356)
    # Without a size from attributes or configuration it cannot be priced.
    assert plan(ECS_FARGATE) == Unpriced("no_resource_info")
    # A configured service is Fargate even when the platform does not say so.
    eks_pod = {"cloud.provider": "aws", "cloud.region": "eu-west-1", "service.name": "checkout"}
    configured = plan(eks_pod, settings)
    assert isinstance(configured, SegmentPricing)
    assert configured.model == "fargate.vcpu_memory.duration"


def test_eks_fargate_node_is_recognised() -> None:
    settings = ComputeSettings(fargate_tasks={"api": FargateTask(0.25, 0.5)})
    values = {
        "cloud.provider": "aws",
        "cloud.platform": "aws_eks",
        "cloud.region": "us-east-1",
        "k8s.node.name": "fargate-ip-10-0-1-23.ec2.internal",
        "service.name": "api",
    }
    pricing = plan(values, settings)
    assert isinstance(pricing, SegmentPricing)
    assert pricing.usd_per_second * 3600 == pytest.approx(0.25 * 0.04048 + 0.5 * 0.004445)
    # The same pod without its size: Fargate, but unpriced.
    assert plan({**values, "service.name": "other"}, settings) == Unpriced("no_resource_info")


def test_default_operating_system_when_os_type_is_absent() -> None:
    without_os = {k: v for k, v in EKS.items() if k != "os.type"}
    assert isinstance(plan(without_os), SegmentPricing)  # Linux by default
    windows = ComputeSettings(default_operating_system="Windows")
    assert plan(without_os, windows) == Unpriced("unknown_instance_type")  # bundled: Linux only
    assert isinstance(plan({**without_os, "os.type": "linux"}, windows), SegmentPricing)


def test_the_pricing_core_imports_no_adapter_library() -> None:
    """compute, rules, llm, catalog, snapshot: no grpc, boto3, psycopg or kubernetes."""
    code = (
        "import sys\n"
        "import spancost.pricing.compute, spancost.pricing.rules, spancost.pricing.llm\n"
        "import spancost.pricing.catalog, spancost.pricing.snapshot, spancost.pricing.facts\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in "
        "('grpc', 'boto3', 'botocore', 'psycopg', 'kubernetes')]\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == ""
