"""`LiveCache`: prices answered from memory, fetched and refreshed by a background thread.

What the live price sources share (`aws.AwsPriceList`, `aws_spot.AwsSpotPrices`):
the hot path never waits for the network. `get` looks in memory and returns at
once; a key memory does not hold answers None and is queued for the
background thread, which calls the source's `fetch` and fills the memory.
Entries are fetched again before they expire (after 80 % of `ttl`) as long as
somebody still asks for them; one nobody asks for is left alone.

When a fetch fails, the last good value keeps answering past `ttl` (counted in
`stale_hits`, logged once) until it is `max_age` old (counted in `expired`, logged
once: the caller falls back), and the key is retried with backoff (`ttl`/16,
doubling, up to `ttl`). A key that never had a good value answers None.
Retries inside one fetch (throttling, 5xx, connection errors) are the client's
business (botocore's retry modes), not this loop's.

When each key is fetched, the thread, its backoff and its counters are the
`spancost.pricing.refresher.Refresher`'s; this module keeps the values and says
what a fetch's answer or failure means for them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

from spancost.pricing.refresher import Refresher

__all__ = ["REFRESH_AHEAD", "CacheCounters", "LiveCache", "Wording"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Refresh an entry once it is this old, relative to `ttl`: early enough that a
# slow or retried fetch still lands before it expires.
REFRESH_AHEAD: Final = 0.8


@dataclass(slots=True)
class _Entry(Generic[V]):
    """What the cache knows about one key. `value` None: not found, or never fetched."""

    value: V | None = None
    fetched_at: float = float("-inf")  # when `value` was last confirmed by the API
    failing: bool = False  # the last fetch failed
    stale_logged: bool = False
    expired_logged: bool = False


@dataclass(frozen=True, slots=True)
class Wording:
    """How a source's log lines name it, its API and what callers do without it."""

    source: str  # "aws_pricelist"
    api: str  # "the Price List API"
    fallback: str  # "the bundled snapshot"


class LiveCache(Generic[K, V]):
    """Values by key, answered from memory and fetched in the background.

    `fetch(key)` runs on the background thread, may block, and returns the
    values it learned (the key's own, None if the API has none, and any others
    the same answer carried); `expected_errors` are failures worth a warning,
    anything else is logged with its traceback. Counters (read them any time):
    `fetches` (started), `failures`, `hits` (fresh answers), `stale_hits` (last
    good value past `ttl`), `expired` (not answered: older than `max_age`),
    `misses` (nothing in memory), `dropped` (keys not queued: cache full).
    """

    def __init__(
        self,
        *,
        fetch: Callable[[K], Mapping[K, V | None]],
        ttl: float,
        max_entries: int,
        wording: Wording,
        describe: Callable[[K], str],
        as_of: Callable[[V], str],
        is_plausible: Callable[[K], bool],
        expected_errors: tuple[type[Exception], ...],
        logger: logging.Logger,
        thread_name: str,
        max_age: float = float("inf"),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.hits = 0
        self.stale_hits = 0
        self.expired = 0
        self.misses = 0
        self.dropped = 0
        self._ttl = ttl
        self._max_age = max_age
        self._max_entries = max_entries
        self._wording = wording
        self._describe = describe
        self._as_of = as_of
        self._is_plausible = is_plausible
        self._logger = logger
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[K, _Entry[V]] = {}
        self._full_logged = False
        self._refresher: Refresher[K, Mapping[K, V | None]] = Refresher(
            fetch=fetch,
            on_success=self._store,
            on_failure=self._keep,
            interval=ttl,
            max_keys=max_entries,
            name=wording.source,
            describe=describe,
            expected_errors=expected_errors,
            logger=logger,
            thread_name=thread_name,
            clock=clock,
        )

    @property
    def ready(self) -> bool:
        """Whether the last fetch succeeded: while False, a miss means "not known yet"."""
        return self._refresher.healthy

    @property
    def closed(self) -> bool:
        return self._refresher.closed

    @property
    def fetches(self) -> int:
        return self._refresher.fetches

    @property
    def failures(self) -> int:
        return self._refresher.failures

    # -- the hot path: memory only ------------------------------------------------

    def get(self, key: K) -> V | None:
        """The value in memory for `key`, at once; a miss queues a fetch."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                # Keys come from span attributes, arbitrary input: only what looks
                # like a real key is worth a request.
                if self._is_plausible(key) and not self._refresher.want(key):
                    self._drop_locked(key)
                return None
            # Wanted again: refreshed when due (a key nobody asks for is left alone).
            self._refresher.want(key)
            if entry.value is None:
                self.misses += 1
                return None
            age = now - entry.fetched_at
            if age < self._ttl:
                self.hits += 1
            elif age >= self._max_age:
                self.expired += 1
                if not entry.expired_logged:
                    entry.expired_logged = True
                    self._logger.warning(
                        "%s: %s was last confirmed %.0fs ago, more than max_age (%.0fs); "
                        "not used until fetched again, callers fall back to %s",
                        self._wording.source,
                        self._describe(key),
                        age,
                        self._max_age,
                        self._wording.fallback,
                    )
                return None
            else:
                self.stale_hits += 1
                if entry.failing and not entry.stale_logged:
                    entry.stale_logged = True
                    self._logger.warning(
                        "%s: %s is past its refresh (%.0fs old) and the API is failing; "
                        "answering with the last good price, as of %s",
                        self._wording.source,
                        self._describe(key),
                        age,
                        self._as_of(entry.value),
                    )
            return entry.value

    def _drop_locked(self, key: K) -> None:
        self.dropped += 1
        if not self._full_logged:
            self._full_logged = True
            self._logger.warning(
                "%s: cache full (max_entries=%d); %s and other new keys are "
                "not fetched, callers fall back to %s",
                self._wording.source,
                self._max_entries,
                self._describe(key),
                self._wording.fallback,
            )

    # -- the background refresher ---------------------------------------------------

    def start(self) -> None:
        """Start the refresher thread (also started by the first cache miss)."""
        self._refresher.start()

    def close(self, timeout: float) -> None:
        """Stop the refresher (a fetch in progress is abandoned), waiting up to `timeout`."""
        self._refresher.close(timeout)

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until no key is queued or being fetched; False on timeout (for tests, the CLI)."""
        return self._refresher.wait_until_idle(timeout)

    def _store(self, key: K, values: Mapping[K, V | None], failures: int) -> dict[K, float]:
        """Take a fetch's values; when each is due again."""
        now = self._clock()
        due_in: dict[K, float] = {}
        with self._lock:
            for each, value in values.items():
                entry = self._entries.setdefault(each, _Entry())
                if failures and each == key:
                    self._logger.info(
                        "%s: %s fetched again after %d failed attempts",
                        self._wording.source,
                        self._describe(each),
                        failures,
                    )
                entry.value = value
                entry.fetched_at = now
                entry.failing = False
                entry.stale_logged = entry.expired_logged = False
                # Found: refresh before it expires. Not found: ask again after a whole
                # period, and only if somebody still wants it.
                due_in[each] = self._ttl * (REFRESH_AHEAD if value is not None else 1)
        if values.get(key) is None:
            self._logger.info(
                "%s: no price for %s in %s; callers fall back to %s",
                self._wording.source,
                self._describe(key),
                self._wording.api,
                self._wording.fallback,
            )
        return due_in

    def _keep(self, key: K, exc: Exception, failures: int) -> None:
        """A fetch failed: the last good value answers on, until `max_age`."""
        now = self._clock()
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
            entry.failing = True
            if failures == 1:
                age = now - entry.fetched_at
                if entry.value is not None and age < self._max_age:
                    fallback = (
                        f"answering with the last good price, as of {self._as_of(entry.value)}"
                    )
                    if self._max_age != float("inf"):
                        fallback += f", for {self._max_age - age:.0f}s more at most"
                else:
                    fallback = (
                        f"no price until it succeeds; callers fall back to {self._wording.fallback}"
                    )
                self._logger.warning(
                    "%s: fetching %s failed: %s; %s",
                    self._wording.source,
                    self._describe(key),
                    exc,
                    fallback,
                )
            else:
                self._logger.debug(
                    "%s: fetching %s failed again (%d): %s",
                    self._wording.source,
                    self._describe(key),
                    failures,
                    exc,
                )


class CacheCounters:
    """A live source's counters, read from its `LiveCache` (``self._cache``): the
    properties every source exposes the same way."""

    _cache: LiveCache[Any, Any]

    @property
    def fetches(self) -> int:
        return self._cache.fetches

    @property
    def failures(self) -> int:
        return self._cache.failures

    @property
    def hits(self) -> int:
        return self._cache.hits

    @property
    def stale_hits(self) -> int:
        return self._cache.stale_hits

    @property
    def expired(self) -> int:
        return self._cache.expired

    @property
    def misses(self) -> int:
        return self._cache.misses

    @property
    def dropped(self) -> int:
        return self._cache.dropped
