"""`AwsSpotPrices`: live EC2 spot prices from ``DescribeSpotPriceHistory``, answered from memory.

A price source that offers only spot prices (`SpotPriceSource.ec2_spot`): the
pricing core asks it for a node marked spot, and applies the configured spot
discount to the on-demand price when it answers None. It never waits for the
network: its memory is a `spancost.pricing.live_cache.LiveCache`, filled and
refreshed by a background thread that asks each region's EC2 endpoint through a
real boto3 client; a cold miss answers None at once and queues the fetch.

One fetch per (region, instance type, operating system) answers every zone of
the region (`aws_spot_history.spot_prices`): a node whose zone is known gets that
zone's price, another the mean of the zones'. A price is used for at most
``max_age`` after the API last confirmed it; past that (the API failing all
along) it answers None and the discount applies, until a fetch succeeds again.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

import botocore.exceptions
from boto3.session import Session

from spancost.config import parse
from spancost.pricing.aws_client import RetryMode, aws_regions, client_config
from spancost.pricing.aws_products import is_plausible_instance_type
from spancost.pricing.aws_spot_history import (
    PRODUCT_DESCRIPTIONS,
    SOURCE_NAME,
    SpotKey,
    SpotPriceError,
    SpotPrices,
    spot_prices,
    spot_query,
)
from spancost.pricing.live_cache import CacheCounters, LiveCache, Wording
from spancost.pricing.model import Arch, Ec2Key, FargatePrice, LambdaPrice, Price
from spancost.settings.prices import AwsSpotSettings

__all__ = ["AwsSpotConfig", "AwsSpotPrices", "SpotPriceError"]

logger = logging.getLogger(__name__)

_PAGE_SIZE: Final = 1000  # the API's maximum


class _Paginator(Protocol):
    def paginate(self, **kwargs: Any) -> Iterable[Mapping[str, Any]]: ...


class _Ec2Client(Protocol):
    """The part of boto3's EC2 client used here (its full stubs are not a dependency)."""

    def get_paginator(self, operation_name: Literal["describe_spot_price_history"]) -> _Paginator:
        """boto3's paginator, following ``NextToken``."""

    def close(self) -> None: ...


@dataclass(frozen=True)  # no slots: from_config reads the defaults off the class
class AwsSpotConfig:
    """The ``prices.aws_spot`` section, validated.

    `enabled` defaults to true here: building the source means it is wanted. In
    the plugin's configuration the price catalog reads ``enabled`` first, and
    there it defaults to false (the API needs credentials and egress).
    """

    enabled: bool = True
    endpoint_url: str | None = None
    refresh: float = 300.0
    max_age: float = 3600.0
    retry_mode: RetryMode = "standard"
    max_attempts: int = 5
    timeout: float = 10.0
    max_entries: int = 10_000

    @classmethod
    def from_config(cls, config: object, path: str = "") -> AwsSpotConfig:
        """Read and check a config mapping; `ConfigError` names the key (``<path>.refresh``)."""
        settings = parse(AwsSpotSettings, config, path)
        # Building the source means it is wanted: enabled unless it says false.
        return cls(**{**settings.model_dump(), "enabled": settings.enabled is not False})


class AwsSpotPrices(CacheCounters):
    """A price source of EC2 spot prices only, answering from memory.

    Counters (read them any time): `fetches`, `failures`, `hits` (fresh
    answers), `stale_hits` (last good price past ``refresh``, the API failing),
    `expired` (not answered: older than ``max_age``), `misses`, `dropped`.
    """

    name = SOURCE_NAME
    # The price book reads `ready` to tell "not loaded yet" from "unknown" when no
    # source knows an on-demand price. This source never knows one, so it is never
    # the source that might: it must not turn those misses into source_unavailable.
    ready: Final = True

    def __init__(
        self,
        config: Mapping[str, Any] | AwsSpotConfig | None = None,
        *,
        path: str = "",
    ) -> None:
        if isinstance(config, AwsSpotConfig):
            self.config = config
        else:
            self.config = AwsSpotConfig.from_config({} if config is None else config, path)
        self._cache: LiveCache[SpotKey, SpotPrices] = LiveCache(
            fetch=self._fetch,
            ttl=self.config.refresh,
            max_age=self.config.max_age,
            max_entries=self.config.max_entries,
            wording=Wording(SOURCE_NAME, "the EC2 spot price history", "the spot discount"),
            describe=_describe,
            as_of=lambda prices: prices.region.as_of,
            is_plausible=self._is_plausible,
            expected_errors=(SpotPriceError,),
            logger=logger,
            thread_name="spancost-aws-spot",
        )
        self._client_lock = threading.Lock()
        self._clients: dict[str, _Ec2Client] = {}
        # Read here, not on the hot path: botocore takes ~0.1 s to load its endpoint data.
        self._regions = aws_regions() if self.enabled else frozenset()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def healthy(self) -> bool:
        """Whether the last fetch succeeded."""
        return self._cache.ready

    # -- the hot path: memory only ------------------------------------------------

    def ec2_spot(self, key: Ec2Key) -> Price | None:
        """The spot price per hour in `key`'s zone (the region's mean if unknown), or None."""
        if not self.enabled:
            return None
        prices = self._cache.get(SpotKey(key.region, key.instance_type, key.operating_system))
        return None if prices is None else prices.for_zone(key.availability_zone)

    def ec2(self, key: Ec2Key) -> Price | None:
        return None  # on-demand prices are the other sources'

    def lambda_(self, region: str, arch: Arch) -> LambdaPrice | None:
        return None

    def fargate(self, region: str, arch: Arch) -> FargatePrice | None:
        return None

    def knows_region(self, region: str) -> bool:
        return False  # it knows no on-demand price anywhere

    def _is_plausible(self, key: SpotKey) -> bool:
        # Only regions botocore knows: the region names the endpoint (ec2.<region>...).
        return (
            key.region in self._regions
            and is_plausible_instance_type(key.instance_type)
            and key.operating_system in PRODUCT_DESCRIPTIONS
        )

    # -- the background refresher ---------------------------------------------------

    def start(self) -> None:
        """Start the refresher thread (also started by the first cache miss)."""
        if self.enabled:
            self._cache.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop the refresher (a fetch in progress is abandoned) and close the clients."""
        self._cache.close(self.config.timeout if timeout is None else timeout)
        with self._client_lock:
            clients, self._clients = self._clients, {}
        for client in clients.values():
            client.close()

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until no key is queued or being fetched; False on timeout (for tests)."""
        return self._cache.wait_until_idle(timeout)

    def _fetch(self, key: SpotKey) -> dict[SpotKey, SpotPrices | None]:
        return {key: self.fetch_spot(key)}

    # -- I/O: one DescribeSpotPriceHistory query, paginated ------------------------------

    def fetch_spot(self, key: SpotKey, now: dt.datetime | None = None) -> SpotPrices | None:
        """Ask the API now (blocking): the spot prices of `key` in effect at `now`."""
        query = spot_query(key, now or dt.datetime.now(dt.UTC))
        items: list[Mapping[str, Any]] = []
        try:
            paginator = self._client(key.region).get_paginator("describe_spot_price_history")
            pages = paginator.paginate(
                InstanceTypes=list(query.instance_types),
                ProductDescriptions=list(query.product_descriptions),
                StartTime=query.at,
                EndTime=query.at,
                PaginationConfig={"PageSize": _PAGE_SIZE},
            )
            for page in pages:
                items.extend(page.get("SpotPriceHistory", []))
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise SpotPriceError(
                f"DescribeSpotPriceHistory {key.instance_type} in {key.region}: {exc}"
            ) from exc
        return spot_prices(items, key)

    def _client(self, region: str) -> _Ec2Client:
        with self._client_lock:
            client = self._clients.get(region)
            if client is None:
                if self._cache.closed:
                    raise SpotPriceError("the price source is closed")
                # A session of its own: boto3's default session is not thread-safe.
                # EC2 is regional: one client per region, signed for it.
                client = Session().client(
                    "ec2",
                    region_name=region,
                    endpoint_url=self.config.endpoint_url,
                    config=client_config(
                        self.config.retry_mode, self.config.max_attempts, self.config.timeout
                    ),
                )
                self._clients[region] = client
            return client


def _describe(key: SpotKey) -> str:
    return f"EC2 spot {key.instance_type} ({key.operating_system}) in {key.region}"
