"""One backoff for every source that refreshes in the background (the AWS price caches,
the FX rates): after a failure, try again soon, then less and less often, never less
often than the source's own period (pure)."""

from __future__ import annotations

from typing import Final

__all__ = ["retry_delay"]

FIRST_RETRY_DIVISOR: Final = 16.0
"""The first retry comes after a sixteenth of the period, and each next one waits twice
as long, up to the period itself."""
MIN_RETRY_DELAY: Final = 0.05


def retry_delay(period: float, failures: int) -> float:
    """Seconds to wait after `failures` (at least 1) failures in a row of a source that is
    refreshed every `period` seconds."""
    delay = period / FIRST_RETRY_DIVISOR * 2.0 ** (max(failures, 1) - 1)
    return max(MIN_RETRY_DELAY, min(period, delay))
