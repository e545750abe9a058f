"""Builds OTLP batches for tests, by hand, so every field is under control."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

Value = str | bool | int | float | bytes | list[object] | AnyValue | None

_ids = itertools.count(1)


def any_value(value: Value) -> AnyValue:
    """An AnyValue holding `value` (None: no value set)."""
    if isinstance(value, AnyValue):
        return value
    result = AnyValue()
    if value is None:
        pass
    elif isinstance(value, bool):
        result.bool_value = value
    elif isinstance(value, int):
        result.int_value = value
    elif isinstance(value, float):
        result.double_value = value
    elif isinstance(value, bytes):
        result.bytes_value = value
    elif isinstance(value, list):
        result.array_value.CopyFrom(
            ArrayValue(values=[any_value(v) for v in value])  # type: ignore[arg-type]
        )
    else:
        result.string_value = value
    return result


def attributes(values: Mapping[str, Value] | None) -> list[KeyValue]:
    return [KeyValue(key=k, value=any_value(v)) for k, v in (values or {}).items()]


def span(name: str = "op", attrs: Mapping[str, Value] | None = None) -> Span:
    """A span with fresh, unique trace and span ids."""
    n = next(_ids)
    return Span(
        trace_id=n.to_bytes(16, "big"),
        span_id=n.to_bytes(8, "big"),
        name=name,
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_700_000_000_000_000_000 + n,
        end_time_unix_nano=1_700_000_000_000_000_000 + n + 1000,
        attributes=attributes(attrs),
    )


def resource_spans(resource: Mapping[str, Value] | None, *scopes: Sequence[Span]) -> ResourceSpans:
    result = ResourceSpans()
    result.resource.attributes.extend(attributes(resource))
    for index, spans in enumerate(scopes):
        scope = ScopeSpans()
        scope.scope.name = f"scope{index}"
        scope.spans.extend(spans)
        result.scope_spans.append(scope)
    return result


def batch(*items: ResourceSpans) -> ExportTraceServiceRequest:
    return ExportTraceServiceRequest(resource_spans=list(items))


def all_spans(request: ExportTraceServiceRequest) -> Iterable[Span]:
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            yield from ss.spans


def span_names(request: ExportTraceServiceRequest) -> list[str]:
    return [s.name for s in all_spans(request)]


def count_spans(request: ExportTraceServiceRequest) -> int:
    return sum(1 for _ in all_spans(request))


def attribute_map(values: Iterable[KeyValue]) -> dict[str, object]:
    """Attribute key → Python value (first occurrence), for assertions."""
    result: dict[str, object] = {}
    for kv in values:
        which = kv.value.WhichOneof("value")
        if kv.key not in result:
            result[kv.key] = getattr(kv.value, which) if which else None
    return result
