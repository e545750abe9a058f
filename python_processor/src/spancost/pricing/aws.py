"""`AwsPriceList`: live AWS prices from the Price List Query API, answered from memory.

The hot path never waits for the network. `ec2`, `lambda_` and `fargate` look
in an in-memory cache and return at once; a key the cache does not hold
answers None and is queued for a background thread, which asks the API
(``GetProducts`` through a real boto3 client) and fills the cache. Entries are
fetched again before they expire (after 80 % of ``refresh``) as long as
somebody still asks for them.

When the API fails, the last good price keeps answering past its expiry
(counted in `stale_hits`, logged once) and is retried with backoff; a key that
never had a good price answers None, and the caller falls back to the
bundled snapshot. Throttling, 5xx answers and connection errors are retried
by botocore itself (``retries={"mode": "standard" | "adaptive"}``: capped
exponential backoff with jitter), not by a loop here.

The queries and the reading of the answers are pure functions in
`spancost.pricing.aws_products`.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Literal
from urllib.parse import urlsplit

import botocore.config
import botocore.exceptions
from boto3.session import Session

from spancost.config import ConfigSection, describe_type
from spancost.errors import ConfigError
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
    parse_duration,
)
from spancost.pricing.model import ARCHES, Arch, Ec2Key, FargatePrice, LambdaPrice, Price

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

RETRY_MODES: Final = ("standard", "adaptive")

# Refresh an entry once it is this old, relative to `refresh`: early enough
# that a slow or retried fetch still lands before it expires.
REFRESH_AHEAD: Final = 0.8
# After a failed fetch, wait refresh/16, /8, ... up to `refresh` before the next.
_RETRY_DIVISOR: Final = 16.0
_MIN_RETRY_DELAY: Final = 0.05
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
    retry_mode: Literal["standard", "adaptive"] = "standard"
    max_attempts: int = 5
    timeout: float = 10.0
    operating_system: str = "Linux"
    max_entries: int = 10_000

    @classmethod
    def from_config(cls, config: object, path: str = DEFAULT_CONFIG_PATH) -> AwsPriceListConfig:
        """Read and check a config mapping; `ConfigError` names the key (``<path>.refresh``)."""
        section = config if isinstance(config, ConfigSection) else ConfigSection(config, path)
        section.allow_only(
            "enabled",
            "endpoint_region",
            "endpoint_url",
            "refresh",
            "retry_mode",
            "max_attempts",
            "timeout",
            "operating_system",
            "max_entries",
        )
        endpoint_region = section.get_str("endpoint_region", cls.endpoint_region)
        if endpoint_region not in ENDPOINT_REGIONS:
            raise ConfigError(
                section.key("endpoint_region"),
                f"the Price List API is served only from {', '.join(ENDPOINT_REGIONS)}; "
                f"got {endpoint_region!r} (the prices of every region are available from each)",
            )
        endpoint_url = section.get_raw("endpoint_url", None)
        if endpoint_url is not None:
            endpoint_url = _check_url(endpoint_url, section.key("endpoint_url"))
        retry_mode = section.get_str("retry_mode", cls.retry_mode)
        if retry_mode not in RETRY_MODES:
            raise ConfigError(
                section.key("retry_mode"),
                f"must be one of {', '.join(RETRY_MODES)}, got {retry_mode!r}",
            )
        operating_system = section.get_str("operating_system", cls.operating_system)
        canonical = {name.lower(): name for name in OPERATING_SYSTEMS}
        if operating_system.strip().lower() not in canonical:
            raise ConfigError(
                section.key("operating_system"),
                f"must be one of {', '.join(OPERATING_SYSTEMS)}, got {operating_system!r}",
            )
        return cls(
            enabled=section.get_bool("enabled", cls.enabled),
            endpoint_region=endpoint_region,
            endpoint_url=endpoint_url,
            refresh=_duration(section, "refresh", "15m"),
            retry_mode="adaptive" if retry_mode == "adaptive" else "standard",
            max_attempts=_positive_int(section, "max_attempts", cls.max_attempts, maximum=20),
            timeout=_duration(section, "timeout", "10s"),
            operating_system=canonical[operating_system.strip().lower()],
            max_entries=_positive_int(section, "max_entries", cls.max_entries),
        )


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


@dataclass(slots=True)
class _Entry:
    """What the cache knows about one key. `value` None: not found, or never fetched."""

    value: CacheValue | None = None
    fetched_at: float = float("-inf")  # when `value` was last confirmed by the API
    attempted_at: float = float("-inf")  # when the API was last asked
    next_fetch: float = float("-inf")  # not before this
    last_used: float = float("-inf")  # last lookup
    failures: int = 0  # consecutive
    stale_logged: bool = False


@dataclass
class _Pending:
    keys: OrderedDict[CacheKey, None] = field(default_factory=OrderedDict)
    in_flight: CacheKey | None = None


class AwsPriceList:
    """A `PriceSource` answering from memory, refreshed from the AWS Price List API.

    Counters (read them any time): `fetches` (fetches started), `failures`,
    `hits` (fresh answers), `stale_hits` (last good price past its expiry),
    `misses` (no price in memory), `dropped` (keys not queued: cache full).
    """

    name = SOURCE_NAME

    def __init__(
        self,
        config: Mapping[str, Any] | ConfigSection | AwsPriceListConfig | None = None,
        *,
        path: str = DEFAULT_CONFIG_PATH,
    ) -> None:
        if isinstance(config, AwsPriceListConfig):
            self.config = config
        else:
            self.config = AwsPriceListConfig.from_config({} if config is None else config, path)
        self.fetches = 0
        self.failures = 0
        self.hits = 0
        self.stale_hits = 0
        self.misses = 0
        self.dropped = 0
        self._ttl = self.config.refresh
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._entries: dict[CacheKey, _Entry] = {}
        self._pending = _Pending()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._full_logged = False
        self._healthy = False
        self._client_lock = threading.Lock()
        self._client_instance: PricingClient | None = None
        # Read here, not on the hot path: botocore takes ~0.1 s to load its endpoint data.
        self._regions = _aws_regions() if self.enabled else frozenset()

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    @property
    def ready(self) -> bool:
        """Whether the last fetch succeeded: while False, a miss means "not known yet"."""
        return self._healthy

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
        if not self.enabled:
            return None
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                # Span attributes are arbitrary input: only what looks like a real
                # key is worth a request.
                if _is_plausible(key):
                    self._enqueue_locked(key)
                return None
            if entry.last_used <= entry.attempted_at:
                # Wanted again: the refresher may be asleep with nothing to do.
                self._wake.notify_all()
            entry.last_used = now
            if entry.value is None:
                self.misses += 1
                return None
            if now - entry.fetched_at < self._ttl:
                self.hits += 1
            else:
                self.stale_hits += 1
                if entry.failures and not entry.stale_logged:
                    entry.stale_logged = True
                    logger.warning(
                        "aws_pricelist: %s is past its refresh (%.0fs old) and the API "
                        "is failing; answering with the last good price, as of %s",
                        _describe(key),
                        now - entry.fetched_at,
                        _as_of(entry.value),
                    )
            return entry.value

    def _enqueue_locked(self, key: CacheKey) -> None:
        if self._closed or key in self._pending.keys or key == self._pending.in_flight:
            return
        known = len(self._entries) + len(self._pending.keys) + (self._pending.in_flight is not None)
        if known >= self.config.max_entries:
            self.dropped += 1
            if not self._full_logged:
                self._full_logged = True
                logger.warning(
                    "aws_pricelist: cache full (max_entries=%d); %s and other new keys are "
                    "not fetched, callers fall back to the bundled snapshot",
                    self.config.max_entries,
                    _describe(key),
                )
            return
        self._pending.keys[key] = None
        self._start_locked()
        self._wake.notify_all()

    # -- the background refresher ---------------------------------------------------

    def start(self) -> None:
        """Start the refresher thread (also started by the first cache miss)."""
        with self._lock:
            if self.enabled and not self._closed:
                self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="spancost-aws-pricelist", daemon=True
            )
            self._thread.start()

    def close(self, timeout: float | None = None) -> None:
        """Stop the refresher (a fetch in progress is abandoned) and close the client."""
        with self._lock:
            self._closed = True
            self._pending.keys.clear()
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(self.config.timeout if timeout is None else timeout)
        with self._client_lock:
            if self._client_instance is not None:
                self._client_instance.close()
                self._client_instance = None

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until no key is queued or being fetched; False on timeout (for tests, the CLI)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending.keys or self._pending.in_flight is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.wait(remaining)
            return True

    def _run(self) -> None:
        while True:
            with self._lock:
                key = self._next_key_locked()
                if key is None:
                    return
                self._pending.in_flight = key
                self.fetches += 1
            try:
                values = self._fetch(key)
            except PriceListError as exc:
                self._record_failure(key, exc)
            except Exception as exc:  # the thread must survive anything a fetch raises
                logger.exception("aws_pricelist: unexpected error fetching %s", _describe(key))
                self._record_failure(key, exc)
            else:
                self._record_success(key, values)
            finally:
                with self._lock:
                    self._pending.in_flight = None
                    self._wake.notify_all()

    def _next_key_locked(self) -> CacheKey | None:
        """The next key to fetch, waiting for one; None once closed."""
        while not self._closed:
            if self._pending.keys:
                key, _ = self._pending.keys.popitem(last=False)
                return key
            now = time.monotonic()
            due_key, due_at = None, float("inf")
            for key, entry in self._entries.items():
                # Only what was asked for since the last fetch: a key nobody uses
                # is left to expire rather than fetched forever.
                if entry.last_used > entry.attempted_at and entry.next_fetch < due_at:
                    due_key, due_at = key, entry.next_fetch
            if due_key is not None and due_at <= now:
                return due_key
            self._wake.wait(None if due_key is None else due_at - now)
        return None

    def _record_success(self, key: CacheKey, values: Mapping[CacheKey, CacheValue | None]) -> None:
        now = time.monotonic()
        with self._lock:
            self._healthy = True
            if self._closed:
                return
            for each, value in values.items():
                entry = self._entries.setdefault(each, _Entry())
                if entry.failures and each == key:
                    logger.info(
                        "aws_pricelist: %s fetched again after %d failed attempts",
                        _describe(each),
                        entry.failures,
                    )
                entry.value = value
                entry.fetched_at = entry.attempted_at = now
                entry.failures = 0
                entry.stale_logged = False
                # Found: refresh before it expires. Not found: ask again after a whole
                # period, and only if somebody still wants it.
                entry.next_fetch = now + self._ttl * (REFRESH_AHEAD if value is not None else 1)
            if values.get(key) is None:
                logger.info(
                    "aws_pricelist: no price for %s in the Price List API; "
                    "callers fall back to the bundled snapshot",
                    _describe(key),
                )

    def _record_failure(self, key: CacheKey, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self.failures += 1
            self._healthy = False
            if self._closed:
                return
            entry = self._entries.setdefault(key, _Entry())
            entry.failures += 1
            entry.attempted_at = now
            delay = self._ttl / _RETRY_DIVISOR * 2 ** (entry.failures - 1)
            entry.next_fetch = now + max(_MIN_RETRY_DELAY, min(self._ttl, delay))
            if entry.failures == 1:
                fallback = (
                    f"answering with the last good price, as of {_as_of(entry.value)}"
                    if entry.value is not None
                    else "no price until it succeeds; callers fall back to the bundled snapshot"
                )
                logger.warning(
                    "aws_pricelist: fetching %s failed: %s; %s",
                    _describe(key),
                    exc,
                    fallback,
                )
            else:
                logger.debug(
                    "aws_pricelist: fetching %s failed again (%d): %s",
                    _describe(key),
                    entry.failures,
                    exc,
                )

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
                if self._closed:
                    raise PriceListError("the price source is closed")
                # A session of its own: boto3's default session is not thread-safe.
                session = Session()
                self._client_instance = session.client(
                    "pricing",
                    region_name=self.config.endpoint_region,
                    endpoint_url=self.config.endpoint_url,
                    config=botocore.config.Config(
                        retries={
                            "mode": self.config.retry_mode,
                            "total_max_attempts": self.config.max_attempts,
                        },
                        connect_timeout=self.config.timeout,
                        read_timeout=self.config.timeout,
                        user_agent_extra="spancost",
                    ),
                )
            return self._client_instance


@functools.cache
def _aws_regions() -> frozenset[str]:
    """Regions botocore knows (its bundled endpoints data: no network)."""
    session = Session()
    regions: set[str] = set()
    for partition in ("aws", "aws-us-gov"):
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)


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


def _duration(section: ConfigSection, name: str, default: str) -> float:
    return parse_duration(section.get_raw(name, default), section.key(name))


def _positive_int(
    section: ConfigSection, name: str, default: int, maximum: int | None = None
) -> int:
    value = section.get_raw(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(section.key(name), f"must be an integer, got {describe_type(value)}")
    if value < 1 or (maximum is not None and value > maximum):
        limit = f"between 1 and {maximum}" if maximum is not None else "at least 1"
        raise ConfigError(section.key(name), f"must be {limit}, got {value}")
    return value


def _check_url(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {describe_type(value)}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"must be an http:// or https:// URL, got {value!r}")
    return value
