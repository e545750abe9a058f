"""Compute pricing: which span carries a service segment's compute, and what it costs.

Pure: resource facts and prices in, a `SegmentPricing` (or `Unpriced`) out; a
span's kind, flags and times in, a charge out. No I/O, no cloud SDK.

Allocation model ``duration``: a service segment (the spans one process made
for one request: a local root and everything nested under it in the same
process) is charged once, on its local root::

    ec2      usd = hourly_price * duration_s / 3600
             (on spot: a source's spot price, in the node's zone when known;
             else the on-demand price * (1 - spot.discount))
    fargate  usd = (vcpu * vcpu_hour_price + memory_gb * gb_hour_price) * duration_s / 3600
    lambda   usd = memory_gb * ceil(duration_ms) / 1000 * gb_second_price + request_price

The other spans of the segment are priced 0.0 with ``cost.model``
``<kind>.included_in_segment``, so that summing ``cost.usd`` over a trace never
counts the same compute time twice.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from spancost.pricing.catalog import PriceBook
from spancost.pricing.facts import ResourceFacts
from spancost.pricing.model import Arch, Ec2Key, Unpriced
from spancost.vocabulary.limits import MAX_DURATION_NS
from spancost.vocabulary.otlp import (
    FLAG_CONTEXT_HAS_IS_REMOTE,
    FLAG_CONTEXT_IS_REMOTE,
    SPAN_KIND_CONSUMER,
    SPAN_KIND_SERVER,
    Value,
)

__all__ = [
    "LAMBDA_MAX_MEMORY_MB",
    "ComputeSettings",
    "FargateTask",
    "MemoryUnit",
    "SegmentPricing",
    "is_local_root",
    "lambda_memory_mb",
    "normalize_arch",
    "parse_task_cpu",
    "parse_task_memory_gb",
    "plan_compute",
    "span_duration_ns",
]

LAMBDA_MAX_MEMORY_MB: Final = 10_240
_MIB: Final = 1024 * 1024
FARGATE_MAX_VCPU: Final = 16.0
FARGATE_MAX_MEMORY_GB: Final = 120.0

MemoryUnit = Literal["auto", "bytes", "mb"]

_NO_INFO: Final = Unpriced("no_resource_info")
_BAD: Final = Unpriced("bad_attribute")
_UNKNOWN_REGION: Final = Unpriced("unknown_region")
_UNKNOWN_TYPE: Final = Unpriced("unknown_instance_type")

_EC2_PLATFORMS: Final = frozenset({"aws_ec2", "aws_eks", "aws_ecs", "aws_elastic_beanstalk"})
_OPERATING_SYSTEMS: Final = {"linux": "Linux", "windows": "Windows"}
_ARCHES: Final[Mapping[str, Arch]] = {
    "amd64": "x86_64",
    "x86_64": "x86_64",
    "x64": "x86_64",
    "x86": "x86_64",
    "arm64": "arm64",
    "aarch64": "arm64",
}
_SIZE: Final = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-z]*)\s*$")


def is_local_root(kind: int, flags: int, has_parent: bool) -> bool:
    """True if the span starts a service segment (its parent is not in this process).

    No parent: a root. Otherwise the OTLP span flags decide when they say
    (bit 0x100: "is-remote is known", bit 0x200: "the parent is remote");
    when they do not, a SERVER or CONSUMER span is taken as the entry point.
    """
    if not has_parent:
        return True
    if flags & FLAG_CONTEXT_HAS_IS_REMOTE:
        return bool(flags & FLAG_CONTEXT_IS_REMOTE)
    return kind in (SPAN_KIND_SERVER, SPAN_KIND_CONSUMER)


def span_duration_ns(start: int, end: int) -> int | None:
    """``end - start`` in ns; None for unset times, end before start, or beyond a year."""
    if start <= 0 or end < start or end - start > MAX_DURATION_NS:
        return None
    return end - start


@dataclass(frozen=True, slots=True)
class SegmentPricing:
    """How a segment's compute is charged: a rate per second of wall time, plus a request fee."""

    source: str
    model: str  # cost.model on the charged span
    included_model: str  # cost.model on the other spans of the segment
    as_of: str
    instance_type: str
    usd_per_second: float
    per_request_usd: float = 0.0
    bill_whole_ms: bool = False  # Lambda: duration rounded up to the millisecond (at least 1)

    def charge(self, duration_ns: int) -> float:
        """The charge for a span of `duration_ns` (validated by `span_duration_ns`)."""
        if self.bill_whole_ms:
            billed_ms = max(1, -(-duration_ns // 1_000_000))
            return self.usd_per_second * billed_ms / 1000.0 + self.per_request_usd
        return self.usd_per_second * (duration_ns / 1e9)


@dataclass(frozen=True, slots=True)
class FargateTask:
    """A Fargate task size configured for a service."""

    vcpu: float
    memory_gb: float
    arch: Arch | None = None


@dataclass(frozen=True, slots=True)
class ComputeSettings:
    """The plugin configuration the compute pricers read."""

    spot_discount: float = 0.7
    fargate_tasks: Mapping[str, FargateTask] = field(default_factory=dict)
    lambda_memory_unit: MemoryUnit = "auto"
    default_operating_system: str = "Linux"  # when os.type is absent


def normalize_arch(text: str | None, default: Arch = "x86_64") -> Arch | None:
    """``host.arch`` (``amd64``, ``arm64``, ...) as a price key.

    `default` if unset, None if unknown.
    """
    if text is None:
        return default
    return _ARCHES.get(text.casefold())


def lambda_memory_mb(value: float, unit: MemoryUnit = "auto") -> float | None:
    """``faas.max_memory`` in MB (MiB), or None if out of Lambda's range.

    Current semantic conventions give bytes, older ones MB. Lambda functions
    have 128 to 10,240 MB, so ``auto`` reads values of at least 1 MiB as bytes
    and smaller ones as MB: the two ranges do not overlap.
    """
    in_bytes = unit == "bytes" or (unit == "auto" and value >= _MIB)
    mb = value / _MIB if in_bytes else value
    if not 1 <= mb <= LAMBDA_MAX_MEMORY_MB:
        return None
    return mb


def parse_task_cpu(value: Value) -> float | None:
    """A task's vCPUs from ``aws.ecs.task.cpu``: CPU units (``256``, ``"1024"``) or vCPUs.

    Numbers of 64 or more are ECS CPU units (1024 per vCPU), smaller ones vCPUs;
    strings may say ``"0.5 vCPU"``. None if unreadable or beyond Fargate's sizes.
    """
    number, suffix = _number_and_suffix(value)
    if number is None:
        return None
    if suffix in ("vcpu", "vcpus"):
        vcpu = number
    elif suffix in ("", "units", "cpu"):
        vcpu = number / 1024 if number >= 64 else number
    else:
        return None
    return vcpu if 0 < vcpu <= FARGATE_MAX_VCPU else None


def parse_task_memory_gb(value: Value) -> float | None:
    """A task's memory in GB from ``aws.ecs.task.memory``: MiB (``2048``) or ``"2 GB"``.

    Plain numbers of 256 or more are MiB (as in ECS task definitions), smaller
    ones GB. None if unreadable or beyond Fargate's sizes.
    """
    number, suffix = _number_and_suffix(value)
    if number is None:
        return None
    if suffix in ("gb", "gib", "g"):
        gb = number
    elif suffix in ("mb", "mib", "m"):
        gb = number / 1024
    elif suffix == "":
        gb = number / 1024 if number >= 256 else number
    else:
        return None
    return gb if 0 < gb <= FARGATE_MAX_MEMORY_GB else None


def _number_and_suffix(value: Value) -> tuple[float | None, str]:
    if isinstance(value, bool):
        return None, ""
    if isinstance(value, int | float):
        number = float(value)
        return (number, "") if math.isfinite(number) else (None, "")
    if isinstance(value, str):
        match = _SIZE.match(value.casefold())
        if match:
            return float(match.group(1)), match.group(2)
    return None, ""


def plan_compute(
    facts: ResourceFacts, book: PriceBook, settings: ComputeSettings
) -> SegmentPricing | Unpriced:
    """How the segments of a resource are charged, or why they cannot be."""
    if facts.bad is not None:
        return _BAD
    platform = facts.platform
    task = settings.fargate_tasks.get(facts.service_name) if facts.service_name else None
    is_aws = facts.provider == "aws" or (platform is not None and platform.startswith("aws_"))
    if not is_aws and task is None:
        return _NO_INFO
    if platform == "aws_lambda":
        return _lambda(facts, book, settings)
    if task is not None or _is_fargate(facts):
        return _fargate(facts, task, book)
    if platform in _EC2_PLATFORMS or (platform is None and facts.host_type is not None):
        return _ec2(facts, book, settings)
    return _NO_INFO


def _is_fargate(facts: ResourceFacts) -> bool:
    if facts.platform == "aws_ecs":
        return facts.ecs_launchtype == "fargate"
    if facts.platform == "aws_eks":
        # EKS runs every Fargate pod on a node of its own named "fargate-ip-...".
        node = facts.k8s_node_name
        return facts.host_type is None and node is not None and node.startswith("fargate-")
    return False


def _ec2(
    facts: ResourceFacts, book: PriceBook, settings: ComputeSettings
) -> SegmentPricing | Unpriced:
    if facts.region is None:
        return _UNKNOWN_REGION
    if facts.host_type is None:
        return _UNKNOWN_TYPE
    if facts.os_type is None:
        operating_system: str | None = settings.default_operating_system
    else:
        operating_system = _OPERATING_SYSTEMS.get(facts.os_type)
    if operating_system is None:
        return _UNKNOWN_TYPE
    # The zone matters only to spot prices; on-demand lookups ignore it (see Ec2Key).
    key = Ec2Key(facts.region, facts.host_type, operating_system, facts.availability_zone)
    on_demand = book.ec2(key)
    if isinstance(on_demand, Unpriced):
        return on_demand
    hourly = on_demand.usd
    source = on_demand.source
    as_of = on_demand.as_of
    model = "ec2.on_demand.duration"
    if facts.spot:
        spot = book.ec2_spot(key)
        if spot is not None:
            hourly, source, as_of = spot.usd, spot.source, spot.as_of
            model = "ec2.spot_price.duration"
        else:
            hourly = hourly * (1.0 - settings.spot_discount)
            model = "ec2.spot.duration"
    return SegmentPricing(
        source=source,
        model=model,
        included_model="ec2.included_in_segment",
        as_of=as_of,
        instance_type=facts.host_type,
        usd_per_second=float(hourly) / 3600.0,
    )


def _lambda(
    facts: ResourceFacts, book: PriceBook, settings: ComputeSettings
) -> SegmentPricing | Unpriced:
    if facts.region is None:
        return _UNKNOWN_REGION
    if facts.faas_max_memory is None:
        return _NO_INFO
    memory_mb = lambda_memory_mb(facts.faas_max_memory, settings.lambda_memory_unit)
    if memory_mb is None:
        return _BAD
    arch = normalize_arch(facts.arch)
    if arch is None:
        return _UNKNOWN_TYPE
    prices = book.lambda_(facts.region, arch)
    if isinstance(prices, Unpriced):
        return prices
    return SegmentPricing(
        source=prices.gb_second.source,
        model="lambda.gb_seconds+requests",
        included_model="lambda.included_in_segment",
        as_of=prices.gb_second.as_of,
        instance_type=f"lambda/{arch}/{memory_mb:g}MB",
        usd_per_second=memory_mb / 1024.0 * float(prices.gb_second.usd),
        per_request_usd=float(prices.request.usd),
        bill_whole_ms=True,
    )


def _fargate(
    facts: ResourceFacts, task: FargateTask | None, book: PriceBook
) -> SegmentPricing | Unpriced:
    if facts.region is None:
        return _UNKNOWN_REGION
    if facts.task_cpu is not None and facts.task_memory is not None:
        vcpu = parse_task_cpu(facts.task_cpu)
        memory_gb = parse_task_memory_gb(facts.task_memory)
        if vcpu is None or memory_gb is None:
            return _BAD
        default_arch = task.arch if task is not None and task.arch is not None else "x86_64"
    elif task is not None:
        vcpu, memory_gb = task.vcpu, task.memory_gb
        default_arch = task.arch or "x86_64"
    else:
        return _NO_INFO
    arch = normalize_arch(facts.arch, default_arch)
    if arch is None:
        return _UNKNOWN_TYPE
    prices = book.fargate(facts.region, arch)
    if isinstance(prices, Unpriced):
        return prices
    hourly = vcpu * float(prices.vcpu_hour.usd) + memory_gb * float(prices.gb_hour.usd)
    return SegmentPricing(
        source=prices.vcpu_hour.source,
        model="fargate.vcpu_memory.duration",
        included_model="fargate.included_in_segment",
        as_of=prices.vcpu_hour.as_of,
        instance_type=f"fargate/{arch}/{vcpu:g}vCPU/{memory_gb:g}GB",
        usd_per_second=hourly / 3600.0,
    )
