"""The usage the allocation reads: busy time from stored spans, running time from node and
pod facts (spancost.allocation.usage), and what the OTLP adapter records for it."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spancost.allocation.usage import (
    GIB,
    BusyEntry,
    NodeUsage,
    PodUsage,
    busy_of,
    node_usage,
    pod_usage,
)
from spancost.facts.model import NodeFacts, PodFacts, Resources
from spancost.pricing.compute import is_local_root
from spancost.totals.aggregate import SpanContribution, ns_from_utc
from spancost.totals.otlp import contributions
from tests.builders import attributes

H = 1_764_928_800 * 10**9  # 2025-12-05 10:00 UTC
HOUR_DT = dt.datetime(2025, 12, 5, 10, tzinfo=dt.UTC)
S = 10**9
TRACE = "0af7651916cd43dd8448eb211c80319c"


def contribution(
    span: int, start: int, end: int, *, pod: str | None = "p1", segment: bool = True,
    weight: float = 1.0, trace: str = TRACE,
) -> SpanContribution:  # fmt: skip
    return SpanContribution(
        trace, f"{span:016x}", start, end, pod=pod, segment=segment, weight=weight
    )


def test_busy_time_per_pod_and_hour() -> None:
    spans = [
        contribution(1, H + 10 * S, H + 70 * S),  # 60 s in hour H
        contribution(2, H - 30 * S, H + 30 * S),  # 30 s each side of the edge
        contribution(3, H + 5 * S, H + 6 * S, segment=False),  # inside a segment: not counted
        contribution(4, H + 5 * S, H + 9 * S, pod=None),  # no pod known: not counted
        contribution(5, H + 100 * S, H + 102 * S, pod="p2", weight=10),  # sampled at 10 %
        contribution(6, H + 200 * S, H + 200 * S),  # zero length: a segment, no time
    ]
    assert busy_of(spans) == {
        TRACE: [
            BusyEntry("p1", H - 3600 * S, 30.0, 1.0),
            BusyEntry("p1", H, 90.0, 2.0),  # the edge-crossing segment counted where it began
            BusyEntry("p2", H, 20.0, 10.0),
        ]
    }


def test_the_adapter_records_pod_segment_and_weight() -> None:
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(attributes({"service.name": "web", "k8s.pod.uid": "uid-1"}))
    scope = rs.scope_spans.add()
    parent = b"\x01" * 8
    cases = list(
        itertools.product(
            [b"", parent],
            [Span.SPAN_KIND_SERVER, Span.SPAN_KIND_INTERNAL, Span.SPAN_KIND_CLIENT,
             Span.SPAN_KIND_CONSUMER, Span.SPAN_KIND_PRODUCER],
            [0, 0x100, 0x300],
        )
    )  # fmt: skip
    for number, (parent_id, kind, flags) in enumerate(cases, start=1):
        scope.spans.add(
            trace_id=bytes.fromhex(TRACE),
            span_id=number.to_bytes(8, "big"),
            parent_span_id=parent_id,
            kind=kind,
            flags=flags,
            start_time_unix_nano=H,
            end_time_unix_nano=H + S,
            trace_state="ot=th:8" if number % 2 else "",
        )
    got = contributions(request)
    assert [c.pod for c in got] == ["uid-1"] * len(cases)
    for c, (parent_id, kind, flags) in zip(got, cases, strict=True):
        # The pricing engine's rule, which the adapter repeats.
        assert c.segment == is_local_root(kind, flags, bool(parent_id)), (parent_id, kind, flags)
    assert [c.weight for c in got] == [2.0 if n % 2 else 1.0 for n in range(1, len(cases) + 1)]


def test_an_integer_pod_uid_is_skipped_and_counted() -> None:
    from spancost.plugin import Events  # noqa: PLC0415

    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(attributes({"k8s.pod.uid": 7}))
    rs.scope_spans.add().spans.add(
        trace_id=bytes.fromhex(TRACE), span_id=b"\x01" * 8, start_time_unix_nano=H,
        end_time_unix_nano=H + S,
    )  # fmt: skip
    events = Events()
    (c,) = contributions(request, events=events)
    assert c.pod is None
    assert events.count("skipped", "pod_type=int") == 1


NODE = NodeFacts(
    name="ip-10-0-1-5",
    instance_type="m5.large",
    region="us-east-1",
    zone="us-east-1a",
    os="linux",
    capacity="spot",
    capacity_total=Resources(cpu=2.0, memory=8 * (1 << 30)),
    created=HOUR_DT - dt.timedelta(minutes=15),
)


def test_node_usage_from_its_creation_to_now() -> None:
    now = HOUR_DT + dt.timedelta(minutes=20)
    rows = node_usage(NODE, now=now, hours=[H - 3600 * S, H, H + 3600 * S])
    assert rows == [
        NodeUsage(H - 3600 * S, NODE.name, 900.0, "us-east-1", "m5.large", "linux", "spot",
                  "us-east-1a", 2.0, 8.0),
        NodeUsage(H, NODE.name, 1200.0, "us-east-1", "m5.large", "linux", "spot",
                  "us-east-1a", 2.0, 8.0),
    ]  # fmt: skip
    # Creation unknown: from `since` (when the agent first saw it).
    unknown = NodeFacts(name="n", capacity_total=Resources(cpu=1.0, memory=None))
    assert node_usage(unknown, now=now, hours=[H]) == []
    (row,) = node_usage(unknown, now=now, hours=[H], since=HOUR_DT + dt.timedelta(minutes=5))
    assert (row.seconds, row.capacity_type, row.memory_gib) == (900.0, "on_demand", 0.0)


def test_pod_usage_from_start_to_end() -> None:
    now = HOUR_DT + dt.timedelta(minutes=30)
    started = HOUR_DT - dt.timedelta(minutes=10)
    web = PodFacts(
        uid="u1", namespace="shop", name="web-7d-x", node=NODE.name, workload_kind="Deployment",
        workload_name="web", requests=Resources(cpu=0.5, memory=512 * (1 << 20)), started=started,
    )  # fmt: skip
    done = PodFacts(
        uid="u2", namespace="shop", name="job-1", node=NODE.name, workload_kind=None,
        workload_name=None, started=started, end=HOUR_DT + dt.timedelta(minutes=1),
    )  # fmt: skip
    pending = PodFacts(
        uid="u3", namespace="shop", name="p", node=NODE.name, workload_kind=None,
        workload_name=None,
    )  # fmt: skip
    elsewhere = PodFacts(
        uid="u4", namespace="shop", name="q", node="other", workload_kind=None,
        workload_name=None, started=started,
    )  # fmt: skip
    rows = pod_usage([web, done, pending, elsewhere], node=NODE.name, now=now,
                     hours=[H - 3600 * S, H])  # fmt: skip
    assert rows == [
        PodUsage(H - 3600 * S, "u1", NODE.name, 600.0, 0.5, 0.5, "shop", "Deployment/web"),
        PodUsage(H, "u1", NODE.name, 1800.0, 0.5, 0.5, "shop", "Deployment/web"),
        PodUsage(H - 3600 * S, "u2", NODE.name, 600.0, 0.0, 0.0, "shop", "Pod/job-1"),
        PodUsage(H, "u2", NODE.name, 60.0, 0.0, 0.0, "shop", "Pod/job-1"),
    ]
    assert GIB == 2**30
    assert ns_from_utc(HOUR_DT) == H


@pytest.mark.parametrize("hours", [[], [H + 7200 * S]])
def test_hours_outside_the_running_time_give_nothing(hours: list[int]) -> None:
    assert node_usage(NODE, now=HOUR_DT, hours=hours) == []


@pytest.mark.parametrize(
    ("model", "compute"),
    [
        ("ec2.on_demand.duration", True),
        ("ec2.on_demand.pod_share.duration", True),
        ("ec2.included_in_segment", True),
        ("lambda.gb_seconds+requests", False),
        ("llm.tokens", False),
        (None, False),
    ],
)
def test_the_adapter_marks_node_compute(model: str | None, compute: bool) -> None:
    """A node's compute is the allocation's to split; other prices are per request."""
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(
        trace_id=bytes.fromhex(TRACE), span_id=b"\x01" * 8, start_time_unix_nano=H,
        end_time_unix_nano=H + S,
    )  # fmt: skip
    if model is not None:
        span.attributes.extend(attributes({"cost.model": model, "cost.usd": 0.5}))
    (c,) = contributions(request)
    assert c.compute is compute
