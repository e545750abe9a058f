"""Prices through the real collector and sidecar: spancost.environment then spancost.cost."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from genai_prices import Usage, calc_price
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.harness import Collector, OtlpSink, attrs, base_config
from tests.e2e.raw import RawClient

SERVER = trace_pb2.Span.SPAN_KIND_SERVER
INTERNAL = trace_pb2.Span.SPAN_KIND_INTERNAL
CLIENT = trace_pb2.Span.SPAN_KIND_CLIENT

# Public us-east-1 prices, written here independently of spancost's snapshot.
M5_LARGE_PER_HOUR = 0.096
LAMBDA_X86_PER_GB_SECOND = 0.0000166667
LAMBDA_PER_REQUEST = 0.20 / 1_000_000

EC2 = {
    "service.name": "checkout",
    "deployment.environment.name": "prod",
    "cloud.provider": "aws",
    "cloud.platform": "aws_eks",
    "cloud.region": "us-east-1",
    "host.type": "m5.large",
}


def value(v: Any) -> common_pb2.AnyValue:
    if isinstance(v, bool):
        return common_pb2.AnyValue(bool_value=v)
    if isinstance(v, int):
        return common_pb2.AnyValue(int_value=v)
    if isinstance(v, float):
        return common_pb2.AnyValue(double_value=v)
    return common_pb2.AnyValue(string_value=v)


class Trace:
    """Builds one request: resources with spans of exact durations."""

    def __init__(self) -> None:
        self.req = trace_service_pb2.ExportTraceServiceRequest()
        self.now = time.time_ns()
        self.next_id = 1

    def resource(self, resource: dict[str, Any]) -> trace_pb2.ScopeSpans:
        rs = self.req.resource_spans.add()
        for k, v in resource.items():
            rs.resource.attributes.add(key=k, value=value(v))
        ss = rs.scope_spans.add()
        ss.scope.name = "spancost.e2e.cost"
        return ss

    def span(
        self,
        scope: trace_pb2.ScopeSpans,
        name: str,
        kind: int,
        duration_ns: int,
        parent: trace_pb2.Span | None = None,
        **attributes: Any,
    ) -> trace_pb2.Span:
        trace_id = parent.trace_id if parent else self.next_id.to_bytes(16, "big")
        span = scope.spans.add(
            trace_id=trace_id,
            span_id=self.next_id.to_bytes(8, "big"),
            name=name,
            kind=kind,  # type: ignore[arg-type]
            start_time_unix_nano=self.now - duration_ns,
            end_time_unix_nano=self.now,
            parent_span_id=parent.span_id if parent else b"",
        )
        self.next_id += 1
        for k, v in attributes.items():
            span.attributes.add(key=k, value=value(v))
        return span


def test_a_trace_is_priced_span_by_span(
    sink: OtlpSink, collector: Callable[..., Collector]
) -> None:
    config = base_config(sink.port, plugin_config={"drop": ["ci"]})
    config["processors"]["python/cost"] = {
        "extension": "python",
        "plugin": "spancost.cost",
        "timeout": "1s",
    }
    config["service"]["pipelines"]["traces"]["processors"] = ["python/env", "python/cost"]
    c = collector(config)

    t = Trace()
    ec2 = t.resource(EC2)
    root = t.span(
        ec2, "POST /checkout", SERVER, 1_500_000_000, **{"cost.usd": 0.0, "cost.source": "me"}
    )
    child1 = t.span(ec2, "reserve", INTERNAL, 400_000_000, root)
    child2 = t.span(ec2, "charge", INTERNAL, 300_000_000, root)
    llm = t.span(
        ec2,
        "chat gpt-4o",
        CLIENT,
        2_000_000_000,
        root,
        **{
            "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4o",
            "gen_ai.usage.input_tokens": 1000,
            "gen_ai.usage.output_tokens": 200,
        },
    )
    lam = t.resource(
        {
            "service.name": "thumbnails",
            "deployment.environment.name": "prod",
            "cloud.provider": "aws",
            "cloud.platform": "aws_lambda",
            "cloud.region": "us-east-1",
            "faas.max_memory": 1536 * 1024 * 1024,
            "host.arch": "amd64",
        }
    )
    invocation = t.span(lam, "resize", SERVER, 120_400_000)
    unknown = t.resource({**EC2, "host.type": "zz9.mega"})
    odd = t.span(unknown, "GET /odd", SERVER, 10_000_000)
    ci = t.resource({**EC2, "deployment.environment.name": "ci"})
    t.span(ci, "ci run", SERVER, 10_000_000)

    client = RawClient(c.grpc_endpoint)
    client.export(t.req)
    client.close()
    got = {span.span_id: attrs(span.attributes) for _, _, span in sink.wait_spans(6)}
    assert len(got) == 6, "the ci span was dropped, every other span arrived once"

    r = got[root.span_id]
    assert math.isclose(r["cost.usd"], M5_LARGE_PER_HOUR * 1.5 / 3600, rel_tol=1e-9)
    assert (r["cost.currency"], r["cost.source"], r["cost.model"], r["cost.instance_type"]) == (
        "USD",
        "bundled",
        "ec2.on_demand.duration",
        "m5.large",
    )
    assert r["cost.price_as_of"]
    for child in (child1, child2):
        assert got[child.span_id]["cost.usd"] == 0.0
        assert got[child.span_id]["cost.model"] == "ec2.included_in_segment"

    expected_llm = float(
        calc_price(
            Usage(input_tokens=1000, output_tokens=200), "gpt-4o", provider_id="openai"
        ).total_price
    )
    assert math.isclose(got[llm.span_id]["cost.usd"], expected_llm, rel_tol=1e-9)
    assert got[llm.span_id]["cost.source"] == "genai-prices"
    assert got[llm.span_id]["cost.model"] == "llm.tokens"

    billed_s = 121 / 1000  # 120.4 ms billed per millisecond, rounded up
    expected_lambda = 1.5 * billed_s * LAMBDA_X86_PER_GB_SECOND + LAMBDA_PER_REQUEST
    assert math.isclose(got[invocation.span_id]["cost.usd"], expected_lambda, rel_tol=1e-6)
    assert got[invocation.span_id]["cost.model"] == "lambda.gb_seconds+requests"

    assert got[odd.span_id].get("cost.unpriced_reason") == "unknown_instance_type"
    assert "cost.usd" not in got[odd.span_id]

    events = "otelcol_processor_python_plugin_events"
    assert c.metric(events, processor="python/cost", event="priced") == 5
    assert (
        c.metric(events, processor="python/cost", event="unpriced", reason="unknown_instance_type")
        == 1
    )
    assert c.metric(events, processor="python/env", event="dropped", reason="environment=ci") == 1
