"""What the live AWS price sources share: their client settings, read and checked.

`aws.AwsPriceList` and `aws_spot.AwsSpotPrices` take the same keys for their
boto3 clients (``endpoint_url``, ``retry_mode``, ``max_attempts``, ``timeout``:
`spancost.settings.prices`) and get credentials from boto3's standard chain. No
network: `aws_regions` reads botocore's bundled endpoint data.
"""

from __future__ import annotations

import functools
from typing import Literal

import botocore.config
from boto3.session import Session

__all__ = ["RetryMode", "aws_regions", "client_config"]

RetryMode = Literal["standard", "adaptive"]


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
