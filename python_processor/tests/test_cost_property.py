"""Property test: ``spancost.cost`` never raises; every span ends priced or with a reason."""

from __future__ import annotations

import math
from typing import Any, cast

import hypothesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from spancost.changes import Changes, span_count
from spancost.plugin import Events
from spancost.plugins.cost import CostPlugin
from spancost.pricing.catalog import PriceBook
from spancost.pricing.compute import (
    ComputeSettings,
    SegmentPricing,
    is_local_root,
    span_duration_ns,
)
from spancost.pricing.decision import Override, Plan, SpanPricer, override
from spancost.pricing.model import UNPRICED_REASONS
from spancost.vocabulary.limits import MAX_DURATION_NS
from spancost.vocabulary.otlp import AttributeValue
from tests.builders import any_value, attribute_map

RESOURCE_TEMPLATES: list[dict[str, Any]] = [
    {},
    {
        "cloud.provider": "aws",
        "cloud.platform": "aws_eks",
        "cloud.region": "us-east-1",
        "host.type": "m5.large",
    },
    {
        "cloud.provider": "aws",
        "cloud.platform": "aws_ec2",
        "cloud.region": "eu-west-1",
        "host.type": "t4g.medium",
        "aws.ec2.instance.lifecycle": "spot",
    },
    {
        "cloud.provider": "aws",
        "cloud.platform": "aws_lambda",
        "cloud.region": "us-west-2",
        "faas.max_memory": 512 * 1024 * 1024,
        "host.arch": "arm64",
    },
    {
        "cloud.provider": "aws",
        "cloud.platform": "aws_ecs",
        "cloud.region": "us-east-1",
        "aws.ecs.launchtype": "fargate",
        "aws.ecs.task.cpu": 256,
        "aws.ecs.task.memory": 512,
    },
    {"service.name": "ledger"},
    {"service.name": "billing", "host.name": "rack1-node-2"},
    {"service.name": "api", "cloud.provider": "aws", "cloud.region": "ap-northeast-1"},
]
SPAN_TEMPLATES: list[dict[str, Any]] = [
    {},
    {
        "gen_ai.request.model": "gpt-4o",
        "gen_ai.usage.input_tokens": 100,
        "gen_ai.usage.output_tokens": 10,
    },
    {
        "gen_ai.response.model": "claude-3-5-sonnet",
        "gen_ai.provider.name": "openai",
        "gen_ai.usage.input_tokens": 10,
        "gen_ai.usage.cache_read.input_tokens": 50,
    },
    {"gen_ai.request.model": "gemini-1.5-pro", "gen_ai.usage.input_tokens": 200_000},
    {"rpc.service": "S3", "http.response.body.size": 1000},
    {"faas.trigger": "http"},
    {"cost.usd": 0.5, "cost.model": "ec2.on_demand.duration"},
]
RESOURCE_KEYS = (
    "cloud.provider",
    "cloud.platform",
    "cloud.region",
    "host.type",
    "host.arch",
    "os.type",
    "faas.max_memory",
    "aws.ecs.task.cpu",
    "service.name",
    "aws.ec2.instance.lifecycle",
    "host.name",
)
SPAN_KEYS = (
    "gen_ai.request.model",
    "gen_ai.response.model",
    "gen_ai.provider.name",
    "gen_ai.system",
    "gen_ai.operation.name",
    "gen_ai.usage.input_tokens",
    "gen_ai.usage.output_tokens",
    "gen_ai.usage.cache_read.input_tokens",
    "gen_ai.usage.cached_tokens",
    "faas.trigger",
    "cost.usd",
    "cost.model",
    "cost.unpriced_reason",
    "cost.billable",
    "rpc.service",
    "http.response.body.size",
    "service.name",
    "other",
)
STRINGS = (
    "gpt-4o",
    "claude-3-5-sonnet",
    "no-such-model",
    "openai",
    "aws.bedrock",
    "chat",
    "invoke_agent",
    "S3",
    "spot",
    "m5.large",
    "x9.huge",
    "us-east-1",
    "mars-1",
    "aws",
    "aws_lambda",
    "aws_eks",
    "fargate",
    "http",
    "",
    " ",
    "ledger",
    "rack1-node-2",
    "1536",
)
CONFIGS: list[dict[str, Any]] = [
    {},
    {"trust_upstream": True},
    {"minimum_charge_usd": 1e-7, "spot": {"discount": 0.5}},
    {"llm": {"enabled": False}},
    {
        "rules": [
            {
                "name": "s3",
                "match": {"rpc.service": "S3"},
                "per_unit_usd": 1e-9,
                "unit_attribute": "http.response.body.size",
            },
            {"name": "onprem", "match": {"host.name": "rack*"}, "per_hour_usd": 0.5},
            {
                "name": "all",
                "match": {"service.name": "ledger"},
                "per_hour_usd": 2,
                "applies_to": "all",
            },
            {"name": "fee", "match": {"gen_ai.provider.name": "openai"}, "per_unit_usd": 0.01},
        ],
        "trust_upstream": True,
    },
    # Limits that refuse many spans: the local roots charged in bulk and the spans decided
    # one by one meet them alike (the fast path is checked against the detailed one).
    {
        "minimum_charge_usd": 1e-6,
        "limits": {"max_span_usd": 1e-4, "max_duration": "6s", "max_tokens": 500},
    },
]

scalars = st.one_of(
    st.sampled_from(STRINGS),
    st.text(max_size=4),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from((0, 1, 100, 1536, 10**9, 10**13, -1)),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from((0.0, 0.5, 1e300, -0.0)),
    st.booleans(),
    st.binary(max_size=3),
    st.none(),
)


@st.composite
def values(draw: st.DrawFn) -> AnyValue:
    value = draw(scalars)
    if draw(st.integers(0, 15)) == 0:
        return any_value([value])
    return any_value(value)


@st.composite
def resources(draw: st.DrawFn) -> list[KeyValue]:
    base = dict(draw(st.sampled_from(RESOURCE_TEMPLATES)))
    for key in draw(st.lists(st.sampled_from(RESOURCE_KEYS), max_size=3)):
        base[key] = draw(values())
    return [
        KeyValue(key=k, value=v if isinstance(v, AnyValue) else any_value(v))
        for k, v in base.items()
    ]


times = st.one_of(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.sampled_from((0, 1, 1_760_000_000_000_000_000)),
)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    start = draw(st.one_of(st.just(1_760_000_000_000_000_000), times))
    if draw(st.booleans()):
        end = draw(times)
    else:
        end = min(2**64 - 1, start + draw(st.integers(0, 10**10)))
    span = Span(
        name="s",
        kind=Span.SpanKind.ValueType(draw(st.integers(0, 5))),
        flags=draw(st.sampled_from((0, 0x100, 0x300, 0x200, 0x101, 0x301, 2**32 - 1))),
        parent_span_id=draw(st.sampled_from((b"", b"\x01" * 8))),
        start_time_unix_nano=start,
        end_time_unix_nano=end,
    )
    for key, value in draw(st.sampled_from(SPAN_TEMPLATES)).items():
        span.attributes.append(KeyValue(key=key, value=any_value(value)))
    for key in draw(st.lists(st.sampled_from(SPAN_KEYS), max_size=4)):
        span.attributes.append(KeyValue(key=key, value=draw(values())))
    return span


@st.composite
def batches(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 4))):
        rs = ResourceSpans()
        rs.resource.attributes.extend(draw(resources()))
        for _ in range(draw(st.integers(0, 3))):
            scope = ScopeSpans()
            scope.spans.extend(draw(st.lists(spans(), max_size=6)))
            rs.scope_spans.append(scope)
        request.resource_spans.append(rs)
    return request


PLUGINS = [CostPlugin(config) for config in CONFIGS]


def is_upstream_price(span: Span) -> bool:
    for kv in span.attributes:
        if kv.key == "cost.usd":
            value = kv.value
            return (
                value.WhichOneof("value") == "double_value"
                and math.isfinite(value.double_value)
                and value.double_value >= 0
            )
    return False


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches(), which=st.integers(0, len(CONFIGS) - 1))
def test_every_span_is_priced_or_reasoned(batch: ExportTraceServiceRequest, which: int) -> None:
    plugin = PLUGINS[which]
    trust = bool(CONFIGS[which].get("trust_upstream"))
    before = [
        span.SerializeToString()
        for rs in batch.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    trusted = [
        trust and is_upstream_price(span)
        for rs in batch.resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    fast = ExportTraceServiceRequest()
    fast.CopyFrom(batch)
    events = Events()
    plugin.process(fast, events)  # never raises

    index = 0
    for rs in fast.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if trusted[index]:
                    assert span.SerializeToString() == before[index]
                else:
                    attrs = attribute_map(span.attributes)
                    priced = "cost.usd" in attrs
                    assert priced != ("cost.unpriced_reason" in attrs), attrs
                    if priced:
                        usd = attrs["cost.usd"]
                        assert isinstance(usd, float) and math.isfinite(usd) and usd >= 0
                        assert attrs["cost.currency"] == "USD"
                        for key in ("cost.source", "cost.model", "cost.price_as_of"):
                            assert isinstance(attrs[key], str) and attrs[key], key
                    else:
                        assert attrs["cost.unpriced_reason"] in UNPRICED_REASONS
                        assert not {"cost.currency", "cost.source", "cost.model"} & attrs.keys()
                index += 1
    assert index == span_count(batch)
    for event in events:
        hypothesis.event(f"{event.event}/{event.reason}")
    total = sum(e.spans for e in events)
    assert total == span_count(batch)
    assert events.count("trusted") == sum(trusted)

    # Reading every span attribute by attribute gives the same answer as the fast path.
    slow = ExportTraceServiceRequest()
    slow.CopyFrom(batch)
    plugin._force_detailed = True
    try:
        slow_events = Events()
        plugin.process(slow, slow_events)
    finally:
        plugin._force_detailed = False
    assert slow.SerializeToString() == fast.SerializeToString()
    assert sorted(slow_events, key=repr) == sorted(events, key=repr)

    # Searching the received bytes (what the sidecar does) instead of serializing each
    # scope again gives the same changes; so do bytes that cannot be used.
    expected = Changes(span_count(batch))
    plugin.annotate(batch, expected, Events())
    for data in (batch.SerializeToString(), b"\xff not a request", b""):
        got = Changes(span_count(batch))
        wire_events = Events()
        plugin.annotate_wire(data, batch, got, wire_events)
        assert got.to_proto() == expected.to_proto()
        assert sorted(wire_events, key=repr) == sorted(events, key=repr)


@given(
    kind=st.integers(0, 5),
    flags=st.integers(0, 2**32 - 1),
    has_parent=st.booleans(),
    start=times,
    end=times,
)
def test_inlined_fast_path_agrees_with_the_core(
    kind: int, flags: int, has_parent: bool, start: int, end: int
) -> None:
    """`SpanPricer.charge_local_roots` inlines is_local_root: same answers."""
    plugin = PLUGINS[0]
    span = Span(
        name="s",
        kind=Span.SpanKind.ValueType(kind),
        flags=flags,
        parent_span_id=b"\x01" * 8 if has_parent else b"",
        start_time_unix_nano=start,
        end_time_unix_nano=end,
    )
    rs = ResourceSpans()
    rs.resource.attributes.extend(
        [KeyValue(key=k, value=any_value(v)) for k, v in RESOURCE_TEMPLATES[1].items()]
    )
    rs.scope_spans.add().spans.append(span)
    batch = ExportTraceServiceRequest(resource_spans=[rs])
    changes = Changes(1)
    events = Events()
    plugin.annotate(batch, changes, events)
    changes.apply(batch)
    attrs = attribute_map(batch.resource_spans[0].scope_spans[0].spans[0].attributes)
    root = is_local_root(kind, flags, has_parent)
    duration = span_duration_ns(start, end)
    if not root:
        assert attrs["cost.model"] == "ec2.included_in_segment"
    elif duration is None:
        assert attrs == {"cost.unpriced_reason": "bad_attribute"}
    elif duration > 24 * 3600 * 10**9:  # the default limits.max_duration
        assert attrs == {"cost.unpriced_reason": "implausible_duration"}
    else:
        assert attrs["cost.model"] == "ec2.on_demand.duration"
        assert attrs["cost.usd"] == 0.096 / 3600 * (duration / 1e9)
        assert duration <= MAX_DURATION_NS


DAY_NS = 24 * 3600 * 10**9
BOUNDARIES = (0, 1, 10**9, 10**9 + 1, DAY_NS, DAY_NS + 1, MAX_DURATION_NS, MAX_DURATION_NS + 1)


@given(
    start=times,
    duration=st.one_of(
        st.integers(-(10**9), 2 * MAX_DURATION_NS), st.sampled_from(BOUNDARIES), times
    ),
    usd_per_hour=st.one_of(
        st.floats(min_value=0, max_value=1e12), st.sampled_from((0.0, 0.096, 1e9, math.nan))
    ),
    minimum=st.sampled_from((0.0, 1e-6, 1.0)),
    max_usd=st.sampled_from((1e-4, 1000.0, 1e9)),
    max_duration_s=st.sampled_from((1, 24 * 3600, 366 * 24 * 3600)),
)
def test_the_local_roots_charged_in_bulk_cost_what_charge_usd_says(
    *,
    start: int,
    duration: int,
    usd_per_hour: float,
    minimum: float,
    max_usd: float,
    max_duration_s: int,
) -> None:
    """`charge_local_roots` accepts the common case inline; whatever it decides is what
    `SpanPricer._charge_usd`, the one definition of a compute charge, decides."""
    pricer = SpanPricer(
        cast(PriceBook, None),
        ComputeSettings(),
        minimum_usd=minimum,
        max_usd=max_usd,
        max_duration_ns=max_duration_s * 10**9,
    )
    segment = SegmentPricing(
        source="test",
        model="ec2.on_demand.duration",
        included_model="ec2.included_in_segment",
        as_of="",
        instance_type="",
        usd_per_second=usd_per_hour / 3600,
    )
    base: dict[str, AttributeValue] = {"cost.usd": 0.0}
    plan = Plan({}, base, ("priced", "test"), segment, False, False, None, ())
    end = min(max(start + duration, 0), 2**64 - 1)
    span = Span(name="s", start_time_unix_nano=start, end_time_unix_nano=end)
    overrides: list[Override] = []
    roots: list[tuple[int, float]] = []
    pricer.charge_local_roots(
        plan, segment, [span], 7, overrides=overrides, roots=roots, skip=set()
    )
    expected = pricer._charge_usd(segment, start, end)
    if isinstance(expected, float):
        assert (roots, overrides) == ([(7, expected)], [])
    else:
        assert (roots, overrides) == ([], [override(7, base, expected)])
