"""The allocation's store tests' data, for SQLite and PostgreSQL alike: the README's
worked example as spans and usage (one m5.large, one hour, three pods)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from spancost.allocation.pricing import NodePrice
from spancost.allocation.usage import NodeUsage, PodUsage
from spancost.store.base import AllocatedRow, TotalsStore
from spancost.totals import TotalsConfig, split
from spancost.totals.aggregate import SpanContribution, ns_from_utc

HOUR = datetime(2025, 1, 31, 11, tzinfo=UTC)
HOUR_NS = ns_from_utc(HOUR)
NOW = HOUR + timedelta(hours=1, minutes=30)  # the hour is over
SECOND = 10**9
SKEW = timedelta(hours=2)
M5_LARGE = 0.096
CONFIG = TotalsConfig(domains_by_transaction={"checkout": "retail", "search": "retail"})
OWNED = TotalsConfig(
    owner_attribute="k8s.namespace.name", domains_by_owner={"shop": "retail", "data": "storage"}
)
NODE = NodeUsage(HOUR_NS, "ip-10-0-1-5", 3600.0, "us-east-1", "m5.large", "linux", "on_demand",
                 "us-east-1a", 2.0, 8.0)  # fmt: skip
NODE_PRICE = NodePrice(M5_LARGE, "bundled", "ec2.on_demand.duration", "2025-01-01")
PODS = [
    PodUsage(HOUR_NS, "web", NODE.node, 3600.0, 1.0, 2.0, "shop", "Deployment/web"),
    PodUsage(HOUR_NS, "worker", NODE.node, 1800.0, 0.5, 1.0, "shop", "Deployment/worker"),
    PodUsage(HOUR_NS, "db", NODE.node, 3600.0, 0.25, 2.0, "data", "StatefulSet/postgres"),
]
UNIT = M5_LARGE / 26  # 9 x 2 vCPU + 8 GiB
WEB, WORKER, DB = 11 * UNIT, 5.5 * UNIT / 2, 4.25 * UNIT
EXPECTED = {
    ("transaction", "checkout"): WEB * 1200 / 1800 + WORKER,
    ("transaction", "search"): WEB * 600 / 1800,
    ("untraced", "StatefulSet/postgres"): DB,
    ("idle", ""): M5_LARGE - WEB - WORKER - DB,
}


def segment(
    trace: int,
    span_id: int,
    *,
    pod: str,
    start_s: float,
    seconds: float,
    root: bool = False,
    transaction: str | None = None,
    weight: float = 1.0,
    owner: str | None = "shop",
) -> SpanContribution:
    """A service segment on `pod` from `start_s` seconds into the hour."""
    start = HOUR_NS + round(start_s * SECOND)
    return SpanContribution(
        trace_id=f"{trace:032x}",
        span_id=f"{span_id:016x}",
        start_ns=start,
        end_ns=start + round(seconds * SECOND),
        cost_usd=0.0,
        is_root=root,
        name="GET /",
        service="web",
        environment="production",
        transaction_attribute=transaction,
        owner=owner,
        pod=pod,
        segment=True,
        weight=weight,
    )


def hand_case_spans() -> list[SpanContribution]:
    """web: checkout 1,200 s (12 traces of 100 s), search 600 s (6 of 100 s); worker:
    checkout 300 s (the same checkout traces, 25 s each)."""
    spans: list[SpanContribution] = []
    for n in range(12):
        spans.append(segment(n + 1, 1, pod="web", start_s=n * 200, seconds=100, root=True,
                             transaction="checkout"))  # fmt: skip
        spans.append(segment(n + 1, 2, pod="worker", start_s=n * 200 + 10, seconds=25))
    for n in range(6):
        spans.append(segment(n + 100, 1, pod="web", start_s=n * 300 + 50, seconds=100,
                             root=True, transaction="search"))  # fmt: skip
    return spans


def write_spans(store: TotalsStore, spans: list[SpanContribution], now: datetime = NOW) -> None:
    accepted, quarantined = split(spans, now, SKEW, oldest=now - timedelta(days=30))
    store.write(accepted, quarantined, now)


def by_line(rows: Sequence[AllocatedRow]) -> dict[tuple[str, str], float]:
    """`AllocatedRow`s as {(kind, transaction or workload): usd}."""
    result: dict[tuple[str, str], float] = {}
    for row in rows:
        label = row.transaction if row.kind == "transaction" else row.workload
        result[(row.kind, label)] = result.get((row.kind, label), 0.0) + row.usd
    return result
