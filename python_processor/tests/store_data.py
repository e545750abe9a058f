"""Spans and settings the store tests share (SQLite and PostgreSQL alike)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spancost.store import TotalsStore
from spancost.totals import TotalsConfig, split
from spancost.totals.aggregate import SpanContribution, ns_from_utc
from spancost.totals.otlp import contributions
from tests.builders import Value, attributes, batch, resource_spans

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
    owner: str | None = None,
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
        owner=owner,
    )


OWNED_CONFIG = TotalsConfig(
    domains_by_transaction={"checkout": "shop", "search": "discovery"},
    owner_attribute="k8s.namespace.name",
    domains_by_owner={"shop": "shop", "platform": "discovery"},
)
"""Who pays comes from the namespace the collector saw each span come from."""


def write_owned_traces(store: TotalsStore) -> dict[str, float]:
    """What `OWNED_CONFIG` makes of forged names, roots and spans, in three writes;
    returns the 24 h spend per domain afterwards. Every store must give the same answer:

    - trace 1, checkout from the shop namespace, until a span from the platform
      namespace claims to be its root (earlier, in a later write): contested, labelled
      unattributed; shop still pays for its 6.0, platform for its claim (0.0);
    - trace 2, a root from the platform namespace naming shop's ``checkout``: platform's
      domain (discovery) pays its 7.0;
    - trace 3, checkout from shop with two roots of its own: shop pays 2.5;
    - trace 4, a root with no namespace (sent from outside the cluster): unattributed;
    - trace 5, shop's checkout with a child the platform namespace added (50.0, say a
      big LLM call in a trace whose id it learned): platform pays for it, not shop.
    """
    start = NOW_NS - 60 * SECOND
    write(
        store,
        [
            span(1, 1, root=True, cost=5.0, start=start, transaction="checkout", owner="shop"),
            span(1, 2, cost=1.0, owner="shop"),
            span(2, 1, root=True, cost=7.0, transaction="checkout", owner="platform"),
            span(3, 1, root=True, cost=2.0, start=start, transaction="checkout", owner="shop"),
            span(5, 1, root=True, cost=1.0, transaction="checkout", owner="shop"),
        ],
    )
    write(
        store,
        [
            span(3, 2, root=True, cost=0.5, start=start - SECOND, owner="shop"),
            span(4, 1, root=True, cost=9.0, transaction="checkout"),
            span(5, 2, cost=50.0, owner="platform"),
        ],
    )
    forged = span(1, 9, root=True, cost=0.0, start=start - 30 * SECOND, owner="platform")
    write(store, [forged, span(1, 9, root=True, cost=0.0, owner="platform")])
    return store.domain_spend(NOW - timedelta(hours=24), NOW + timedelta(hours=1))


OWNED_SPEND = {"shop": 9.5, "discovery": 57.0, "(unattributed)": 9.0}
OWNED_LABELS = {
    f"{1:032x}": ("(contested)", "(unattributed)"),
    f"{2:032x}": ("checkout", "discovery"),
    f"{3:032x}": ("op", "shop"),
    f"{4:032x}": ("checkout", "(unattributed)"),
    f"{5:032x}": ("checkout", "shop"),
}
"""trace -> (transaction, domain label) after `write_owned_traces` (trace 3's earliest
root has no transaction attribute: it is named by its span name). The label is the
transaction view; money is charged span by span (`OWNED_SPEND`)."""
OWNED_COVERAGE = {"shop": (5, 0), "discovery": (3, 0), "(unattributed)": (1, 0)}


ROLLING_EDGES = {
    # first seen, before NOW -> counted in the rolling 24 h that ends at NOW
    timedelta(hours=23, minutes=59): True,
    timedelta(hours=24): True,  # the window's first instant
    timedelta(hours=24, microseconds=1): False,
    timedelta(hours=24, minutes=20): False,  # in the hour bucket the window starts in
    timedelta(hours=25): False,
    timedelta(0): True,  # its last instant
}


def write_rolling_edges(store: TotalsStore) -> dict[str, float]:
    """One trace first seen at each of `ROLLING_EDGES` (NOW is 12:30, so the window cuts
    through an hour at both ends), each its own domain; the rolling 24 h spend at NOW."""
    for number, before in enumerate(ROLLING_EDGES, start=1):
        ingest = NOW - before
        start = ns_from_utc(ingest) - SECOND
        root = span(number, 1, root=True, start=start, transaction=f"at -{before}")
        accepted, quarantined = split([root], ingest, SKEW)
        store.write(accepted, quarantined, ingest)
    return store.domain_spend(NOW - timedelta(hours=24), NOW)


def write_coverage(store: TotalsStore) -> tuple[dict[str, tuple[int, int]], list[tuple[str, int]]]:
    """Priced and unpriced spans in two domains and two environments, one replayed; the
    24 h coverage by domain and the unpriced reasons, staging left out."""
    spans = [
        span(1, 1, root=True, transaction="checkout"),  # domain payments (CONFIG)
        span(1, 2, cost=0.0, unpriced="unknown_instance_type"),
        span(1, 3, cost=0.0, unpriced="sidecar_unavailable"),
        span(2, 1, root=True, name="GET /", cost=0.0, unpriced="unknown_instance_type"),
        span(2, 2, cost=0.0, unpriced="unknown_instance_type"),
        span(3, 1, root=True, transaction="checkout", environment="staging"),
        span(3, 2, cost=0.0, unpriced="implausible_tokens", environment="staging"),
    ]
    write(store, spans)
    write(store, spans[:3])  # a replay stores nothing and counts nothing
    since = NOW - timedelta(hours=24)
    return (
        store.domain_coverage(since, NOW, {"staging"}),
        store.unpriced_reasons(since, NOW, {"staging"}),
    )


COVERAGE = {"payments": (3, 2), "GET /": (2, 2)}
REASONS = [("unknown_instance_type", 3), ("sidecar_unavailable", 1)]


def write(store: TotalsStore, spans: list[SpanContribution], now: datetime = NOW) -> None:
    accepted, quarantined = split(spans, now, SKEW)
    store.write(accepted, quarantined, now)


def write_thirty_hours(store: TotalsStore) -> None:
    """Three two-span traces an hour for the 30 hours up to NOW: environments and
    transaction names rotate, so a window and an exclusion have something to cut."""
    environments = ["production", "staging", "dev", None]
    names = ["checkout", "search", "GET /"]
    trace = 0
    for hour in range(30):
        now = NOW - timedelta(hours=hour)
        batch: list[SpanContribution] = []
        for index in range(3):
            trace += 1
            start = ns_from_utc(now) - SECOND
            environment = environments[(hour + index) % len(environments)]
            batch.append(
                span(
                    trace,
                    1,
                    start=start,
                    cost=0.1 * (index + 1) + hour,
                    root=True,
                    name=names[(hour * 3 + index) % len(names)],
                    environment=environment,
                )
            )
            batch.append(span(trace, 2, start=start, cost=0.01, environment=environment))
        write(store, batch, now)


def odd_contributions() -> list[SpanContribution]:
    """What the OTLP adapter makes of spans no database could hold as sent: NULs in
    the service, the root's name and transaction, a time past int64 nanoseconds, a
    cost no span has. Trace 9: a root and three children, one of them far in the future."""

    def odd(
        span_id: int, name: str, attrs: dict[str, Value], start: int = NOW_NS - 60 * SECOND
    ) -> Span:
        return Span(
            trace_id=(9).to_bytes(16, "big"),
            span_id=span_id.to_bytes(8, "big"),
            parent_span_id=b"" if span_id == 1 else (1).to_bytes(8, "big"),
            name=name,
            start_time_unix_nano=start,
            end_time_unix_nano=min(start + SECOND, 2**64 - 1),
            attributes=attributes(attrs),
        )

    spans = [
        odd(1, "GET\x00/", {"cost.usd": 1.5, "business.transaction": "pay\x00"}),
        odd(2, "child", {"cost.usd": 0.5}),
        odd(3, "far", {"cost.usd": 0.25}, start=2**64 - 2 * SECOND),
        odd(4, "huge", {"cost.usd": 1e300}),
    ]
    resource = {"service.name": "web\x00", "deployment.environment.name": "production"}
    return contributions(batch(resource_spans(resource, spans)))
