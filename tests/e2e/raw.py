"""A plain OTLP/gRPC client for tests that need to control batches exactly."""

from __future__ import annotations

import itertools
import time

import grpc
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

_ids = itertools.count(1)


def batch(
    spans: int, *, environment: str = "prod", attr_bytes: int = 0
) -> trace_service_pb2.ExportTraceServiceRequest:
    """One resource with `spans` root spans, each with a unique span id."""
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, value in (
        ("service.name", "checkout"),
        ("deployment.environment.name", environment),
    ):
        rs.resource.attributes.add(key=key, value=common_pb2.AnyValue(string_value=value))
    ss = rs.scope_spans.add()
    ss.scope.name = "spancost.e2e.raw"
    now = time.time_ns()
    for _ in range(spans):
        n = next(_ids)
        span = ss.spans.add(
            trace_id=n.to_bytes(16, "big"),
            span_id=n.to_bytes(8, "big"),
            name="GET /checkout",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=now - 5_000_000,
            end_time_unix_nano=now,
        )
        if attr_bytes:
            span.attributes.add(
                key="payload", value=common_pb2.AnyValue(string_value="x" * attr_bytes)
            )
    return req


def span_ids(req: trace_service_pb2.ExportTraceServiceRequest) -> list[bytes]:
    return [s.span_id for rs in req.resource_spans for ss in rs.scope_spans for s in ss.spans]


class RawClient:
    def __init__(self, endpoint: str) -> None:
        self.channel = grpc.insecure_channel(
            endpoint, options=[("grpc.max_send_message_length", 256 << 20)]
        )
        self.stub = trace_service_pb2_grpc.TraceServiceStub(self.channel)

    def export(
        self, req: trace_service_pb2.ExportTraceServiceRequest, timeout: float = 30.0
    ) -> None:
        self.stub.Export(req, timeout=timeout)

    def close(self) -> None:
        self.channel.close()
