"""Sampled traffic is allocated as the traffic it stands for: 10 % of checkout kept (each
span counted 10 times, from ``tracestate`` ``ot=th:``) against all of search, through
the OTLP adapter and a real SQLite store."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spancost.store import SQLiteStore
from spancost.totals import split
from spancost.totals.otlp import contributions
from tests.allocation_data import (
    CONFIG,
    HOUR,
    HOUR_NS,
    M5_LARGE,
    NODE,
    NODE_PRICE,
    NOW,
    PODS,
    SECOND,
    SKEW,
)
from tests.builders import attributes

END = HOUR + timedelta(minutes=59)
TEN_PERCENT = "ot=th:e6666666666666"  # what a 10 % probability sampler writes


def batch(
    name: str, *, requests: int, kept_every: int, trace_state: str
) -> ExportTraceServiceRequest:
    """`requests` one-second requests to `name` on the web pod; one in `kept_every` kept."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(attributes({"service.name": "web", "k8s.pod.uid": "web"}))
    scope = rs.scope_spans.add()
    for n in range(0, requests, kept_every):
        start = HOUR_NS + n * 30 * SECOND
        scope.spans.add(
            trace_id=(hash(name) % 2**60 + n + 1).to_bytes(16, "big"),
            span_id=(n + 1).to_bytes(8, "big"),
            name=name,
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=start,
            end_time_unix_nano=start + SECOND,
            trace_state=trace_state,
            attributes=attributes({"business.transaction": name, "cost.usd": 0.0}),
        )
    return request


def test_ten_percent_sampled_traffic_is_counted_as_all_of_it(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db", CONFIG)
    store.migrate()
    for request in (
        batch("checkout", requests=100, kept_every=10, trace_state=TEN_PERCENT),
        batch("search", requests=100, kept_every=1, trace_state=""),
    ):
        accepted, quarantined = split(contributions(request), NOW, SKEW)
        store.write(accepted, quarantined, NOW)
    store.write_usage([(NODE, NODE_PRICE)], PODS, NOW)
    store.allocate()
    rows = {r.transaction: r for r in store.allocated_totals(HOUR, END) if r.kind == "transaction"}
    checkout, search = rows["checkout"], rows["search"]
    # 10 kept spans of 1 s, each standing for 10: as busy as search's 100.
    assert checkout.busy_seconds == pytest.approx(100.0, rel=1e-9)
    assert checkout.segments == pytest.approx(100.0, rel=1e-9)
    assert search.segments == 100.0
    assert checkout.usd == pytest.approx(search.usd, rel=1e-9)
    web = 11 * M5_LARGE / 26  # the web pod's hour (README's worked example)
    assert checkout.usd + search.usd == pytest.approx(web, rel=1e-12)
    assert checkout.usd / checkout.segments == pytest.approx(web / 200, rel=1e-9)
    assert math.isclose(
        sum(line.difference for line in store.reconcile(HOUR, END)), 0.0, abs_tol=1e-15
    )
    store.close()
