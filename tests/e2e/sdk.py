"""Sends spans the way applications do: the OpenTelemetry Python SDK over OTLP."""

from __future__ import annotations

from typing import Any

from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpExporter,
)
from opentelemetry.proto.trace.v1 import trace_pb2
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Link, SpanKind

from tests.e2e.harness import attrs


class Sender:
    """A TracerProvider exporting to the collector and keeping a copy in memory."""

    def __init__(
        self,
        endpoint: str,
        *,
        protocol: str = "grpc",
        resource: dict[str, Any] | None = None,
        batch: bool = True,
        timeout: float = 10.0,
    ) -> None:
        exporter: Any
        if protocol == "grpc":
            exporter = GrpcExporter(endpoint=endpoint, insecure=True, timeout=timeout)
        else:
            exporter = HttpExporter(endpoint=f"http://{endpoint}/v1/traces", timeout=timeout)
        self.memory = InMemorySpanExporter()
        self.provider = TracerProvider(
            resource=Resource.create(resource or {"service.name": "checkout"})
        )
        processor = (
            BatchSpanProcessor(exporter, max_export_batch_size=512, schedule_delay_millis=50)
            if batch
            else SimpleSpanProcessor(exporter)
        )
        self.provider.add_span_processor(processor)
        self.provider.add_span_processor(SimpleSpanProcessor(self.memory))
        self.tracer = self.provider.get_tracer("spancost.e2e", "1.2.3")

    def trace(self, name: str = "checkout", children: int = 2) -> None:
        """One trace: a SERVER root with INTERNAL children, an event, a link and attributes."""
        with self.tracer.start_as_current_span(
            name, kind=SpanKind.SERVER, attributes={"http.route": "/checkout"}
        ) as root:
            root.add_event("cart.loaded", {"items": 3})
            link = Link(root.get_span_context(), {"link.kind": "follows"})
            for i in range(children):
                with self.tracer.start_as_current_span(
                    f"step-{i}", links=[link], attributes={"step": i}
                ):
                    pass

    def flush(self) -> None:
        assert self.provider.force_flush(30_000), "the SDK could not flush its spans"

    def shutdown(self) -> None:
        self.provider.shutdown()

    def sent(self) -> tuple[ReadableSpan, ...]:
        return self.memory.get_finished_spans()


def assert_same_span(
    sent: ReadableSpan,
    rs: trace_pb2.ResourceSpans,
    ss: trace_pb2.ScopeSpans,
    got: trace_pb2.Span,
    *,
    added: set[str] = frozenset(),
) -> None:  # type: ignore[assignment]
    """What came out is what went in, apart from the attribute keys in `added`."""
    ctx = sent.get_span_context()
    assert ctx is not None
    assert got.trace_id == ctx.trace_id.to_bytes(16, "big")
    assert got.span_id == ctx.span_id.to_bytes(8, "big")
    parent = sent.parent.span_id.to_bytes(8, "big") if sent.parent else b""
    assert got.parent_span_id == parent
    assert got.name == sent.name
    assert got.start_time_unix_nano == sent.start_time
    assert got.end_time_unix_nano == sent.end_time
    got_attrs = {k: v for k, v in attrs(got.attributes).items() if k not in added}
    assert got_attrs == dict(sent.attributes or {})
    assert [(e.name, attrs(e.attributes)) for e in got.events] == [
        (e.name, dict(e.attributes or {})) for e in sent.events
    ]
    assert [(link.trace_id, link.span_id, attrs(link.attributes)) for link in got.links] == [
        (
            link.context.trace_id.to_bytes(16, "big"),
            link.context.span_id.to_bytes(8, "big"),
            dict(link.attributes or {}),
        )
        for link in sent.links
    ]
    assert attrs(rs.resource.attributes) == dict(sent.resource.attributes)
    assert ss.scope.name == sent.instrumentation_scope.name
    assert ss.scope.version == sent.instrumentation_scope.version
