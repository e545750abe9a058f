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
          retention_months: 13
          orphan_grace: 10m
          allocation:                        # optional: node cost split to transactions
            node_facts: {kubernetes: {node_name: ${env:K8S_NODE_NAME}}}

Every batch is read into one contribution per span (`spancost.totals.otlp`),
split at ingest time into accepted and quarantined spans, and written by the
store in one transaction; `export` returns (and the sidecar acknowledges the
batch) only after that commit. A span is judged by its end: ``future`` when it
ends more than ``max_clock_skew`` after the ingest time, ``past`` when it ends
before the retention horizon (the current month and ``retention_months`` before
it, as ``spancost db maintain`` keeps them), so a long job and the spans a queue
held through a long outage are counted.

A store that cannot be reached, at start-up or later, makes `export` raise
`SinkUnavailableError`: the exporter keeps the batch in its queue and retries,
and the stores' (trace id, span id) keys make every replay add nothing. A write
the store refuses for its data (`StoreDataError`), or that fails unexpectedly, is
never retried as it is, nor dropped: the batch is written again in halves, down to
the spans that cause it, which are quarantined as ``unstorable`` (their facts
kept as far as the store can hold them), so the rest of the batch is stored and
the exporter's queue moves on. A background thread reconnects, names orphan traces
after ``orphan_grace``, refreshes the gauges and, with ``allocation``, reports this
node's usage and allocates the hours it changed (`spancost.allocation.reporter`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from spancost.config import parse
from spancost.errors import ConfigError
from spancost.settings.totals import TotalsSinkSettings
from spancost.sink import Events, ExportTraceServiceRequest, Sink, SinkUnavailableError
from spancost.store.base import StoreDataError, StoreError, TotalsStore, WriteResult
from spancost.store.common import retention_cutoff
from spancost.store.open import check_url, describe_url, open_store, save_naming
from spancost.totals.aggregate import Quarantined, SpanContribution, split
from spancost.totals.naming import CONFIG_KEYS, totals_config, trace_domain
from spancost.totals.otlp import contributions
from spancost.vocabulary.keys import COST_UNPRICED_REASON, COST_USD

if TYPE_CHECKING:
    from spancost.allocation.reporter import UsageReporter

__all__ = ["GAUGE_STORE_UP", "GAUGE_UNATTRIBUTED_RATIO", "TotalsSink"]

logger = logging.getLogger(__name__)

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

    needs_owner = (COST_USD, COST_UNPRICED_REASON)
    """Money and why there is none: set by spancost.cost, never taken from a sender."""

    def __init__(
        self,
        config: Mapping[str, Any],
        *,
        clock: Clock = _utc_now,
        opener: Callable[..., TotalsStore] = open_store,
    ) -> None:
        settings = parse(TotalsSinkSettings, config)
        self._config = totals_config(settings)
        self._naming = {key: config[key] for key in CONFIG_KEYS if key in config}
        # An unset ${env:DATABASE_URL} reaches here as null or "": the embedded default.
        self._url = (settings.database_url or "").strip() or None
        try:
            check_url(self._url)
        except StoreError as exc:
            raise ConfigError("database_url", str(exc)) from None
        self._migrate = settings.migrate
        self._max_connections = settings.max_connections
        self._retention_months = settings.retention_months
        self._maintenance = timedelta(seconds=settings.maintenance_interval)
        self._reconnect = timedelta(seconds=settings.reconnect_interval)
        self._clock = clock
        self._opener = opener
        self._reporter: UsageReporter | None = None
        if settings.allocation is not None:
            from spancost.allocation.reporter import UsageReporter  # noqa: PLC0415 - optional

            self._reporter = UsageReporter(config["allocation"], now=clock)
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
                batch,
                transaction_attribute=self._config.transaction_attribute,
                owner_attribute=self._config.owner_attribute,
                default_pod=None if self._reporter is None else self._reporter.host_pod,
                events=events,
            ),
            now,
            self._config.max_clock_skew,
            retention_cutoff(now, self._retention_months),
        )
        result = _write(store, accepted, quarantined, now)
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
        if self._reporter is not None:
            self._reporter.close()
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
        try:
            if save_naming(store, self._naming, self._clock()):
                logger.warning(
                    "the totals store kept another naming config (another sink's, or this"
                    " one's before a change); the report, the guard and the export now name"
                    " and charge by this one: keep every sink's transaction and domains alike"
                )
        except StoreError as exc:  # an older schema (migrate: false): readers use defaults
            logger.warning("cannot keep the naming config in the totals store: %s", exc)
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
        unattributed_domain = trace_domain(
            config,
            transaction=config.unattributed_name,
            service=None,
            has_root=False,
            owner=None,
            contested=False,
        )
        unattributed = spend.get(unattributed_domain, 0.0)
        self._unattributed_ratio = unattributed / total if total > 0 else 0.0
        if self._reporter is not None:
            try:
                self._reporter.report(store, now)
            except StoreError:
                raise
            except Exception:  # a bug must not stop orphans being named
                logger.exception("allocation: reporting usage failed")


def _write(
    store: TotalsStore,
    accepted: list[SpanContribution],
    quarantined: list[Quarantined],
    now: datetime,
) -> WriteResult:
    """Write, isolating the spans whose data the store refuses (see the module docstring).

    Raises `SinkUnavailableError` for a failure that a retry may cure.
    """
    outcome = _attempt(store, accepted, quarantined, now)
    if isinstance(outcome, WriteResult):
        return outcome
    logger.warning(
        "totals store refused a batch of %d spans (%s); writing it in parts to find the"
        " spans that cause it",
        len(accepted) + len(quarantined),
        outcome,
    )
    # Quarantined spans on their own: they can be the cause too.
    return _combine([_isolate(store, [], quarantined, now), _isolate(store, accepted, [], now)])


def _attempt(
    store: TotalsStore,
    accepted: list[SpanContribution],
    quarantined: list[Quarantined],
    now: datetime,
) -> WriteResult | Exception:
    """The write's result, or why the store refused its data; `SinkUnavailableError` when
    a retry may cure the failure. An unexpected error counts as a refusal: a bug must not
    drop a batch (a non-retryable status) nor stall the queue behind it (retried forever)."""
    try:
        return store.write(accepted, quarantined, now)
    except StoreDataError as exc:
        return exc
    except StoreError as exc:
        raise SinkUnavailableError(str(exc)) from exc
    except Exception as exc:
        logger.exception("totals store: unexpected error writing %d spans", len(accepted))
        return exc


def _isolate(
    store: TotalsStore,
    accepted: list[SpanContribution],
    quarantined: list[Quarantined],
    now: datetime,
) -> WriteResult:
    """Write the spans in halves until each part is stored or is one refused span, which
    is quarantined as ``unstorable`` (with only its ids if its facts are refused too)."""
    items: list[SpanContribution | Quarantined] = [*accepted, *quarantined]
    if not items:
        return WriteResult()
    outcome = _attempt(store, accepted, quarantined, now)
    if isinstance(outcome, WriteResult):
        return outcome
    if len(items) > 1:
        half = len(items) // 2
        return _combine([_isolate(store, *_parts(items[:half]), now),
                         _isolate(store, *_parts(items[half:]), now)])  # fmt: skip
    span = accepted[0] if accepted else quarantined[0].contribution
    logger.warning(
        "totals store refused span %s of trace %s: %s; quarantined as unstorable",
        span.span_id,
        span.trace_id,
        outcome,
    )
    for candidate in (span, _bare(span)):
        stored = _attempt(store, [], [Quarantined(candidate, "unstorable")], now)
        if isinstance(stored, WriteResult):
            return stored
    raise SinkUnavailableError(
        f"totals store refuses span {span.span_id} of trace {span.trace_id} even bare: {outcome}"
    )


def _parts(
    items: list[SpanContribution | Quarantined],
) -> tuple[list[SpanContribution], list[Quarantined]]:
    accepted = [item for item in items if isinstance(item, SpanContribution)]
    quarantined = [item for item in items if isinstance(item, Quarantined)]
    return accepted, quarantined


def _bare(span: SpanContribution) -> SpanContribution:
    """Only what names the span, for a store that cannot hold its other facts."""
    return SpanContribution(span.trace_id, span.span_id, 0, 0)


def _combine(results: list[WriteResult]) -> WriteResult:
    quarantined: dict[str, int] = {}
    for result in results:
        for reason, spans in result.quarantined.items():
            quarantined[reason] = quarantined.get(reason, 0) + spans
    return WriteResult(
        accepted=sum(r.accepted for r in results),
        duplicates=sum(r.duplicates for r in results),
        quarantined=quarantined,
        traces=sum(r.traces for r in results),
        cost_usd=sum(r.cost_usd for r in results),
    )
