"""The one backoff of the background sources (spancost.pricing.backoff)."""

from __future__ import annotations

import pytest

from spancost.pricing.backoff import retry_delay


def test_it_starts_at_a_sixteenth_of_the_period_and_doubles_up_to_it() -> None:
    delays = [retry_delay(3600.0, failures) for failures in range(1, 8)]
    assert delays == [225.0, 450.0, 900.0, 1800.0, 3600.0, 3600.0, 3600.0]


@pytest.mark.parametrize(("period", "failures", "delay"), [(0.1, 1, 0.05), (0.0, 3, 0.05)])
def test_it_never_retries_sooner_than_a_twentieth_of_a_second(
    period: float, failures: int, delay: float
) -> None:
    assert retry_delay(period, failures) == delay
