"""Measures what ``spancost.cost`` adds per span: µs/span of ``annotate`` on a 1,000-span batch.

The batch is what a node agent sends: 20 resources of 50 spans, spans in export
order (children end, and are exported, before their root), 8 span attributes
each (HTTP server/client), traces of 10 spans:

- 14 EC2/EKS resources (several instance types and regions, 2 of them spot);
  each trace a SERVER root (remote parent) and 9 INTERNAL/CLIENT children;
- 3 of them also call an LLM: 2 chat spans per trace in their own scope
  (``gen_ai.*`` usage, gpt-4o / claude);
- 3 Lambda resources: the invocation span (``faas.trigger``) and 9 children.

It prints the median and best µs/span of ``annotate`` alone, of
``annotate_wire`` (what the sidecar calls: it searches the received bytes
instead of serializing each scope again) and of ``annotate_wire`` +
``Changes.to_proto()`` (what the sidecar sends back), and checks the result
once (every span priced or with a reason).

    .venv/bin/python -m bench.bench_cost_plugin
    .venv/bin/python -m bench.bench_cost_plugin --rounds 50 --rules
    .venv/bin/python -m bench.bench_cost_plugin --node-facts

``--node-facts`` prices as a DaemonSet agent does: every resource as the node the
agent watches (an m5.xlarge; a stand-in for the Kubernetes watch, which is never on
the hot path), over whatever the resources claim.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span
from spancost.changes import Changes, iter_spans, span_count
from spancost.facts.model import NodeFacts, PodFacts
from spancost.facts.source import NodeFactsSource
from spancost.plugin import Events
from spancost.plugins.cost import CostPlugin

SPANS_PER_RESOURCE = 50
TRACE_SIZE = 10
EC2_TYPES = (
    ("us-east-1", "m5.large"),
    ("us-east-1", "c6i.xlarge"),
    ("us-west-2", "r6g.2xlarge"),
    ("eu-west-1", "m6i.2xlarge"),
    ("eu-central-1", "t3.xlarge"),
    ("ap-northeast-1", "m7g.large"),
    ("us-east-2", "c7i.4xlarge"),
)
HTTP_SERVER = {
    "http.request.method": "GET",
    "http.route": "/api/orders/{id}",
    "url.path": "/api/orders/12345",
    "url.scheme": "https",
    "http.response.status_code": 200,
    "server.address": "orders.internal",
    "network.protocol.version": "1.1",
    "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64)",
}
HTTP_CLIENT = {
    "http.request.method": "POST",
    "url.full": "https://inventory.internal/api/reserve",
    "server.address": "inventory.internal",
    "server.port": 443,
    "http.response.status_code": 201,
    "network.protocol.version": "2",
    "network.peer.address": "10.0.3.17",
    "http.request.resend_count": 0,
}


def _kv(key: str, value: str | int | float | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    if isinstance(value, float):
        return KeyValue(key=key, value=AnyValue(double_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def _attrs(values: dict[str, Any]) -> list[KeyValue]:
    return [_kv(k, v) for k, v in values.items()]


def _resource(kind: str, n: int) -> dict[str, Any]:
    common = {
        "service.name": f"svc-{n}",
        "service.version": "1.4.2",
        "telemetry.sdk.language": "python",
        "telemetry.sdk.name": "opentelemetry",
        "deployment.environment.name": "production",
    }
    if kind == "lambda":
        return {
            **common,
            "cloud.provider": "aws",
            "cloud.platform": "aws_lambda",
            "cloud.region": "us-east-1",
            "faas.name": f"fn-{n}",
            "faas.max_memory": (512 + 512 * (n % 3)) * 1024 * 1024,
            "host.arch": "arm64" if n % 2 else "amd64",
        }
    region, host_type = EC2_TYPES[n % len(EC2_TYPES)]
    values = {
        **common,
        "cloud.provider": "aws",
        "cloud.platform": "aws_eks",
        "cloud.region": region,
        "cloud.availability_zone": f"{region}a",
        "host.type": host_type,
        "host.id": f"i-0{n:015x}",
        "k8s.pod.name": f"svc-{n}-7d9f8c-abcde",
        "k8s.namespace.name": "shop",
        "os.type": "linux",
    }
    if n % 7 == 3:
        values["aws.ec2.instance.lifecycle"] = "spot"
    return values


def make_batch() -> ExportTraceServiceRequest:
    """The 1,000-span batch described in the module docstring."""
    request = ExportTraceServiceRequest()
    kinds = ["ec2"] * 11 + ["llm"] * 3 + ["lambda"] * 3
    kinds += ["ec2"] * (20 - len(kinds))
    t0 = 1_760_000_000_000_000_000
    span_id = 1
    for n, kind in enumerate(kinds):
        rs = ResourceSpans()
        rs.resource.attributes.extend(_attrs(_resource(kind, n)))
        http = rs.scope_spans.add()
        http.scope.name = "opentelemetry.instrumentation.flask"
        genai = None
        if kind == "llm":
            genai = rs.scope_spans.add()
            genai.scope.name = "opentelemetry.instrumentation.openai_v2"
        for trace in range(SPANS_PER_RESOURCE // TRACE_SIZE):
            trace_id = (n * 1000 + trace + 1).to_bytes(16, "big")
            root_id = (span_id + TRACE_SIZE).to_bytes(8, "big")
            start = t0 + trace * 50_000_000
            for child in range(TRACE_SIZE - 1):
                llm_call = genai is not None and child in (2, 5)
                target = genai if llm_call and genai is not None else http
                attrs = dict(HTTP_CLIENT)
                kind_value = Span.SPAN_KIND_CLIENT if child % 2 else Span.SPAN_KIND_INTERNAL
                if llm_call:
                    attrs = {
                        "gen_ai.operation.name": "chat",
                        "gen_ai.provider.name": "openai" if child == 2 else "anthropic",
                        "gen_ai.request.model": "gpt-4o" if child == 2 else "claude-3-5-sonnet",
                        "gen_ai.response.model": (
                            "gpt-4o-2024-08-06" if child == 2 else "claude-3-5-sonnet-20241022"
                        ),
                        "gen_ai.usage.input_tokens": 1200 + 37 * trace,
                        "gen_ai.usage.output_tokens": 250 + 11 * trace,
                        "server.address": "api.openai.com",
                    }
                    kind_value = Span.SPAN_KIND_CLIENT
                target.spans.append(
                    Span(
                        trace_id=trace_id,
                        span_id=span_id.to_bytes(8, "big"),
                        parent_span_id=root_id,
                        name="child",
                        kind=kind_value,
                        flags=0x100 | 0x01,  # parent known to be local
                        start_time_unix_nano=start + child * 1_000_000,
                        end_time_unix_nano=start + child * 1_000_000 + 800_000,
                        attributes=_attrs(attrs),
                    )
                )
                span_id += 1
            root_attrs = dict(HTTP_SERVER)
            if kind == "lambda":
                root_attrs["faas.trigger"] = "http"
            http.spans.append(
                Span(
                    trace_id=trace_id,
                    span_id=root_id,
                    parent_span_id=b"\x99" * 8,
                    name="GET /api/orders/{id}",
                    kind=Span.SPAN_KIND_SERVER,
                    flags=0x100 | 0x200 | 0x01,  # parent known to be remote
                    start_time_unix_nano=start,
                    end_time_unix_nano=start + 12_345_678,
                    attributes=_attrs(root_attrs),
                )
            )
            span_id += 2
        request.resource_spans.append(rs)
    # As the sidecar gets it: parsed from bytes.
    return ExportTraceServiceRequest.FromString(request.SerializeToString())


def _check(plugin: CostPlugin, batch: ExportTraceServiceRequest) -> Events:
    copy = ExportTraceServiceRequest()
    copy.CopyFrom(batch)
    events = Events()
    plugin.process(copy, events)
    for _, _, _, span in iter_spans(copy):
        keys = {kv.key for kv in span.attributes}
        assert ("cost.usd" in keys) != ("cost.unpriced_reason" in keys), span.name
    return events


class _Node:
    """The node a DaemonSet agent's sidecar watches (the watch itself is not measured)."""

    node_name = "ip-10-0-1-5.ec2.internal"
    version = 1
    stale_since = None

    def node(self) -> NodeFacts:
        return NodeFacts(
            name=self.node_name,
            provider="aws",
            instance_type="m5.xlarge",
            region="us-east-1",
            zone="us-east-1a",
            os="linux",
            arch="amd64",
            capacity="on_demand",
        )

    def pods(self) -> dict[str, PodFacts]:
        return {}

    def close(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed rounds (default 30)")
    parser.add_argument("--repeat", type=int, default=20, help="batches per round (default 20)")
    parser.add_argument(
        "--rules", action="store_true", help="also configure two rules on span attributes"
    )
    parser.add_argument(
        "--node-facts", action="store_true", help="price every resource as a watched node"
    )
    args = parser.parse_args()
    repeat: int = args.repeat
    rounds: int = args.rounds

    config: dict[str, Any] = {}
    if args.rules:
        config["rules"] = [
            {"name": "stripe", "match": {"server.address": "api.stripe.com"}, "per_unit_usd": 0.3},
            {"name": "onprem", "match": {"host.name": "rack-*"}, "per_hour_usd": 0.2},
        ]
    facts = NodeFactsSource(_Node(), []) if args.node_facts else None
    plugin = CostPlugin(config, node_facts=facts)
    batch = make_batch()
    spans = span_count(batch)
    events = _check(plugin, batch)
    print(
        f"batch: {spans} spans, {len(batch.resource_spans)} resources, {batch.ByteSize():,} bytes"
    )
    print("events:", ", ".join(f"{e.event}/{e.reason}={e.spans}" for e in events))

    data = batch.SerializeToString()

    def run(wire: bool, with_proto: bool) -> float:
        gc.disable()
        try:
            begin = time.perf_counter()
            for _ in range(repeat):
                changes = Changes(spans)
                if wire:
                    plugin.annotate_wire(data, batch, changes, Events())
                else:
                    plugin.annotate(batch, changes, Events())
                if with_proto:
                    changes.to_proto()
            return (time.perf_counter() - begin) / repeat / spans * 1e6
        finally:
            gc.enable()

    # annotate_wire is what the sidecar calls: it searches the bytes it received
    # instead of serializing every scope again.
    for label, wire, with_proto in (
        ("annotate", False, False),
        ("annotate_wire", True, False),
        ("annotate_wire + to_proto", True, True),
    ):
        run(wire, with_proto)  # warm-up: plans cached, as in steady state
        samples = [run(wire, with_proto) for _ in range(rounds)]
        print(
            f"{label:>26}: median {statistics.median(samples):.2f} µs/span, "
            f"best {min(samples):.2f} µs/span ({rounds} rounds of {repeat} batches)"
        )
    plugin.close()


if __name__ == "__main__":
    main()
