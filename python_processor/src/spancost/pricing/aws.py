"""`AwsPriceList`: live AWS prices from the Price List Query API, answered from memory.

The hot path never waits for the network. `ec2`, `lambda_` and `fargate` look
in memory and return at once; a key memory does not hold answers None (the
caller falls back to the bundled snapshot) and is fetched by a background
thread, which asks the API (``GetProducts`` through a real boto3 client). The
memory, its refresh ahead of expiry and its backoff after failures are a
`spancost.pricing.live_cache.LiveCache`: when the API fails, the last good price
keeps answering past its refresh (counted in `stale_hits`, logged once).
Throttling, 5xx answers and connection errors are retried by botocore itself
(``retries={"mode": "standard" | "adaptive"}``: capped exponential backoff with
jitter), not by a loop here.

The queries and the reading of the answers are pure functions in
`spancost.pricing.aws_products`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import botocore.exceptions
from boto3.session import Session

from spancost.config import parse
from spancost.pricing.aws_client import RetryMode, aws_regions, client_config
from spancost.pricing.aws_products import (
    ENDPOINT_REGIONS,
    OPERATING_SYSTEMS,
    SOURCE_NAME,
    PriceListError,
    PriceListFormatError,
    Query,
    ec2_price,
    ec2_prices,
    ec2_query,
    ec2_region_query,
    fargate_prices,
    fargate_query,
    is_plausible_instance_type,
    is_plausible_region,
    lambda_prices,
    lambda_query,
)
from spancost.pricing.live_cache import CacheCounters, LiveCache, Wording
from spancost.pricing.model import ARCHES, Arch, Ec2Key, FargatePrice, LambdaPrice, Price
from spancost.settings.prices import AwsPriceListSettings

if TYPE_CHECKING:
    from mypy_boto3_pricing import PricingClient
    from mypy_boto3_pricing.type_defs import FilterTypeDef

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "ENDPOINT_REGIONS",
    "AwsPriceList",
    "AwsPriceListConfig",
    "PriceListError",
    "PriceListFormatError",
]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH: Final = ""
"""Errors name keys relative to the section (``refresh``); the price catalog, which
builds this source from ``prices.aws_pricelist``, adds that prefix."""

_PAGE_SIZE: Final = 100  # the API's maximum


@dataclass(frozen=True)  # no slots: from_config reads the defaults off the class
class AwsPriceListConfig:
    """The ``prices.aws_pricelist`` section, validated.

    `enabled` defaults to true here: building the source means it is wanted. In
    the plugin's configuration the price catalog reads ``enabled`` first, and
    there it defaults to false (the live API needs credentials and egress).
    """

    enabled: bool = True
    endpoint_region: str = "us-east-1"
    endpoint_url: str | None = None
    refresh: float = 900.0
    retry_mode: RetryMode = "standard"
    max_attempts: int = 5
    timeout: float = 10.0
    operating_system: str = "Linux"
    max_entries: int = 10_000

    @classmethod
    def from_config(cls, config: object, path: str = DEFAULT_CONFIG_PATH) -> AwsPriceListConfig:
        """Read and check a config mapping; `ConfigError` names the key (``<path>.refresh``)."""
        settings = parse(AwsPriceListSettings, config, path)
        # Building the source means it is wanted: enabled unless it says false.
        return cls(**{**settings.model_dump(), "enabled": settings.enabled is not False})


CacheValue = Price | LambdaPrice | FargatePrice


@dataclass(frozen=True, slots=True)
class _LambdaKey:
    region: str
    arch: Arch


@dataclass(frozen=True, slots=True)
class _FargateKey:
    region: str
    arch: Arch


CacheKey = Ec2Key | _LambdaKey | _FargateKey


class AwsPriceList(CacheCounters):
    """A `PriceSource` answering from memory, refreshed from the AWS Price List API.

    Counters (read them any time): `fetches` (fetches started), `failures`,
    `hits` (fresh answers), `stale_hits` (last good price past its expiry),
    `misses` (no price in memory), `dropped` (keys not queued: cache full).
    """

    name = SOURCE_NAME

    def __init__(
        self,
        config: Mapping[str, Any] | AwsPriceListConfig | None = None,
        *,
        path: str = DEFAULT_CONFIG_PATH,
    ) -> None:
        if isinstance(config, AwsPriceListConfig):
            self.config = config
        else:
            self.config = AwsPriceListConfig.from_config({} if config is None else config, path)
        self._cache: LiveCache[CacheKey, CacheValue] = LiveCache(
            fetch=self._fetch,
            ttl=self.config.refresh,
            max_entries=self.config.max_entries,
            wording=Wording(SOURCE_NAME, "the Price List API", "the bundled snapshot"),
            describe=_describe,
            as_of=_as_of,
            is_plausible=_is_plausible,
            expected_errors=(PriceListError,),
            logger=logger,
            thread_name="spancost-aws-pricelist",
        )
        self._client_lock = threading.Lock()
        self._client_instance: PricingClient | None = None
        # Read here, not on the hot path: botocore takes ~0.1 s to load its endpoint data.
        self._regions = aws_regions() if self.enabled else frozenset()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def ready(self) -> bool:
        """Whether the last fetch succeeded: while False, a miss means "not known yet"."""
        return self._cache.ready

    @property
    def operating_system(self) -> str:
        """The OS to price EC2 instances with when a span does not say (``os.type``)."""
        return self.config.operating_system

    # -- the hot path: memory only ------------------------------------------------

    def ec2(self, key: Ec2Key) -> Price | None:
        value = self._lookup(key)
        return value if isinstance(value, Price) else None

    def lambda_(self, region: str, arch: Arch) -> LambdaPrice | None:
        value = self._lookup(_LambdaKey(region, arch))
        return value if isinstance(value, LambdaPrice) else None

    def fargate(self, region: str, arch: Arch) -> FargatePrice | None:
        value = self._lookup(_FargateKey(region, arch))
        return value if isinstance(value, FargatePrice) else None

    def knows_region(self, region: str) -> bool:
        """Whether AWS has this region (botocore's list of the aws and aws-us-gov partitions)."""
        return region in self._regions

    def _lookup(self, key: CacheKey) -> CacheValue | None:
        return self._cache.get(key) if self.enabled else None

    # -- the background refresher ---------------------------------------------------

    def start(self) -> None:
        """Start the refresher thread (also started by the first cache miss)."""
        if self.enabled:
            self._cache.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop the refresher (a fetch in progress is abandoned) and close the client."""
        self._cache.close(self.config.timeout if timeout is None else timeout)
        with self._client_lock:
            if self._client_instance is not None:
                self._client_instance.close()
                self._client_instance = None

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until no key is queued or being fetched; False on timeout (for tests, the CLI)."""
        return self._cache.wait_until_idle(timeout)

    def _fetch(self, key: CacheKey) -> dict[CacheKey, CacheValue | None]:
        if isinstance(key, Ec2Key):
            return {key: self.fetch_ec2(key)}
        if isinstance(key, _LambdaKey):
            lambdas = self.fetch_lambda(key.region)
            return {_LambdaKey(key.region, arch): lambdas.get(arch) for arch in ARCHES}
        fargates = self.fetch_fargate(key.region)
        return {_FargateKey(key.region, arch): fargates.get(arch) for arch in ARCHES}

    # -- I/O: one GetProducts query, paginated -----------------------------------------

    def fetch_ec2(self, key: Ec2Key) -> Price | None:
        """Ask the API now (blocking): the on-demand price of `key`, or None if it has none."""
        return ec2_price(self._get_products(ec2_query(key)), key)

    def fetch_ec2_region(self, region: str, operating_system: str) -> dict[str, Price]:
        """Ask the API now (blocking): every instance type's price in `region` (a few MB)."""
        return ec2_prices(
            self._get_products(ec2_region_query(region, operating_system)),
            region,
            operating_system,
        )

    def fetch_lambda(self, region: str) -> dict[Arch, LambdaPrice]:
        """Ask the API now (blocking): Lambda's prices in `region`, by architecture."""
        return lambda_prices(self._get_products(lambda_query(region)), region)

    def fetch_fargate(self, region: str) -> dict[Arch, FargatePrice]:
        """Ask the API now (blocking): Fargate's prices in `region`, by architecture."""
        return fargate_prices(self._get_products(fargate_query(region)), region)

    def _get_products(self, query: Query) -> list[str]:
        filters: list[FilterTypeDef] = [
            {"Type": "TERM_MATCH", "Field": name, "Value": value} for name, value in query.filters
        ]
        items: list[str] = []
        try:
            paginator = self._client().get_paginator("get_products")
            pages = paginator.paginate(
                ServiceCode=query.service_code,
                Filters=filters,
                FormatVersion="aws_v1",
                PaginationConfig={"PageSize": _PAGE_SIZE},
            )
            for page in pages:
                items.extend(page.get("PriceList", []))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise PriceListError(f"GetProducts {query.service_code}: {exc}") from exc
        return items

    def _client(self) -> PricingClient:
        with self._client_lock:
            if self._client_instance is None:
                if self._cache.closed:
                    raise PriceListError("the price source is closed")
                # A session of its own: boto3's default session is not thread-safe.
                self._client_instance = Session().client(
                    "pricing",
                    region_name=self.config.endpoint_region,
                    endpoint_url=self.config.endpoint_url,
                    config=client_config(
                        self.config.retry_mode, self.config.max_attempts, self.config.timeout
                    ),
                )
            return self._client_instance


def _is_plausible(key: CacheKey) -> bool:
    if isinstance(key, Ec2Key):
        return (
            is_plausible_region(key.region)
            and is_plausible_instance_type(key.instance_type)
            and key.operating_system in OPERATING_SYSTEMS
        )
    return is_plausible_region(key.region)


def _describe(key: CacheKey) -> str:
    if isinstance(key, Ec2Key):
        return f"EC2 {key.instance_type} ({key.operating_system}) in {key.region}"
    if isinstance(key, _LambdaKey):
        return f"Lambda ({key.arch}) in {key.region}"
    return f"Fargate ({key.arch}) in {key.region}"


def _as_of(value: CacheValue | None) -> str:
    if isinstance(value, Price):
        return value.as_of
    if isinstance(value, LambdaPrice):
        return value.gb_second.as_of
    if isinstance(value, FargatePrice):
        return value.vcpu_hour.as_of
    return "unknown"
