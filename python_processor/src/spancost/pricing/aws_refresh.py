"""Regenerate a price snapshot (``spancost prices refresh``) from the AWS Price List API.

What to fetch comes from the current snapshot: its EC2 instance types per
operating system and region, and its Lambda and Fargate regions. With
``regions`` given, those regions are fetched instead: a region the snapshot
already has keeps its instance types, a new one gets every instance type the
snapshot knows for that operating system.

EC2 prices are fetched a region and an operating system at a time (one
paginated query answers every instance type), not key by key: a few dozen
requests instead of a thousand. Nothing is returned unless every query
succeeded, so a failing API never produces a half-refreshed file.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

from spancost.pricing.aws import AwsPriceList
from spancost.pricing.model import ARCHES, Arch, Ec2Key
from spancost.pricing.snapshot import BundledPrices

__all__ = ["RefreshResult", "plan_refresh", "refresh_snapshot"]

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class RefreshPlan:
    """What to fetch: instance types per (operating system, region); Lambda and Fargate regions."""

    ec2: Mapping[tuple[str, str], frozenset[str]]
    lambda_regions: tuple[str, ...]
    fargate_regions: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RefreshResult:
    snapshot: BundledPrices
    missing: tuple[str, ...]  # what the API had no price for, described


def plan_refresh(current: BundledPrices, regions: Sequence[str] | None = None) -> RefreshPlan:
    """What a refresh of `current` fetches (pure)."""
    document = current.to_document()
    by_os: dict[str, dict[str, frozenset[str]]] = {
        os_name: {region: frozenset(types) for region, types in per_region.items()}
        for os_name, per_region in document["ec2"].items()
    }
    ec2: dict[tuple[str, str], frozenset[str]] = {}
    for os_name, per_region in by_os.items():
        every_type = frozenset().union(*per_region.values())
        for region in per_region if regions is None else regions:
            types = per_region.get(region, every_type)
            if types:
                ec2[(os_name, region)] = types
    lambda_regions = tuple(document["lambda"]) if regions is None else tuple(regions)
    fargate_regions = tuple(document["fargate"]) if regions is None else tuple(regions)
    return RefreshPlan(ec2, lambda_regions, fargate_regions)


def refresh_snapshot(
    source: AwsPriceList,
    current: BundledPrices,
    *,
    regions: Sequence[str] | None = None,
    workers: int = 4,
    now: dt.datetime | None = None,
    progress: Callable[[str], None] | None = None,
) -> RefreshResult:
    """Fetch every price `current` has (or has for `regions`) and build a new snapshot.

    Raises `PriceListError` when any query fails (after botocore's retries).
    """
    fetched_at = now or dt.datetime.now(dt.UTC)
    plan = plan_refresh(current, regions)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="spancost-refresh") as pool:

        def submit(what: str, fetch: Callable[..., _T], *args: str) -> Future[_T]:
            return pool.submit(_tracked, progress, what, fetch, *args)

        ec2_jobs = {
            (os_name, region): submit(
                f"EC2 {os_name} {region}", source.fetch_ec2_region, region, os_name
            )
            for os_name, region in plan.ec2
        }
        lambda_jobs = {
            r: submit(f"Lambda {r}", source.fetch_lambda, r) for r in plan.lambda_regions
        }
        fargate_jobs = {
            r: submit(f"Fargate {r}", source.fetch_fargate, r) for r in plan.fargate_regions
        }
        try:
            ec2_answers = {key: job.result() for key, job in ec2_jobs.items()}
            lambda_answers = {region: job.result() for region, job in lambda_jobs.items()}
            fargate_answers = {region: job.result() for region, job in fargate_jobs.items()}
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)  # one failure fails the refresh
            raise

    missing: list[str] = []
    effective: list[str] = []
    ec2: dict[Ec2Key, float] = {}
    for (os_name, region), types in sorted(plan.ec2.items()):
        found = ec2_answers[(os_name, region)]
        for instance_type in sorted(types):
            price = found.get(instance_type)
            if price is None:
                missing.append(f"EC2 {instance_type} ({os_name}) in {region}")
                continue
            ec2[Ec2Key(region, instance_type, os_name)] = price.usd
            effective.append(price.as_of)
    lambda_: dict[tuple[str, Arch], tuple[float, float]] = {}
    for region in plan.lambda_regions:
        for arch in ARCHES:
            lp = lambda_answers[region].get(arch)
            if lp is None:
                missing.append(f"Lambda ({arch}) in {region}")
                continue
            lambda_[(region, arch)] = (lp.gb_second.usd, lp.request.usd)
            effective += [lp.gb_second.as_of, lp.request.as_of]
    fargate: dict[tuple[str, Arch], tuple[float, float]] = {}
    for region in plan.fargate_regions:
        for arch in ARCHES:
            fp = fargate_answers[region].get(arch)
            if fp is None:
                missing.append(f"Fargate ({arch}) in {region}")
                continue
            fargate[(region, arch)] = (fp.vcpu_hour.usd, fp.gb_hour.usd)
            effective += [fp.vcpu_hour.as_of, fp.gb_hour.as_of]

    endpoint = source.config.endpoint_url or f"the {source.config.endpoint_region} endpoint"
    dates = sorted(set(effective))
    span = f"{dates[0]} to {dates[-1]}" if dates else "none"
    provenance = (
        f"AWS Price List Query API (GetProducts, {endpoint}), fetched "
        f"{fetched_at:%Y-%m-%dT%H:%M:%SZ} by `spancost prices refresh`. EC2: on-demand, "
        "shared tenancy, no pre-installed software, licence included, per hour. Lambda: "
        "first pricing tier. Fargate: Linux, on-demand. Effective dates of the prices: "
        f"{span}."
    )
    snapshot = BundledPrices(
        ec2=ec2,
        lambda_=lambda_,
        fargate=fargate,
        # The prices were confirmed current when fetched.
        as_of=f"{fetched_at:%Y-%m-%d}",
        provenance=provenance,
    )
    return RefreshResult(snapshot, tuple(missing))


def _tracked(
    progress: Callable[[str], None] | None, what: str, fetch: Callable[..., _T], *args: str
) -> _T:
    result = fetch(*args)
    if progress is not None:
        progress(what)
    return result
