"""What the live AWS price sources share: their client settings, read and checked.

`aws.AwsPriceList` and `aws_spot.AwsSpotPrices` take the same keys for their
boto3 clients (``endpoint_url``, ``retry_mode``, ``max_attempts``, ``timeout``)
and get credentials from boto3's standard chain; the readers here raise
`ConfigError` naming the key. No network: `aws_regions` reads botocore's
bundled endpoint data.
"""

from __future__ import annotations

import functools
from typing import Final, Literal
from urllib.parse import urlsplit

import botocore.config
from boto3.session import Session

from spancost.config import ConfigSection, describe_type, parse_duration
from spancost.errors import ConfigError

__all__ = [
    "RETRY_MODES",
    "RetryMode",
    "aws_regions",
    "client_config",
    "read_duration",
    "read_positive_int",
    "read_retry_mode",
    "read_url",
]

RetryMode = Literal["standard", "adaptive"]
RETRY_MODES: Final[tuple[RetryMode, ...]] = ("standard", "adaptive")


def read_duration(section: ConfigSection, name: str, default: str) -> float:
    """A duration such as ``30s``, ``15m``, ``1h30m``, in seconds."""
    return parse_duration(section.get_raw(name, default), section.key(name))


def read_positive_int(
    section: ConfigSection, name: str, default: int, maximum: int | None = None
) -> int:
    value = section.get_raw(name, default)
    if not isinstance(value, int) or isinstance(value, bool):
        raise ConfigError(section.key(name), f"must be an integer, got {describe_type(value)}")
    if value < 1 or (maximum is not None and value > maximum):
        limit = f"between 1 and {maximum}" if maximum is not None else "at least 1"
        raise ConfigError(section.key(name), f"must be {limit}, got {value}")
    return value


def read_url(section: ConfigSection, name: str) -> str | None:
    """An ``http://`` or ``https://`` URL, or None when absent."""
    value = section.get_raw(name, None)
    if value is None:
        return None
    key = section.key(name)
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a string, got {describe_type(value)}")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(key, f"must be an http:// or https:// URL, got {value!r}")
    return value


def read_retry_mode(section: ConfigSection, name: str, default: RetryMode) -> RetryMode:
    value = section.get_str(name, default)
    for mode in RETRY_MODES:
        if value == mode:
            return mode
    raise ConfigError(section.key(name), f"must be one of {', '.join(RETRY_MODES)}, got {value!r}")


def client_config(
    retry_mode: RetryMode, max_attempts: int, timeout: float
) -> botocore.config.Config:
    """botocore's settings for a source's client: its retries (throttling, 5xx and
    connection errors, with capped exponential backoff and jitter) and timeouts."""
    return botocore.config.Config(
        retries={"mode": retry_mode, "total_max_attempts": max_attempts},
        connect_timeout=timeout,
        read_timeout=timeout,
        user_agent_extra="spancost",
    )


@functools.cache
def aws_regions() -> frozenset[str]:
    """Regions botocore knows (its bundled endpoints data: no network), aws and aws-us-gov."""
    session = Session()
    regions: set[str] = set()
    for partition in ("aws", "aws-us-gov"):
        regions.update(session.get_available_regions("ec2", partition_name=partition))
    return frozenset(regions)
