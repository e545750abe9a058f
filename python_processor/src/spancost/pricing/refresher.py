"""`Refresher`: the one background thread of the live sources (the AWS price caches, the FX
rates).

A source says what to fetch and what to do with the result; the refresher decides
when (a `spancost.pricing.schedule.Schedule`: new keys first, then the one due
soonest, the one backoff after failures), runs the fetches on a daemon thread,
counts them, and stops promptly on `close`. It knows nothing of AWS or HTTP:
`fetch` is the source's.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Hashable, Mapping
from typing import Generic, TypeVar

from spancost.pricing.schedule import Schedule, Want

__all__ = ["Refresher"]

K = TypeVar("K", bound=Hashable)
R = TypeVar("R")


class Refresher(Generic[K, R]):
    """Fetches keys on a daemon thread, each when its `Schedule` says, every `interval`
    at most and sooner after a failure.

    - `fetch(key)` does the I/O: it may block, and raises when the fetch failed.
    - `on_success(key, result, failures)` takes the result (`failures`: how many
      fetches of `key` had failed in a row before this one) and returns the seconds
      until each key it refreshed is due again (`key` is due after `interval` if it is
      not there).
    - `on_failure(key, exc, failures)` says so (`failures`: in a row, this one
      included); the key is retried after `retry_delay`.

    `expected_errors` are failures the source words itself; anything else a fetch
    raises is logged here with its traceback (``<name>: unexpected error fetching
    <describe(key)>``) and handled like them: the thread survives it. The handlers run
    on the fetching thread without the refresher's lock held. Counters (read them any
    time): `fetches` (started), `failures`; `healthy` says whether the last fetch
    succeeded. `clock` (monotonic seconds) is the schedule's.
    """

    def __init__(
        self,
        *,
        fetch: Callable[[K], R],
        on_success: Callable[[K, R, int], Mapping[K, float]],
        on_failure: Callable[[K, Exception, int], None],
        interval: float,
        name: str,
        describe: Callable[[K], str],
        expected_errors: tuple[type[Exception], ...],
        logger: logging.Logger,
        thread_name: str,
        max_keys: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.fetches = 0
        self.failures = 0
        self._fetch = fetch
        self._on_success = on_success
        self._on_failure = on_failure
        self._name = name
        self._describe = describe
        self._expected_errors = expected_errors
        self._logger = logger
        self._thread_name = thread_name
        self._clock = clock
        self._schedule: Schedule[K] = Schedule(interval, max_keys)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._thread: threading.Thread | None = None
        self._in_flight: K | None = None
        self._closed = False
        self._healthy = False

    @property
    def healthy(self) -> bool:
        """Whether the last fetch succeeded."""
        return self._healthy

    @property
    def closed(self) -> bool:
        return self._closed

    def want(self, key: K) -> bool:
        """`key` is wanted: a new one is fetched as soon as the thread is free, a known one
        again when it is due. False when a new key is not taken: `max_keys` are known."""
        with self._lock:
            if self._closed:
                return True
            wanted = self._schedule.want(key, self._clock())
            if wanted is Want.QUEUED:
                self._start_locked()
            if wanted in (Want.QUEUED, Want.RENEWED):
                # The thread may be asleep with nothing to do.
                self._wake.notify_all()
            return wanted is not Want.DROPPED

    def follow(self, key: K) -> None:
        """Keep `key` fresh until `close`: fetched now, then whenever it is due."""
        with self._lock:
            if not self._closed and self._schedule.follow(key):
                self._start_locked()
                self._wake.notify_all()

    def start(self) -> None:
        """Start the thread (`want` and `follow` start it too)."""
        with self._lock:
            if not self._closed:
                self._start_locked()

    def _start_locked(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
            self._thread.start()

    def close(self, timeout: float) -> None:
        """Stop the thread (a fetch in progress is abandoned), waiting up to `timeout`."""
        with self._lock:
            self._closed = True
            self._schedule.clear()
            self._wake.notify_all()
            thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def wait_until_idle(self, timeout: float) -> bool:
        """Wait until no key is queued or being fetched; False on timeout (for tests, the CLI)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while self._schedule.queued or self._in_flight is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.wait(remaining)
            return True

    def fetch_now(self, key: K) -> bool:
        """Fetch `key` now, on the caller's thread, counted and handled as on the refresher's;
        False when it failed. An unexpected error is raised to the caller."""
        return self._attempt(key, background=False)

    def _run(self) -> None:
        while True:
            with self._lock:
                key = self._next_key_locked()
                if key is None:
                    return
                self._in_flight = key
            try:
                self._attempt(key, background=True)
            finally:
                with self._lock:
                    self._in_flight = None
                    self._wake.notify_all()

    def _next_key_locked(self) -> K | None:
        """The next key to fetch, waiting for one; None once closed."""
        while not self._closed:
            key, wait = self._schedule.take(self._clock())
            if key is not None:
                return key
            self._wake.wait(wait)
        return None

    def _attempt(self, key: K, *, background: bool) -> bool:
        with self._lock:
            self.fetches += 1
        try:
            result = self._fetch(key)
        except Exception as exc:  # the thread must survive anything a fetch raises
            if not isinstance(exc, self._expected_errors):
                if not background:
                    raise
                self._logger.exception(
                    "%s: unexpected error fetching %s", self._name, self._describe(key)
                )
            self._record_failure(key, exc, background=background)
            return False
        self._record_success(key, result, background=background)
        return True

    def _record_success(self, key: K, result: R, *, background: bool) -> None:
        with self._lock:
            self._healthy = True
            if self._closed and background:  # abandoned by close: only counted
                return
            failures = self._schedule.failures(key)
        now = self._clock()
        due_in = self._on_success(key, result, failures)
        with self._lock:
            self._schedule.succeeded(key, now, due_in)

    def _record_failure(self, key: K, exc: Exception, *, background: bool) -> None:
        with self._lock:
            self.failures += 1
            self._healthy = False
            if self._closed and background:  # abandoned by close: only counted
                return
            failures = self._schedule.failed(key, self._clock())
        self._on_failure(key, exc, failures)
