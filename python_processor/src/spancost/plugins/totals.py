"""The ``spancost.totals`` sink: cost per trace and business transaction, in a store.

Configured under the ``python`` extension's ``sinks`` (see `spancost.sink`)::

    sinks:
      totals:
        plugin: spancost.totals
        config:
          database_url: ${env:DATABASE_URL}   # empty: SQLite in the data directory
          transaction: {attribute: business.transaction, rules: [...]}
          domains: {by_transaction: {...}, by_service: {...}}
          max_clock_skew: 2h
          orphan_grace: 10m

Every batch is read into one contribution per span (`spancost.totals.otlp`),
split at ingest time into accepted and quarantined spans, and written by the
store in one transaction; `export` returns (and the sidecar acknowledges the
batch) only after that commit. A store that cannot be reached, at start-up or
later, makes `export` raise `SinkUnavailableError`: the exporter keeps the
batch in its queue and retries, and the stores' (trace id, span id) keys make
every replay add nothing. A background thread reconnects, names orphan traces
after ``orphan_grace``, and refreshes the gauges.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from spancost.config import ConfigSection, describe_type
from spancost.errors import ConfigError
from spancost.pricing.aws_products import parse_duration
from spancost.sink import Events, ExportTraceServiceRequest, Sink, SinkUnavailableError
from spancost.store.base import StoreError, TotalsStore
from spancost.store.open import check_url, describe_url, open_store
from spancost.totals.aggregate import split
from spancost.totals.naming import domain_name, parse_config
from spancost.totals.otlp import ATTR_UNPRICED_REASON, ATTR_USD, contributions

__all__ = ["GAUGE_STORE_UP", "GAUGE_UNATTRIBUTED_RATIO", "TotalsSink"]

logger = logging.getLogger(__name__)

SINK_KEYS: Final = (
    "database_url",
    "migrate",
    "max_connections",
    "maintenance_interval",
    "reconnect_interval",
)
DEFAULT_MAINTENANCE_INTERVAL: Final = timedelta(seconds=30)
DEFAULT_RECONNECT_INTERVAL: Final = timedelta(seconds=5)
UNATTRIBUTED_WINDOW: Final = timedelta(hours=24)

GAUGE_UNATTRIBUTED_RATIO: Final = "unattributed_cost_ratio"
"""Share of the last 24 h's stored cost attributed to the unattributed transaction."""
GAUGE_STORE_UP: Final = "store_up"
"""1 while the store is connected, 0 while the sink waits for it."""

EVENT_STORED: Final = "stored"
EVENT_DUPLICATE: Final = "duplicate"
EVENT_QUARANTINED: Final = "quarantined"

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TotalsSink(Sink):
    """Sums each trace's ``cost.usd`` into a totals store (see the module docstring)."""

    needs_owner = (ATTR_USD, ATTR_UNPRICED_REASON)
    """Money and why there is none: set by spancost.cost, never taken from a sender."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        clock: Clock = _utc_now,
        opener: Callable[..., TotalsStore] = open_store,
    ) -> None:
        section = ConfigSection(config)
        self._config = parse_config(section, extra_keys=SINK_KEYS)
        # An unset ${env:DATABASE_URL} reaches here as null or "": the embedded default.
        url = section.get_raw("database_url", None)
        if url is not None and not isinstance(url, str):
            raise ConfigError(
                section.key("database_url"), f"must be a string, got {describe_type(url)}"
            )
        self._url = (url or "").strip() or None
        try:
            check_url(self._url)
        except StoreError as exc:
            raise ConfigError(section.key("database_url"), str(exc)) from None
        self._migrate = section.get_bool("migrate", True)
        self._max_connections = _positive_int(section, "max_connections", 4)
        self._maintenance = _interval(section, "maintenance_interval", DEFAULT_MAINTENANCE_INTERVAL)
        self._reconnect = _interval(section, "reconnect_interval", DEFAULT_RECONNECT_INTERVAL)
        self._clock = clock
        self._opener = opener
        self.warnings: list[str] = []
        self._lock = threading.Lock()
        self._store: TotalsStore | None = None
        self._last_error = "not connected yet"
        self._unattributed_ratio = 0.0
        self._stopping = threading.Event()
        error = self._connect()
        if error is not None:
            self.warnings.append(
                f"totals store {describe_url(self._url)} is not available: {error}; spans are"
                " kept by the exporter's queue and retried until it is"
            )
        self._thread = threading.Thread(
            target=self._run, name="spancost-totals-maintenance", daemon=True
        )
        self._thread.start()

    def export(self, batch: ExportTraceServiceRequest, events: Events) -> None:
        store = self._store
        if store is None:
            raise SinkUnavailableError(f"totals store not available: {self._last_error}")
        now = self._clock()
        accepted, quarantined = split(
            contributions(
                batch, transaction_attribute=self._config.transaction_attribute, events=events
            ),
            now,
            self._config.max_clock_skew,
        )
        try:
            result = store.write(accepted, quarantined, now)
        except StoreError as exc:
            self._last_error = str(exc)
            raise SinkUnavailableError(str(exc)) from exc
        events.add(EVENT_STORED, spans=result.accepted)
        events.add(EVENT_DUPLICATE, spans=result.duplicates)
        for reason, spans in sorted(result.quarantined.items()):
            events.add(EVENT_QUARANTINED, reason=reason, spans=spans)

    def gauges(self) -> Mapping[str, float]:
        return {
            GAUGE_STORE_UP: 0.0 if self._store is None else 1.0,
            GAUGE_UNATTRIBUTED_RATIO: self._unattributed_ratio,
        }

    def close(self) -> None:
        self._stopping.set()
        self._thread.join()
        with self._lock:
            store, self._store = self._store, None
        if store is not None:
            store.close()

    def _connect(self) -> str | None:
        """Open (and migrate) the store; None when connected, else why not."""
        try:
            store = self._opener(self._url, self._config, max_connections=self._max_connections)
        except StoreError as exc:
            self._last_error = str(exc)
            return self._last_error
        try:
            if self._migrate:
                store.migrate()
        except StoreError as exc:
            store.close()
            self._last_error = str(exc)
            return self._last_error
        with self._lock:
            self._store = store
        logger.info("totals sink writing to %s", describe_url(self._url))
        return None

    def _run(self) -> None:
        """Reconnect while the store is missing; otherwise name orphans and refresh gauges."""
        while True:
            interval = self._reconnect if self._store is None else self._maintenance
            if self._stopping.wait(interval.total_seconds()):
                return
            if self._store is None:
                error = self._connect()
                if error is not None:
                    logger.warning("totals store still not available: %s", error)
                continue
            try:
                self.maintain()
            except StoreError as exc:
                # The store's pool reconnects by itself; writes report the outage.
                logger.warning("totals maintenance failed (retrying later): %s", exc)

    def maintain(self) -> None:
        """Name orphan traces and refresh the unattributed ratio (the background thread's
        work, callable directly by tests)."""
        store = self._store
        if store is None:
            return
        now = self._clock()
        config = self._config
        store.attribute_orphans(now, config.orphan_grace, config.unattributed_name)
        spend = store.domain_spend(now - UNATTRIBUTED_WINDOW, now)
        total = sum(spend.values())
        unattributed = spend.get(domain_name(config.unattributed_name, None, config), 0.0)
        self._unattributed_ratio = unattributed / total if total > 0 else 0.0


def _positive_int(section: ConfigSection, key: str, default: int) -> int:
    value = section.get_raw(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(section.key(key), f"must be a positive integer, got {value!r}")
    return value


def _interval(section: ConfigSection, key: str, default: timedelta) -> timedelta:
    if key not in section:
        return default
    return timedelta(seconds=parse_duration(section.get_raw(key), section.key(key)))
