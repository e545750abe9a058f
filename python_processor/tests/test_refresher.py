"""The one background thread of the live sources (spancost.pricing.refresher): it fetches
what its schedule says, counts, survives what a fetch raises, and stops promptly."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import pytest

from spancost.errors import SpancostError
from spancost.pricing.refresher import Refresher

THREAD = "spancost-test-refresher"


class FetchError(SpancostError):
    pass


@dataclass
class Source:
    """A source whose fetch answers from `answers` in turn (an exception is raised), once
    `gate` is set."""

    answers: list[int | Exception] = field(default_factory=list)
    gate: threading.Event = field(default_factory=threading.Event)
    taken: list[tuple[str, int, int]] = field(default_factory=list)  # key, result, failures
    failed: list[tuple[str, str, int]] = field(default_factory=list)  # key, error, failures

    def __post_init__(self) -> None:
        self.gate.set()

    def fetch(self, key: str) -> int:
        self.gate.wait(5)
        answer = self.answers.pop(0) if self.answers else 0
        if isinstance(answer, Exception):
            raise answer
        return answer

    def on_success(self, key: str, result: int, failures: int) -> Mapping[str, float]:
        self.taken.append((key, result, failures))
        return {}

    def on_failure(self, key: str, exc: Exception, failures: int) -> None:
        self.failed.append((key, str(exc), failures))


MakeRefresher = Callable[..., Refresher[str, int]]


@pytest.fixture
def make_refresher() -> Iterator[MakeRefresher]:
    made: list[Refresher[str, int]] = []

    def make(source: Source, interval: float = 3600.0) -> Refresher[str, int]:
        refresher = Refresher(
            fetch=source.fetch,
            on_success=source.on_success,
            on_failure=source.on_failure,
            interval=interval,
            name="test",
            describe=lambda key: f"key {key}",
            expected_errors=(FetchError,),
            logger=logging.getLogger("spancost.test.refresher"),
            thread_name=THREAD,
        )
        made.append(refresher)
        return refresher

    yield make
    for refresher in made:
        refresher.close(5)


def wait_for(predicate: Callable[[], object], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


def test_a_wanted_key_is_fetched_in_the_background(make_refresher: MakeRefresher) -> None:
    source = Source(answers=[7])
    refresher = make_refresher(source)
    assert not refresher.healthy
    assert refresher.want("a")
    assert refresher.wait_until_idle(5)
    assert source.taken == [("a", 7, 0)]
    assert (refresher.fetches, refresher.failures, refresher.healthy) == (1, 0, True)


def test_a_failure_is_counted_and_retried_with_backoff(make_refresher: MakeRefresher) -> None:
    source = Source(answers=[FetchError("down"), FetchError("still down"), 3])
    refresher = make_refresher(source, interval=0.8)  # retried after 0.05 s, then 0.1 s
    refresher.follow("rates")
    wait_for(lambda: source.taken)
    assert source.failed == [("rates", "down", 1), ("rates", "still down", 2)]
    assert source.taken == [("rates", 3, 2)]
    assert (refresher.fetches, refresher.failures, refresher.healthy) == (3, 2, True)


def test_the_thread_survives_an_unexpected_error(
    make_refresher: MakeRefresher, caplog: pytest.LogCaptureFixture
) -> None:
    source = Source(answers=[ValueError("a bug"), 5])
    refresher = make_refresher(source, interval=0.8)
    with caplog.at_level(logging.ERROR, logger="spancost.test.refresher"):
        refresher.follow("rates")
        wait_for(lambda: source.taken)
    assert "test: unexpected error fetching key rates" in caplog.text
    assert "ValueError: a bug" in caplog.text  # with its traceback
    assert source.failed == [("rates", "a bug", 1)]
    assert refresher.failures == 1


def test_fetch_now_is_counted_and_raises_what_it_did_not_expect(
    make_refresher: MakeRefresher,
) -> None:
    source = Source(answers=[1, FetchError("down"), ValueError("a bug")])
    refresher = make_refresher(source)
    assert refresher.fetch_now("rates")
    assert not refresher.fetch_now("rates")
    with pytest.raises(ValueError, match="a bug"):
        refresher.fetch_now("rates")
    assert (refresher.fetches, refresher.failures) == (3, 1)
    assert source.failed == [("rates", "down", 1)]
    assert not [t for t in threading.enumerate() if t.name == THREAD], "no thread for fetch_now"


def test_close_stops_a_waiting_thread_at_once(make_refresher: MakeRefresher) -> None:
    source = Source()
    refresher = make_refresher(source, interval=3600.0)
    refresher.follow("rates")
    wait_for(lambda: source.taken)
    started = time.monotonic()
    refresher.close(5)
    assert time.monotonic() - started < 1
    assert not [t for t in threading.enumerate() if t.name == THREAD]
    assert refresher.want("new")  # closed: nothing is queued, nothing dropped
    assert refresher.wait_until_idle(0)
    assert refresher.fetches == 1


def test_a_fetch_ended_after_close_changes_nothing(make_refresher: MakeRefresher) -> None:
    source = Source(answers=[9])
    source.gate.clear()
    refresher = make_refresher(source)
    refresher.want("a")
    wait_for(lambda: refresher.fetches == 1)
    refresher.close(0)
    source.gate.set()
    wait_for(lambda: not [t for t in threading.enumerate() if t.name == THREAD])
    assert source.taken == []
