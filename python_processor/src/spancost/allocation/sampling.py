"""How many spans one sampled span stands for: its adjusted count (pure).

OpenTelemetry's probability sampling carries the rejection threshold in the W3C
``tracestate``, vendor key ``ot``, sub-key ``th`` (``ot=th:8`` keeps half: the
threshold is the hexadecimal fraction 0x8 / 0x10 of 2^56 randomness values that are
rejected). The sampling probability is ``(2^56 - threshold) / 2^56`` and the
adjusted count its inverse: ``th:0`` (or no ``th``) is 1, ``th:8`` is 2, ``th:e6`` is
10 (approximately). An unreadable threshold counts as 1, so it can only under-count.
"""

from __future__ import annotations

from typing import Final

__all__ = ["adjusted_count", "threshold"]

_MAX_THRESHOLD: Final = 1 << 56
_HEX_DIGITS: Final = 14


def threshold(trace_state: str) -> int | None:
    """The ``th`` rejection threshold in a ``tracestate`` header, or None."""
    for member in trace_state.split(","):
        key, _, value = member.strip().partition("=")
        if key.strip() != "ot":
            continue
        for field in value.split(";"):
            name, _, text = field.partition(":")
            if name != "th":
                continue
            if not 1 <= len(text) <= _HEX_DIGITS:
                return None
            try:
                return int(text.ljust(_HEX_DIGITS, "0"), 16)
            except ValueError:
                return None
    return None


def adjusted_count(trace_state: str) -> float:
    """How many spans a span with this ``tracestate`` stands for (1 if not sampled by
    probability, or unreadable)."""
    value = threshold(trace_state) if trace_state else None
    if value is None or not 0 <= value < _MAX_THRESHOLD:
        return 1.0
    return _MAX_THRESHOLD / (_MAX_THRESHOLD - value)
