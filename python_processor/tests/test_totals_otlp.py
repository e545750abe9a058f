"""The OTLP adapter: enriched spans → contributions, and a batch priced by spancost.cost."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from spancost.plugin import Event, Events
from spancost.plugins import cost
from spancost.totals import fold, split
from spancost.totals import otlp as totals_otlp
from spancost.totals.aggregate import utc_from_ns
from spancost.totals.otlp import contributions
from tests.builders import Value, all_spans, attribute_map, attributes

T0 = 1_760_000_000_000_000_000
SECOND = 1_000_000_000
SKEW = timedelta(hours=2)
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")
EKS: dict[str, Value] = {
    "service.name": "checkout",
    "cloud.provider": "aws",
    "cloud.platform": "aws_eks",
    "cloud.region": "us-east-1",
    "cloud.account.id": "123456789012",
    "host.type": "m5.large",
    "os.type": "linux",
    "deployment.environment.name": " Production ",
}


def make_span(
    span: int,
    *,
    parent: bytes = b"",
    name: str = "op",
    start: int = T0,
    duration: int = SECOND,
    attrs: Mapping[str, Value] | None = None,
    trace: bytes = TRACE,
) -> Span:
    return Span(
        trace_id=trace,
        span_id=span.to_bytes(8, "big"),
        parent_span_id=parent,
        name=name,
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=start,
        end_time_unix_nano=start + duration,
        attributes=attributes(attrs),
    )


def batch(*resources: tuple[Mapping[str, Value] | None, list[Span]]) -> ExportTraceServiceRequest:
    result = ExportTraceServiceRequest()
    for resource, spans in resources:
        rs = ResourceSpans()
        rs.resource.attributes.extend(attributes(resource))
        rs.scope_spans.append(ScopeSpans(spans=spans))
        result.resource_spans.append(rs)
    return result


PRICED: dict[str, Value] = {"cost.usd": 0.25, "cost.currency": "USD", "cost.source": "bundled"}


def test_a_priced_root_with_its_facts() -> None:
    (item,) = contributions(
        batch(
            (EKS, [make_span(1, name="GET /cart", attrs={**PRICED, "business.transaction": "buy"})])
        )
    )
    assert item.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert item.span_id == "0000000000000001"
    assert (item.cost_usd, item.priced, item.unpriced_reason) == (0.25, True, None)
    assert item.is_root
    assert item.name == "GET /cart"
    assert (item.service, item.account, item.environment) == (
        "checkout",
        "123456789012",
        "production",
    )
    assert item.transaction_attribute == "buy"
    assert (item.start_ns, item.end_ns) == (T0, T0 + SECOND)
    assert item.start_utc == utc_from_ns(T0)


@pytest.mark.parametrize(
    ("attrs", "usd", "reason"),
    [
        ({"cost.usd": 0.0, "cost.model": "ec2.included_in_segment"}, 0.0, None),
        ({"cost.usd": -0.0}, 0.0, None),
        ({"cost.usd": 3e-15}, 3e-15, None),
        ({"cost.unpriced_reason": "unknown_region"}, 0.0, "unknown_region"),
        ({}, 0.0, "cost_missing"),
        ({"cost.usd": 1}, 0.0, "cost_invalid"),  # an int is not what spancost.cost writes
        ({"cost.usd": "0.1"}, 0.0, "cost_invalid"),
        ({"cost.usd": -1.0}, 0.0, "cost_invalid"),
        ({"cost.usd": math.nan}, 0.0, "cost_invalid"),
        ({"cost.usd": math.inf}, 0.0, "cost_invalid"),
        ({"cost.unpriced_reason": 3}, 0.0, "cost_invalid"),
        ({"cost.usd": 0.5, "cost.unpriced_reason": "unknown_region"}, 0.5, None),
    ],
)
def test_cost_attributes(attrs: dict[str, Value], usd: float, reason: str | None) -> None:
    (item,) = contributions(batch((EKS, [make_span(1, parent=b"\x01" * 8, attrs=attrs)])))
    assert (item.cost_usd, item.unpriced_reason, item.priced) == (usd, reason, reason is None)
    assert math.copysign(1.0, item.cost_usd) == 1.0


def test_roots_are_spans_without_a_parent() -> None:
    items = contributions(
        batch(
            (
                EKS,
                [
                    make_span(1),
                    make_span(2, parent=b"\x00" * 8),
                    make_span(3, parent=b"\x00" * 7 + b"\x01"),
                ],
            )
        )
    )
    assert [item.is_root for item in items] == [True, True, False]


def test_the_transaction_attribute_span_first_then_resource_roots_only() -> None:
    resource = {**EKS, "business.transaction": "from-resource", "team.flow": "flow"}
    spans = [
        make_span(1, attrs={"business.transaction": "from-span"}),
        make_span(2),
        make_span(3, parent=b"\x01" * 8, attrs={"business.transaction": "from-child"}),
        make_span(4, attrs={"business.transaction": "  "}),
    ]
    items = contributions(batch((resource, spans)))
    assert [item.transaction_attribute for item in items] == [
        "from-span",
        "from-resource",
        None,
        "from-resource",
    ]
    other = contributions(batch((resource, spans[:1])), transaction_attribute="team.flow")
    assert other[0].transaction_attribute == "flow"


def test_wrong_types_count_as_absent_and_are_counted() -> None:
    resource: dict[str, Value] = {
        "service.name": 7,
        "cloud.account.id": 123456789012,
        "deployment.environment.name": True,
        "deployment.environment": "Staging",
        "business.transaction": ["a"],
    }
    events = Events()
    items = contributions(
        batch((resource, [make_span(1, attrs={"business.transaction": 5}), make_span(2)])),
        events=events,
    )
    assert [(i.service, i.account, i.environment, i.transaction_attribute) for i in items] == [
        (None, None, "staging", None),
        (None, None, "staging", None),
    ]
    assert sorted(events, key=lambda event: event.reason) == [
        Event("skipped", "account_type=int", 2),
        Event("skipped", "environment_type=bool", 2),
        Event("skipped", "service_type=int", 2),
        Event("skipped", "transaction_type=array", 2),
        Event("skipped", "transaction_type=int", 1),
    ]


def test_the_owner_comes_from_the_resource_only_when_configured() -> None:
    owned = {**EKS, "k8s.namespace.name": "shop"}
    # A span cannot claim another namespace: only the resource (set by the collector's
    # k8s_attributes from the connection) says who sent it.
    forged = make_span(2, attrs={"k8s.namespace.name": "platform"})
    request = batch(
        (owned, [make_span(1), forged]),
        ({**EKS, "k8s.namespace.name": 3}, [make_span(3)]),
        (EKS, [make_span(4)]),
    )
    events = Events()
    items = contributions(request, owner_attribute="k8s.namespace.name", events=events)
    assert [item.owner for item in items] == ["shop", "shop", None, None]
    assert list(events) == [Event("skipped", "owner_type=int", 1)]
    assert [item.owner for item in contributions(request)] == [None] * 4, "not configured"


def test_the_environment_resource_first_then_the_span() -> None:
    spans = [
        make_span(1, attrs={"deployment.environment.name": "CI"}),
        make_span(2, attrs={"deployment.environment": "dev"}),
        make_span(3),
    ]
    no_env = {"service.name": "api"}
    assert [i.environment for i in contributions(batch((no_env, spans)))] == ["ci", "dev", None]
    assert [i.environment for i in contributions(batch((EKS, spans)))] == ["production"] * 3


def test_every_span_yields_a_contribution_even_without_ids_or_times() -> None:
    broken = Span(name="broken")
    items = contributions(batch((None, [broken]), (EKS, []), (EKS, [make_span(1)])))
    assert [(i.trace_id, i.span_id, i.start_ns) for i in items] == [
        ("", "", 0),
        (TRACE.hex(), "0000000000000001", T0),
    ]
    assert items[0].service is None
    _, quarantined = split(items, utc_from_ns(T0), SKEW)
    assert [q.reason for q in quarantined] == ["invalid_id"]


def test_what_no_store_could_hold_is_made_storable_and_counted() -> None:
    """A NUL (PostgreSQL text cannot hold it), a time past int64 nanoseconds, a cost no
    span has: one such span must not make its whole batch unstorable."""
    resource = {**EKS, "service.name": "check\x00out", "cloud.account.id": "12\x003"}
    spans = [
        make_span(1, name="GET\x00/", attrs={"business.transaction": "pay\x00ment"}),
        make_span(2, parent=b"\x01" * 8, start=2**64 - 2 * SECOND, attrs=PRICED),
        make_span(3, parent=b"\x01" * 8, attrs={"cost.usd": 1e300}),
        make_span(4, parent=b"\x01" * 8, attrs={"cost.unpriced_reason": "no\x00rule"}),
        make_span(5, parent=b"\x01" * 8, attrs={"cost.usd": totals_otlp.MAX_SPAN_COST_USD}),
    ]
    events = Events()
    items = contributions(batch((resource, spans)), events=events)
    root = items[0]
    assert (root.service, root.account, root.name) == ("check\ufffdout", "12\ufffd3", "GET\ufffd/")
    assert root.transaction_attribute == "pay\ufffdment"
    assert (items[1].start_ns, items[1].end_ns) == (totals_otlp.MAX_TIME_NS,) * 2
    assert (items[2].cost_usd, items[2].unpriced_reason) == (0.0, "cost_invalid")
    assert items[3].unpriced_reason == "no\ufffdrule"
    assert (items[4].cost_usd, items[4].unpriced_reason) == (totals_otlp.MAX_SPAN_COST_USD, None)
    assert {(e.event, e.reason): e.spans for e in events} == {
        ("sanitized", "service_nul"): 5,
        ("sanitized", "account_nul"): 5,
        ("sanitized", "name_nul"): 1,
        ("sanitized", "transaction_nul"): 1,
        ("sanitized", "time_out_of_range"): 2,
        ("sanitized", "unpriced_reason_nul"): 1,
    }
    _, quarantined = split(items, utc_from_ns(T0), SKEW)
    assert [(q.contribution.span_id[-1], q.reason) for q in quarantined] == [("2", "future")]


def test_a_batch_priced_by_spancost_cost_sums_to_its_cost_attributes() -> None:
    """The path end to end, without the network: price, read back, quarantine, fold."""
    lambda_resource: dict[str, Value] = {
        "service.name": "resize",
        "cloud.provider": "aws",
        "cloud.platform": "aws_lambda",
        "cloud.region": "us-east-1",
        "faas.max_memory": 1536 * 1024 * 1024,
    }
    unknown: dict[str, Value] = {"service.name": "legacy", "cloud.provider": "gcp"}
    request = batch(
        (
            EKS,
            [
                make_span(1, name="POST /cart", duration=3 * SECOND),
                make_span(2, parent=(1).to_bytes(8, "big"), start=T0 + SECOND),
            ],
        ),
        (lambda_resource, [make_span(3, parent=(2).to_bytes(8, "big"), duration=SECOND // 3)]),
        (unknown, [make_span(4, parent=(2).to_bytes(8, "big"))]),
        (EKS, [make_span(9, trace=b"\x02" * 16, duration=7 * SECOND)]),
    )
    events = Events()
    plugin = cost.CostPlugin({})
    try:
        plugin.process(request, events)
    finally:
        plugin.close()
    written = [attribute_map(span.attributes) for span in all_spans(request)]
    expected = math.fsum(usd for a in written if isinstance(usd := a.get("cost.usd"), float))

    accepted, quarantined = split(contributions(request), utc_from_ns(T0), SKEW)
    assert quarantined == []
    deltas = fold(accepted)
    assert set(deltas) == {TRACE.hex(), (b"\x02" * 16).hex()}
    assert math.isclose(math.fsum(d.cost_usd for d in deltas.values()), expected, rel_tol=1e-9)
    assert expected > 0
    trace = deltas[TRACE.hex()]
    assert (trace.span_count, trace.priced_count, trace.unpriced_count) == (4, 3, 1)
    assert sum(d.priced_count for d in deltas.values()) == events.count("priced")
    assert sum(d.unpriced_count for d in deltas.values()) == events.count("unpriced")
    assert trace.root is not None
    assert trace.root.name == "POST /cart"
