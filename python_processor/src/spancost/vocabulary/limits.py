"""The numeric bounds more than one layer holds data to, defined once.

Beyond them a value is bad data, not a measurement: the pricer refuses it, the
configuration does not allow a limit above it, the totals adapter reads it as invalid.
No import of spancost.
"""

from __future__ import annotations

from typing import Final

__all__ = ["INT64_MAX", "INT64_MIN", "MAX_DURATION_NS", "MAX_SPAN_USD", "MAX_TOKENS"]

INT64_MIN: Final = -(2**63)
INT64_MAX: Final = 2**63 - 1
"""OTLP's integer attribute values; also the last instant a signed 64-bit nanosecond
column holds (2262-04-11)."""

MAX_SPAN_USD: Final = 1e9
"""No span costs a billion dollars: a higher price is bad data (e.g. a huge count), and
below it sums of any number of spans stay finite."""

MAX_TOKENS: Final = 1e12
"""More tokens than this on one span is bad data, not a price."""

MAX_DURATION_NS: Final = 366 * 24 * 3600 * 10**9
"""Longer spans are taken for bad data (e.g. an unset start time), not priced."""
