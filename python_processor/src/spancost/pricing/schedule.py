"""When a source that refreshes in the background fetches each of its keys (pure).

Every live source (the AWS price caches, the FX rates) keeps some keys fresh: the
Price List's and the spot history's prices, the FX rates document. This module
decides, for a caller's `now` on any monotonic clock, which key to fetch next and
when the one after is due: new keys first, in the order they came; then the key
due soonest. It sleeps, starts and fetches nothing:
`spancost.pricing.refresher.Refresher` does that around it.

One backoff for all of them (`retry_delay`): after a failure, try again soon, then
less and less often, never less often than the source's own period.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

__all__ = ["Schedule", "Want", "retry_delay"]

K = TypeVar("K", bound=Hashable)

FIRST_RETRY_DIVISOR: Final = 16.0
"""The first retry comes after a sixteenth of the period, and each next one waits twice
as long, up to the period itself."""
MIN_RETRY_DELAY: Final = 0.05


def retry_delay(period: float, failures: int) -> float:
    """Seconds to wait after `failures` (at least 1) failures in a row of a source that is
    refreshed every `period` seconds."""
    delay = period / FIRST_RETRY_DIVISOR * 2.0 ** (max(failures, 1) - 1)
    return max(MIN_RETRY_DELAY, min(period, delay))


class Want(enum.Enum):
    """What `Schedule.want` did with a key."""

    QUEUED = "queued"  # new: to be fetched as soon as possible
    RENEWED = "renewed"  # known, and now wanted again since its last fetch
    UNCHANGED = "unchanged"  # queued already, or wanted already
    DROPPED = "dropped"  # new, but `max_keys` keys are known: not fetched


@dataclass(slots=True)
class _Key:
    due: float = float("-inf")  # not fetched before this
    attempted_at: float = float("-inf")  # when its last fetch ended
    wanted_at: float = float("-inf")  # when it was last wanted
    failures: int = 0  # consecutive


class Schedule(Generic[K]):
    """Which key a background refresh fetches next, and when.

    A *wanted* key (`want`) is fetched as soon as possible the first time, then again
    once it is due, but only if it was wanted again since its last fetch: a key nobody
    asks for is left alone. A *followed* key (`follow`) is fetched at once, then
    whenever it is due, wanted or not. After a success each key the fetch refreshed is
    due when the source says (`succeeded`); after a failure, after `retry_delay` of
    `interval`: a sixteenth of it, doubling up to it.
    """

    def __init__(self, interval: float, max_keys: int | None = None) -> None:
        self.interval = interval
        self._max_keys = max_keys
        self._keys: dict[K, _Key] = {}
        self._queued: OrderedDict[K, None] = OrderedDict()
        self._followed: set[K] = set()

    @property
    def queued(self) -> bool:
        """Whether a key waits to be fetched as soon as possible."""
        return bool(self._queued)

    def want(self, key: K, now: float) -> Want:
        """`key` is wanted at `now`."""
        known = self._keys.get(key)
        if known is not None:
            renewed = known.wanted_at <= known.attempted_at
            known.wanted_at = now
            return Want.RENEWED if renewed else Want.UNCHANGED
        if key in self._queued:
            return Want.UNCHANGED
        if self._max_keys is not None and len(self._keys) + len(self._queued) >= self._max_keys:
            return Want.DROPPED
        self._queued[key] = None
        return Want.QUEUED

    def follow(self, key: K) -> bool:
        """Keep `key` fresh from now on: fetched at once, then whenever it is due. False if
        it was followed already (and nothing changes)."""
        if key in self._followed:
            return False
        self._followed.add(key)
        self._queued[key] = None
        return True

    def take(self, now: float) -> tuple[K | None, float | None]:
        """The key to fetch now, or None and the seconds until one is due (None: until
        a key is wanted)."""
        if self._queued:
            key, _ = self._queued.popitem(last=False)
            self._keys.setdefault(key, _Key())
            return key, None
        due_key, due_at = None, float("inf")
        for key, known in self._keys.items():
            wanted = key in self._followed or known.wanted_at > known.attempted_at
            if wanted and known.due < due_at:
                due_key, due_at = key, known.due
        if due_key is not None and due_at <= now:
            return due_key, None
        return None, None if due_key is None else due_at - now

    def failures(self, key: K) -> int:
        """How many fetches of `key` in a row have failed."""
        known = self._keys.get(key)
        return 0 if known is None else known.failures

    def succeeded(self, key: K, now: float, due_in: Mapping[K, float]) -> None:
        """A fetch of `key` that ended at `now` succeeded; `due_in`: the seconds until each
        key it refreshed (`key` itself, and any other its answer carried) is due again
        (`interval` for `key` if it is not there)."""
        for each, delay in {key: self.interval, **due_in}.items():
            known = self._keys.setdefault(each, _Key())
            known.failures = 0
            known.attempted_at = now
            known.due = now + delay

    def failed(self, key: K, now: float) -> int:
        """A fetch of `key` that ended at `now` failed; the failures in a row, this one
        included. It is due again after `retry_delay`."""
        known = self._keys.setdefault(key, _Key())
        known.failures += 1
        known.attempted_at = now
        known.due = now + retry_delay(self.interval, known.failures)
        return known.failures

    def clear(self) -> None:
        """Forget the queued keys (the source is closing)."""
        self._queued.clear()
