"""The gRPC boundary: `spancost.wire.v1.Sidecar` over `PluginInstances`.

`SidecarServicer` translates `spancost.errors` into status codes.

Status codes (the contract in sidecar.proto):

=====================  ==========================================================
Configure              INVALID_ARGUMENT  bad config (message ``config.<key>: ...``)
                       or empty instance/plugin;
                       NOT_FOUND  no such plugin installed;
                       FAILED_PRECONDITION  plugin installed but cannot be imported;
                       INTERNAL  the plugin's ``__init__`` raised something else
ProcessTraces          FAILED_PRECONDITION  unknown instance (re-Configure, retry);
                       INVALID_ARGUMENT  traces that do not parse;
                       INTERNAL  the plugin raised
TraceService.Export    UNAVAILABLE  the sink could not store the batch, or no sink
                       of that name is configured (yet): the exporter retries;
                       INVALID_ARGUMENT  no ``spancost-sink`` header while several
                       sinks are configured; INTERNAL  the sink raised
=====================  ==========================================================

TraceService (``opentelemetry.proto.collector.trace.v1``) is what the stock
``otlp_grpc`` exporter speaks: a pipeline feeds a sink by exporting to the
sidecar's endpoint with the header ``spancost-sink: <sink name>``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from spancost.errors import (
    ConfigError,
    InvalidRequestError,
    PluginFailedError,
    PluginLoadError,
    PluginNotFoundError,
    SinkUnavailableError,
    UnknownInstanceError,
    UnknownSinkError,
)
from spancost.plugin import Ownership
from spancost.sidecar.instances import PluginInstances, ProcessResult, SinkStats
from spancost.wire.v1 import sidecar_pb2, sidecar_pb2_grpc

__all__ = [
    "SERVICE_NAME",
    "SINK_HEADER",
    "TRACE_SERVICE_NAME",
    "SidecarServicer",
    "add_sidecar_servicer",
    "status_for",
]

logger = logging.getLogger(__name__)

SERVICE_NAME = sidecar_pb2.DESCRIPTOR.services_by_name["Sidecar"].full_name
TRACE_SERVICE_NAME = trace_service_pb2.DESCRIPTOR.services_by_name["TraceService"].full_name
SINK_HEADER = "spancost-sink"
"""The gRPC header (metadata key) naming the sink an export is for."""

ExportResponse = trace_service_pb2.ExportTraceServiceResponse

_EXPECTED: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (PluginNotFoundError, grpc.StatusCode.NOT_FOUND),
    (UnknownInstanceError, grpc.StatusCode.FAILED_PRECONDITION),
    (PluginLoadError, grpc.StatusCode.FAILED_PRECONDITION),
    (SinkUnavailableError, grpc.StatusCode.UNAVAILABLE),
)


def status_for(exc: Exception, method: str, instance: str) -> tuple[grpc.StatusCode, str]:
    """The status code and message for `exc`, logged once, here at the boundary."""
    for kind, code in _EXPECTED:
        if isinstance(exc, kind):
            logger.warning("%s %s: %s: %s", method, instance, code.name, exc)
            return code, str(exc)
    if isinstance(exc, PluginFailedError):
        logger.error("%s %s: %s", method, instance, exc, exc_info=exc.__cause__ or exc)
        return grpc.StatusCode.INTERNAL, str(exc)
    logger.error("%s %s: unexpected error", method, instance, exc_info=exc)
    return grpc.StatusCode.INTERNAL, f"unexpected error in the sidecar: {type(exc).__name__}: {exc}"


def _sink_name(context: grpc.ServicerContext) -> str:
    for key, value in context.invocation_metadata() or ():
        if key == SINK_HEADER:
            return value if isinstance(value, str) else value.decode()
    return ""


def _unknown_sink_status(exc: UnknownSinkError) -> tuple[grpc.StatusCode, str]:
    # A named sink missing is usually a sidecar that restarted and is not configured
    # again yet: retryable. No name with several sinks is the exporter's configuration.
    code = grpc.StatusCode.UNAVAILABLE if exc.sink else grpc.StatusCode.INVALID_ARGUMENT
    if exc.sink or len(exc.configured) != 1:
        logger.warning("Export %s: %s: %s", exc.sink or "-", code.name, exc)
    return code, str(exc)


def _export_status(exc: Exception, sink: str) -> tuple[grpc.StatusCode, str]:
    if isinstance(exc, UnknownSinkError):
        return _unknown_sink_status(exc)
    if isinstance(exc, SinkUnavailableError):
        # Expected while a database is down: the exporter's queue keeps the batch.
        logger.debug("Export %s: UNAVAILABLE: %s", sink, exc)
        return grpc.StatusCode.UNAVAILABLE, str(exc)
    return status_for(exc, "Export", sink)


def _stats_response(stats: list[SinkStats]) -> sidecar_pb2.StatsResponse:
    return sidecar_pb2.StatsResponse(
        sinks=[
            sidecar_pb2.SinkStats(
                sink=item.sink,
                counts=[
                    sidecar_pb2.PluginEvent(event=e.event, reason=e.reason, spans=e.spans)
                    for e in item.counts
                ],
                gauges=[
                    sidecar_pb2.Gauge(name=name, value=value)
                    for name, value in sorted(item.gauges.items())
                ],
                unavailable=item.unavailable,
            )
            for item in stats
        ]
    )


def _configure(
    instances: PluginInstances, request: sidecar_pb2.ConfigureRequest
) -> sidecar_pb2.ConfigureResponse:
    if request.kind == sidecar_pb2.KIND_SINK:
        version, warnings, needs_owner = instances.configure_sink(
            request.instance, request.plugin, request.config_json
        )
        return sidecar_pb2.ConfigureResponse(
            plugin_version=version, warnings=warnings, needs_owner=needs_owner
        )
    version = instances.configure(request.instance, request.plugin, request.config_json)
    response = sidecar_pb2.ConfigureResponse(plugin_version=version)
    ownership = instances.ownership(request.instance)
    if ownership is not None:
        _ownership_to_wire(ownership, response.ownership)
    return response


def _ownership_to_wire(ownership: Ownership, target: sidecar_pb2.Ownership) -> None:
    target.keys.extend(ownership.keys)
    for key, value in ownership.unprocessed.items():
        attribute = target.unprocessed.add(key=key)
        if isinstance(value, bool):  # first: bool is an int
            attribute.bool_value = value
        elif isinstance(value, int):
            attribute.int_value = value
        elif isinstance(value, float):
            attribute.double_value = value
        else:
            attribute.string_value = value
    event, reason = ownership.unprocessed_event
    if event:
        target.unprocessed_event.event = event
        target.unprocessed_event.reason = reason
    target.trusted_key = ownership.trusted_key


def _response(result: ProcessResult) -> sidecar_pb2.ProcessTracesResponse:
    events = [
        sidecar_pb2.PluginEvent(event=e.event, reason=e.reason, spans=e.spans)
        for e in result.events
    ]
    if result.changes is not None:
        return sidecar_pb2.ProcessTracesResponse(changes=result.changes, events=events)
    return sidecar_pb2.ProcessTracesResponse(traces=result.traces, events=events)


class SidecarServicer(sidecar_pb2_grpc.SidecarServicer):
    """The Sidecar service for `grpc.server` (one worker thread per call, one per
    open stream; at most `workers` streams process a batch at once, as the
    server's batch pool bounds unary calls)."""

    def __init__(self, instances: PluginInstances, workers: int = 4) -> None:
        self._instances = instances
        self._processing = threading.BoundedSemaphore(workers)

    def Configure(  # noqa: N802 - the gRPC method name
        self, request: sidecar_pb2.ConfigureRequest, context: grpc.ServicerContext
    ) -> sidecar_pb2.ConfigureResponse:
        try:
            return _configure(self._instances, request)
        except Exception as exc:
            context.abort(*status_for(exc, "Configure", request.instance))

    def Stats(  # noqa: N802 - the gRPC method name
        self, request: sidecar_pb2.StatsRequest, context: grpc.ServicerContext
    ) -> sidecar_pb2.StatsResponse:
        return _stats_response(self._instances.stats())

    def Export(  # noqa: N802 - the gRPC method name (TraceService)
        self, request: bytes, context: grpc.ServicerContext
    ) -> ExportResponse:
        sink = _sink_name(context)
        try:
            self._instances.export(sink, request)
        except Exception as exc:
            context.abort(*_export_status(exc, sink))
        return ExportResponse()

    def ProcessTraces(  # noqa: N802 - the gRPC method name
        self, request: sidecar_pb2.ProcessTracesRequest, context: grpc.ServicerContext
    ) -> sidecar_pb2.ProcessTracesResponse:
        try:
            result = self._instances.process(request.instance, request.traces)
        except Exception as exc:
            context.abort(*status_for(exc, "ProcessTraces", request.instance))
        return _response(result)

    def ProcessTracesStream(  # noqa: N802 - the gRPC method name
        self,
        requests: Iterator[sidecar_pb2.ProcessTracesRequest],
        context: grpc.ServicerContext,
    ) -> Iterator[sidecar_pb2.ProcessTracesResponse]:
        for request in requests:
            try:
                with self._processing:
                    result = self._instances.process(request.instance, request.traces)
            except Exception as exc:
                context.abort(*status_for(exc, "ProcessTraces", request.instance))
            yield _response(result)


def add_sidecar_servicer(
    servicer: SidecarServicer,
    server: grpc.Server,
    batch_pool: ThreadPoolExecutor | None = None,
    sink_pool: ThreadPoolExecutor | None = None,
    stream_pool: ThreadPoolExecutor | None = None,
) -> None:
    """Register `servicer` (the Sidecar and TraceService services) with `server`.

    With `batch_pool` (thread-pool server only), ProcessTraces runs on that
    pool while Configure and the health service keep the server's own pool,
    so a backlog of batches never delays a health check past its deadline;
    likewise Export on `sink_pool`, so a slow database never delays a batch
    on the collector's hot path; and each ProcessTracesStream, for as long as
    it is open, on a thread of `stream_pool`.
    """
    process_traces: Any = _on_pool(servicer.ProcessTraces, batch_pool)
    process_stream: Any = _on_pool(servicer.ProcessTracesStream, stream_pool)
    export: Any = _on_pool(servicer.Export, sink_pool)
    handlers = {
        "Configure": grpc.unary_unary_rpc_method_handler(
            servicer.Configure,
            request_deserializer=sidecar_pb2.ConfigureRequest.FromString,
            response_serializer=sidecar_pb2.ConfigureResponse.SerializeToString,
        ),
        "ProcessTraces": grpc.unary_unary_rpc_method_handler(
            process_traces,
            request_deserializer=sidecar_pb2.ProcessTracesRequest.FromString,
            response_serializer=sidecar_pb2.ProcessTracesResponse.SerializeToString,
        ),
        "ProcessTracesStream": grpc.stream_stream_rpc_method_handler(
            process_stream,
            request_deserializer=sidecar_pb2.ProcessTracesRequest.FromString,
            response_serializer=sidecar_pb2.ProcessTracesResponse.SerializeToString,
        ),
        "Stats": grpc.unary_unary_rpc_method_handler(
            servicer.Stats,
            request_deserializer=sidecar_pb2.StatsRequest.FromString,
            response_serializer=sidecar_pb2.StatsResponse.SerializeToString,
        ),
    }
    trace_handlers = {
        # The request stays bytes: the sink parses it (in the sinks' process).
        "Export": grpc.unary_unary_rpc_method_handler(
            export,
            request_deserializer=None,
            response_serializer=ExportResponse.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),
            grpc.method_handlers_generic_handler(TRACE_SERVICE_NAME, trace_handlers),
        )
    )


def _on_pool(method: Any, pool: ThreadPoolExecutor | None) -> Any:
    """`method` as a handler that `grpc.server` runs on `pool` (None: the server's own)."""
    if pool is None:
        return method

    def handler(request: Any, context: grpc.ServicerContext) -> Any:
        return method(request, context)

    # grpc.server runs a handler on the pool its behavior names this way.
    setattr(handler, "experimental_thread_pool", pool)  # noqa: B010
    return handler
