"""Price sources by name, and the ordered fallback over them (`PriceBook`).

The registry maps a source name (the key under ``prices:`` in the plugin's
configuration) to a factory. Lookups ask the enabled sources in
`FALLBACK_ORDER` and take the first price that is known and valid, so the live
AWS Price List (when enabled and loaded) wins over the bundled snapshot::

    prices:
      aws_pricelist: {enabled: true, refresh: 15m}   # the rest is the source's own config
      aws_spot: {enabled: true, refresh: 5m}         # spot prices only (ec2_spot)
      bundled: {enabled: true}                       # path: another snapshot file

A factory imports its module only when the source is enabled: with the live
sources disabled, boto3 is never imported. Every price says where it came from
(`Price.source`) and as of when (`Price.as_of`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, TypeVar

from spancost.config import join_key, parse
from spancost.errors import ConfigError
from spancost.pricing.model import (
    Arch,
    Ec2Key,
    FargatePrice,
    LambdaPrice,
    Price,
    PriceSource,
    SpotPriceSource,
    Unpriced,
    is_valid_price,
)
from spancost.pricing.snapshot import SnapshotError, load_bundled, load_snapshot
from spancost.settings.prices import BundledSettings, PricesSettings

__all__ = [
    "DEFAULT_ENABLED",
    "FALLBACK_ORDER",
    "SOURCE_FACTORIES",
    "PriceBook",
    "SourceFactory",
    "build_price_book",
]

logger = logging.getLogger(__name__)

SourceFactory = Callable[[Mapping[str, Any], str], PriceSource]
"""Builds a source from its configuration (``enabled`` removed) and the key path for errors."""

_T = TypeVar("_T")

_UNAVAILABLE: Final = Unpriced("source_unavailable")
_UNKNOWN_REGION: Final = Unpriced("unknown_region")
_UNKNOWN_TYPE: Final = Unpriced("unknown_instance_type")
_ERROR_LOG_INTERVAL_S: Final = 60.0


def _bundled(config: Mapping[str, Any], path: str) -> PriceSource:
    file = parse(BundledSettings, config, path).path
    try:
        return load_snapshot(file) if file else load_bundled()
    except SnapshotError as exc:
        raise ConfigError(join_key(path, "path") if file else path, str(exc)) from exc


def _aws_pricelist(config: Mapping[str, Any], path: str) -> PriceSource:
    # Imported here: boto3 is loaded only when the live source is enabled.
    try:
        from spancost.pricing.aws import AwsPriceList  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(
            path, f"cannot be enabled: the AWS Price List source is missing ({exc})"
        ) from exc
    # Its ConfigErrors already name the full key (prices.aws_pricelist.refresh).
    source: PriceSource = AwsPriceList(config, path=path)
    return source


def _aws_spot(config: Mapping[str, Any], path: str) -> PriceSource:
    # Imported here: boto3 is loaded only when the live source is enabled.
    try:
        from spancost.pricing.aws_spot import AwsSpotPrices  # noqa: PLC0415
    except ImportError as exc:
        raise ConfigError(
            path, f"cannot be enabled: the AWS spot price source is missing ({exc})"
        ) from exc
    # Its ConfigErrors already name the full key (prices.aws_spot.refresh).
    source: PriceSource = AwsSpotPrices(config, path=path)
    return source


SOURCE_FACTORIES: Final[dict[str, SourceFactory]] = {
    "aws_pricelist": _aws_pricelist,
    "aws_spot": _aws_spot,
    "bundled": _bundled,
}
"""The registry: source name → factory."""

FALLBACK_ORDER: Final[tuple[str, ...]] = ("aws_pricelist", "aws_spot", "bundled")
"""Which source is asked first: live prices before the snapshot shipped with spancost.
``aws_spot`` answers spot prices only (`PriceBook.ec2_spot`)."""

DEFAULT_ENABLED: Final[Mapping[str, bool]] = {
    "aws_pricelist": False,
    "aws_spot": False,
    "bundled": True,
}


def build_price_book(
    config: object, factories: Mapping[str, SourceFactory] | None = None, path: str = "prices"
) -> PriceBook:
    """The sources enabled in the ``prices`` section `config`, in fallback order.

    Raises `ConfigError` naming the key (below `path`) for unknown sources, a
    non-boolean ``enabled`` and whatever a source's own validation refuses.
    """
    registry = SOURCE_FACTORIES if factories is None else factories
    settings = parse(PricesSettings, config, path)
    raw: Mapping[str, Any] = config if isinstance(config, Mapping) else {}
    sources: list[PriceSource] = []
    try:
        for name in FALLBACK_ORDER:
            enabled: bool | None = getattr(getattr(settings, name), "enabled", None)
            if not (DEFAULT_ENABLED[name] if enabled is None else enabled):
                continue
            own = {key: value for key, value in raw.get(name, {}).items() if key != "enabled"}
            sources.append(registry[name](own, join_key(path, name)))
            logger.info("price source %s enabled", name)
    except BaseException:
        PriceBook(sources).close()
        raise
    if not sources:
        logger.warning("no price source is enabled: compute spans will be source_unavailable")
    return PriceBook(sources)


class PriceBook:
    """Asks sources in order; the first valid price wins.

    A miss is explained as an `Unpriced` reason: ``source_unavailable`` if a
    source that might know is not ready or failed, else
    ``unknown_instance_type`` if some source knows the region, else
    ``unknown_region``. A source that raises is treated as unavailable for that
    lookup and logged (at most once a minute per source): a broken source never
    fails a batch.
    """

    def __init__(self, sources: Sequence[PriceSource]) -> None:
        self.sources: tuple[PriceSource, ...] = tuple(sources)
        self._last_error_log: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def names(self) -> list[str]:
        """The sources' names, in the order they are asked."""
        return [source.name for source in self.sources]

    @property
    def default_operating_system(self) -> str:
        """The EC2 OS to assume when a resource has no ``os.type``.

        The first source's ``operating_system`` setting if it has one (the AWS
        Price List source does), else ``Linux``.
        """
        for source in self.sources:
            value = getattr(source, "operating_system", None)
            if isinstance(value, str) and value:
                return value
        return "Linux"

    def ec2(self, key: Ec2Key) -> Price | Unpriced:
        """The on-demand hourly price of `key`."""
        return self._ask(key.region, lambda s: s.ec2(key))

    def ec2_spot(self, key: Ec2Key) -> Price | None:
        """A spot hourly price, from the first source that offers spot prices and knows one."""
        for source in self.sources:
            if not isinstance(source, SpotPriceSource):
                continue
            try:
                price = source.ec2_spot(key)
            except Exception:  # a broken source must never fail a batch
                self._log_error(source)
                continue
            if price is not None and is_valid_price(price):
                return price
        return None

    def lambda_(self, region: str, arch: Arch) -> LambdaPrice | Unpriced:
        """Lambda's GB-second and request prices."""
        return self._ask(
            region,
            lambda s: s.lambda_(region, arch),
            valid=lambda p: is_valid_price(p.gb_second) and is_valid_price(p.request),
        )

    def fargate(self, region: str, arch: Arch) -> FargatePrice | Unpriced:
        """Fargate's vCPU-hour and GB-hour prices."""
        return self._ask(
            region,
            lambda s: s.fargate(region, arch),
            valid=lambda p: is_valid_price(p.vcpu_hour) and is_valid_price(p.gb_hour),
        )

    def close(self) -> None:
        """Close every source that has a ``close()``."""
        for source in self.sources:
            close = getattr(source, "close", None)
            if callable(close):
                try:
                    close()
                except Exception:
                    logger.exception("closing price source %s failed", source.name)

    def _ask(
        self,
        region: str,
        lookup: Callable[[PriceSource], _T | None],
        valid: Callable[[_T], bool] = is_valid_price,
    ) -> _T | Unpriced:
        unavailable = False
        region_known = False
        for source in self.sources:
            try:
                price = lookup(source)
                if price is not None and valid(price):
                    return price
                if price is not None:
                    self._log_invalid(source, price)
                if not _is_ready(source):
                    unavailable = True
                elif source.knows_region(region):
                    region_known = True
            except Exception:  # a broken source must never fail a batch
                self._log_error(source)
                unavailable = True
        if unavailable:
            return _UNAVAILABLE
        return _UNKNOWN_TYPE if region_known else _UNKNOWN_REGION

    def _should_log(self, source: PriceSource) -> bool:
        now = time.monotonic()
        with self._lock:
            last = self._last_error_log.get(source.name)
            if last is not None and now - last < _ERROR_LOG_INTERVAL_S:
                return False
            self._last_error_log[source.name] = now
        return True

    def _log_error(self, source: PriceSource) -> None:
        if self._should_log(source):
            logger.warning(
                "price source %s failed a lookup; trying the next source",
                source.name,
                exc_info=True,
            )

    def _log_invalid(self, source: PriceSource, price: object) -> None:
        if self._should_log(source):
            logger.warning(
                "price source %s returned an invalid price %r; trying the next source",
                source.name,
                price,
            )


def _is_ready(source: PriceSource) -> bool:
    ready = getattr(source, "ready", True)
    if callable(ready):
        ready = ready()
    return bool(ready)
