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
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

from spancost.pricing.backoff import retry_delay

__all__ = ["REFRESH_AHEAD", "LiveCache", "Wording"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

# Refresh an entry once it is this old, relative to `ttl`: early enough that a
# slow or retried fetch still lands before it expires.
REFRESH_AHEAD: Final = 0.8
# After a failed fetch, wait ttl/16, /8, ... up to `ttl` before the next.


@dataclass(slots=True)
class _Entry(Generic[V]):
    """What the cache knows about one key. `value` None: not found, or never fetched."""

    value: V | None = None
    fetched_at: float = float("-inf")  # when `value` was last confirmed by the API
    attempted_at: float = float("-inf")  # when the API was last asked
    next_fetch: float = float("-inf")  # not before this
    last_used: float = float("-inf")  # last lookup
    failures: int = 0  # consecutive
    stale_logged: bool = False
    expired_logged: bool = False


@dataclass
class _Pending(Generic[K]):
    keys: OrderedDict[K, None] = field(default_factory=OrderedDict)
    in_flight: K | None = None


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
    ) -> None:
        self.fetches = 0
        self.failures = 0
        self.hits = 0
        self.stale_hits = 0
        self.expired = 0
        self.misses = 0
        self.dropped = 0
        self._fetch = fetch
        self._ttl = ttl
        self._max_age = max_age
        self._max_entries = max_entries
        self._wording = wording
        self._describe = describe
        self._as_of = as_of
        self._is_plausible = is_plausible
        self._expected_errors = expected_errors
        self._logger = logger
        self._thread_name = thread_name
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._entries: dict[K, _Entry[V]] = {}
        self._pending: _Pending[K] = _Pending()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._full_logged = False
        self._healthy = False

    @property
    def ready(self) -> bool:
        """Whether the last fetch succeeded: while False, a miss means "not known yet"."""
        return self._healthy

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the hot path: memory only ------------------------------------------------

    def get(self, key: K) -> V | None:
        """The value in memory for `key`, at once; a miss queues a fetch."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                # Keys come from span attributes, arbitrary input: only what looks
                # like a real key is worth a request.
                if self._is_plausible(key):
                    self._enqueue_locked(key)
                return None
            if entry.last_used <= entry.attempted_at:
                # Wanted again: the refresher may be asleep with nothing to do.
                self._wake.notify_all()
            entry.last_used = now
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
                if entry.failures and not entry.stale_logged:
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

    def _enqueue_locked(self, key: K) -> None:
        if self._closed or key in self._pending.keys or key == self._pending.in_flight:
            return
        known = len(self._entries) + len(self._pending.keys) + (self._pending.in_flight is not None)
        if known >= self._max_entries:
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
            return
        self._pending.keys[key] = None
        self._start_locked()
        self._wake.notify_all()

    # -- the background refresher ---------------------------------------------------

    def start(self) -> None:
        """Start the refresher thread (also started by the first cache miss)."""
        with self._lock:
            if not self._closed:
                self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            self._thread.start()

    def close(self, timeout: float) -> None:
        """Stop the refresher (a fetch in progress is abandoned), waiting up to `timeout`."""
        with self._lock:
            self._closed = True
            self._pending.keys.clear()
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until no key is queued or being fetched; False on timeout (for tests, the CLI)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._pending.keys or self._pending.in_flight is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.wait(remaining)
            return True

    def _run(self) -> None:
        while True:
            with self._lock:
                key = self._next_key_locked()
                if key is None:
                    return
                self._pending.in_flight = key
                self.fetches += 1
            try:
                values = self._fetch(key)
            except self._expected_errors as exc:
                self._record_failure(key, exc)
            except Exception as exc:  # the thread must survive anything a fetch raises
                self._logger.exception(
                    "%s: unexpected error fetching %s", self._wording.source, self._describe(key)
                )
                self._record_failure(key, exc)
            else:
                self._record_success(key, values)
            finally:
                with self._lock:
                    self._pending.in_flight = None
                    self._wake.notify_all()

    def _next_key_locked(self) -> K | None:
        """The next key to fetch, waiting for one; None once closed."""
        while not self._closed:
            if self._pending.keys:
                key, _ = self._pending.keys.popitem(last=False)
                return key
            now = time.monotonic()
            due_key, due_at = None, float("inf")
            for key, entry in self._entries.items():
                # Only what was asked for since the last fetch: a key nobody uses
                # is left to expire rather than fetched forever.
                if entry.last_used > entry.attempted_at and entry.next_fetch < due_at:
                    due_key, due_at = key, entry.next_fetch
            if due_key is not None and due_at <= now:
                return due_key
            self._wake.wait(None if due_key is None else due_at - now)
        return None

    def _record_success(self, key: K, values: Mapping[K, V | None]) -> None:
        now = time.monotonic()
        with self._lock:
            self._healthy = True
            if self._closed:
                return
            for each, value in values.items():
                entry = self._entries.setdefault(each, _Entry())
                if entry.failures and each == key:
                    self._logger.info(
                        "%s: %s fetched again after %d failed attempts",
                        self._wording.source,
                        self._describe(each),
                        entry.failures,
                    )
                entry.value = value
                entry.fetched_at = entry.attempted_at = now
                entry.failures = 0
                entry.stale_logged = entry.expired_logged = False
                # Found: refresh before it expires. Not found: ask again after a whole
                # period, and only if somebody still wants it.
                entry.next_fetch = now + self._ttl * (REFRESH_AHEAD if value is not None else 1)
            if values.get(key) is None:
                self._logger.info(
                    "%s: no price for %s in %s; callers fall back to %s",
                    self._wording.source,
                    self._describe(key),
                    self._wording.api,
                    self._wording.fallback,
                )

    def _record_failure(self, key: K, exc: Exception) -> None:
        now = time.monotonic()
        with self._lock:
            self.failures += 1
            self._healthy = False
            if self._closed:
                return
            entry = self._entries.setdefault(key, _Entry())
            entry.failures += 1
            entry.attempted_at = now
            entry.next_fetch = now + retry_delay(self._ttl, entry.failures)
            if entry.failures == 1:
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
                    entry.failures,
                    exc,
                )
