"""The ``prices`` section of ``spancost.cost`` (and of the totals sink's ``allocation``):
which price sources answer, and the settings of each (see `spancost.pricing.catalog`)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, ModelWrapValidatorHandler, model_validator

from spancost.config import Choice, ConfigModel, Duration, HttpUrl, Integer, default, invalid
from spancost.pricing.aws_products import ENDPOINT_REGIONS, OPERATING_SYSTEMS

__all__ = [
    "RETRY_MODES",
    "AwsPriceListSettings",
    "AwsSpotSettings",
    "BundledSettings",
    "PricesSettings",
]

RETRY_MODES = ("standard", "adaptive")


def _endpoint_region(region: str) -> str:
    if region not in ENDPOINT_REGIONS:
        raise invalid(
            f"the Price List API is served only from {', '.join(ENDPOINT_REGIONS)}; "
            f"got {region!r} (the prices of every region are available from each)"
        )
    return region


class _AwsClientSettings(ConfigModel):
    """What both live AWS sources take for their boto3 client."""

    enabled: bool | None = None
    """Ask this source (under ``prices``: default false; it needs credentials and egress)."""
    endpoint_url: HttpUrl | None = None
    """Another endpoint for the API (a proxy, a test server)."""
    retry_mode: Annotated[str, Choice(RETRY_MODES)] = "standard"
    """botocore's retry mode for throttling, 5xx answers and connection errors."""
    max_attempts: Annotated[int, Integer(ge=1, le=20)] = 5
    """Attempts per call, the first included."""
    timeout: Duration = default("10s")
    """Connect and read timeout of one call."""
    max_entries: Annotated[int, Integer(ge=1)] = 10_000
    """Most prices held in memory."""


class AwsPriceListSettings(_AwsClientSettings):
    """``prices.aws_pricelist``: live on-demand prices from the AWS Price List Query API."""

    endpoint_region: Annotated[str, AfterValidator(_endpoint_region)] = "us-east-1"
    """Where the Price List API is asked (it serves every region's prices)."""
    refresh: Duration = default("15m")
    """How long a price is used before it is fetched again."""
    operating_system: Annotated[str, Choice(OPERATING_SYSTEMS, fold=True)] = "Linux"
    """The EC2 OS to price when a span's resource says none (``os.type``)."""


class AwsSpotSettings(_AwsClientSettings):
    """``prices.aws_spot``: live EC2 spot prices (``DescribeSpotPriceHistory``)."""

    refresh: Duration = default("5m")
    """How long a spot price is used before it is fetched again."""
    max_age: Duration = default("1h")
    """How long a spot price may answer at all while the API fails (at least ``refresh``)."""

    @model_validator(mode="wrap")
    @classmethod
    def _max_age_covers_refresh(
        cls, data: Any, handler: ModelWrapValidatorHandler[AwsSpotSettings]
    ) -> AwsSpotSettings:
        settings = handler(data)
        if settings.max_age < settings.refresh:
            written = data.get("max_age", "1h") if isinstance(data, dict) else settings.max_age
            raise invalid(
                f"must be at least refresh ({settings.refresh:g}s), got {written!r}", "max_age"
            )
        return settings


class BundledSettings(ConfigModel):
    """``prices.bundled``: the snapshot shipped with spancost, or another file like it."""

    enabled: bool | None = None
    """Ask the snapshot (default true)."""
    path: str = ""
    """Another snapshot file in the same format (empty: the shipped one)."""


class PricesSettings(ConfigModel):
    """Which price sources answer; they are asked in the order aws_pricelist, aws_spot,
    bundled."""

    aws_pricelist: AwsPriceListSettings | None = None
    aws_spot: AwsSpotSettings | None = None
    bundled: BundledSettings | None = None
