"""Spans and settings the store tests share (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from spancost.store import TotalsStore
from spancost.totals import TotalsConfig, split
from spancost.totals.aggregate import SpanContribution, ns_from_utc

NOW = datetime(2025, 1, 31, 12, 30, tzinfo=UTC)
NOW_NS = ns_from_utc(NOW)
SECOND = 10**9
SKEW = timedelta(hours=2)
GRACE = timedelta(minutes=10)
CONFIG = TotalsConfig(
    domains_by_transaction={"checkout": "payments"},
    domains_by_service={"search-api": "discovery"},
)


def span(
    trace: int,
    span_id: int,
    *,
    start: int = NOW_NS - 60 * SECOND,
    cost: float = 1.0,
    unpriced: str | None = None,
    root: bool = False,
    name: str = "op",
    service: str | None = "worker",
    environment: str | None = "production",
    transaction: str | None = None,
    account: str | None = None,
) -> SpanContribution:
    return SpanContribution(
        trace_id=f"{trace:032x}",
        span_id=f"{span_id:016x}",
        start_ns=start,
        end_ns=start + SECOND,
        cost_usd=cost,
        unpriced_reason=unpriced,
        is_root=root,
        name=name,
        service=service,
        environment=environment,
        transaction_attribute=transaction,
        account=account,
    )


def write(store: TotalsStore, spans: list[SpanContribution], now: datetime = NOW) -> None:
    accepted, quarantined = split(spans, now, SKEW)
    store.write(accepted, quarantined, now)
