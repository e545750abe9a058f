"""When the background sources fetch each key (spancost.pricing.schedule): the one backoff,
new keys first, refresh only what is wanted, followed keys always. Pure: `now` is given."""

from __future__ import annotations

import pytest

from spancost.pricing.schedule import Schedule, Want, retry_delay


def test_it_starts_at_a_sixteenth_of_the_period_and_doubles_up_to_it() -> None:
    delays = [retry_delay(3600.0, failures) for failures in range(1, 8)]
    assert delays == [225.0, 450.0, 900.0, 1800.0, 3600.0, 3600.0, 3600.0]


@pytest.mark.parametrize(("period", "failures", "delay"), [(0.1, 1, 0.05), (0.0, 3, 0.05)])
def test_it_never_retries_sooner_than_a_twentieth_of_a_second(
    period: float, failures: int, delay: float
) -> None:
    assert retry_delay(period, failures) == delay


def test_new_keys_come_first_in_the_order_they_came() -> None:
    schedule: Schedule[str] = Schedule(60.0)
    assert schedule.want("a", 0.0) is Want.QUEUED
    assert schedule.take(0.0) == ("a", None)
    schedule.succeeded("a", 0.0, {})
    schedule.want("a", 1.0)  # wanted again, due at 60
    assert [schedule.want(key, 1.0) for key in ("b", "c", "b")] == [
        Want.QUEUED,
        Want.QUEUED,
        Want.UNCHANGED,
    ]
    assert schedule.queued
    assert schedule.take(100.0) == ("b", None)
    assert schedule.take(100.0) == ("c", None)
    assert not schedule.queued
    assert schedule.take(100.0) == ("a", None)


def test_a_wanted_key_is_fetched_again_once_due() -> None:
    schedule: Schedule[str] = Schedule(60.0)
    schedule.want("a", 0.0)
    assert schedule.take(0.0) == ("a", None)
    schedule.succeeded("a", 1.0, {"a": 48.0})
    assert schedule.want("a", 2.0) is Want.RENEWED
    assert schedule.want("a", 3.0) is Want.UNCHANGED
    assert schedule.take(10.0) == (None, 39.0)
    assert schedule.take(49.0) == ("a", None)


def test_a_key_nobody_wanted_since_its_last_fetch_is_left_alone() -> None:
    schedule: Schedule[str] = Schedule(60.0)
    schedule.want("a", 0.0)
    schedule.take(0.0)
    schedule.succeeded("a", 1.0, {})  # due after the interval: 61
    assert schedule.take(1_000.0) == (None, None)
    assert schedule.want("a", 1_000.0) is Want.RENEWED
    assert schedule.take(1_000.0) == ("a", None)


def test_failures_back_off_from_a_sixteenth_of_the_interval_up_to_it() -> None:
    schedule: Schedule[str] = Schedule(160.0)
    schedule.want("a", 0.0)
    now, waits = 0.0, []
    for failures in range(1, 7):
        assert schedule.take(now) == ("a", None)
        assert schedule.failed("a", now) == failures
        schedule.want("a", now + 1.0)  # somebody still asks
        _, wait = schedule.take(now + 1.0)
        assert wait is not None
        waits.append(1.0 + wait)
        now += 1.0 + wait
    assert waits == [10.0, 20.0, 40.0, 80.0, 160.0, 160.0]
    assert schedule.failures("a") == 6
    schedule.succeeded("a", now, {})
    assert schedule.failures("a") == 0


def test_a_followed_key_is_fetched_at_once_then_whenever_due() -> None:
    schedule: Schedule[str] = Schedule(60.0)
    assert schedule.follow("rates")
    assert not schedule.follow("rates")
    assert schedule.take(0.0) == ("rates", None)
    schedule.succeeded("rates", 0.0, {})
    assert schedule.take(30.0) == (None, 30.0)
    assert schedule.take(60.0) == ("rates", None)  # nobody wanted it: followed
    schedule.failed("rates", 60.0)
    assert schedule.take(60.0) == (None, 3.75)


def test_a_success_schedules_every_key_the_answer_carried() -> None:
    schedule: Schedule[str] = Schedule(60.0)
    schedule.want("x86", 0.0)
    schedule.take(0.0)
    schedule.failed("x86", 0.0)
    schedule.want("x86", 5.0)
    schedule.take(5.0)
    schedule.succeeded("x86", 5.0, {"x86": 48.0, "arm64": 60.0})
    assert (schedule.failures("x86"), schedule.failures("arm64")) == (0, 0)
    assert schedule.want("arm64", 6.0) is Want.RENEWED, "known: not queued again"
    assert schedule.take(6.0) == (None, 59.0)


def test_new_keys_beyond_max_keys_are_dropped() -> None:
    schedule: Schedule[str] = Schedule(60.0, max_keys=2)
    assert schedule.want("a", 0.0) is Want.QUEUED
    schedule.take(0.0)
    assert schedule.want("b", 0.0) is Want.QUEUED
    assert schedule.want("c", 0.0) is Want.DROPPED
    assert schedule.want("a", 0.0) is not Want.DROPPED


def test_clear_forgets_the_queued_keys() -> None:
    schedule: Schedule[str] = Schedule(60.0)
    schedule.want("a", 0.0)
    schedule.clear()
    assert not schedule.queued
    assert schedule.take(0.0) == (None, None)
