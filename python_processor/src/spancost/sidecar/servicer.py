"""The gRPC boundary: `spancost.wire.v1.Sidecar` over `PluginInstances`.

Two servicers share one translation from `spancost.errors` to status codes:
`SidecarServicer` for the thread-pool server and `AsyncSidecarServicer` for
the asyncio one (which runs the CPU-bound work on a thread pool).

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
=====================  ==========================================================
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor, ThreadPoolExecutor
from typing import Any

import grpc
import grpc.aio

from spancost.errors import (
    ConfigError,
    InvalidRequestError,
    PluginFailedError,
    PluginLoadError,
    PluginNotFoundError,
    UnknownInstanceError,
)
from spancost.sidecar.instances import PluginInstances, ProcessResult
from spancost.wire.v1 import sidecar_pb2, sidecar_pb2_grpc

__all__ = [
    "SERVICE_NAME",
    "AsyncSidecarServicer",
    "SidecarServicer",
    "add_sidecar_servicer",
    "status_for",
]

logger = logging.getLogger(__name__)

SERVICE_NAME = sidecar_pb2.DESCRIPTOR.services_by_name["Sidecar"].full_name

_EXPECTED: tuple[tuple[type[Exception], grpc.StatusCode], ...] = (
    (ConfigError, grpc.StatusCode.INVALID_ARGUMENT),
    (InvalidRequestError, grpc.StatusCode.INVALID_ARGUMENT),
    (PluginNotFoundError, grpc.StatusCode.NOT_FOUND),
    (UnknownInstanceError, grpc.StatusCode.FAILED_PRECONDITION),
    (PluginLoadError, grpc.StatusCode.FAILED_PRECONDITION),
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


def _response(result: ProcessResult) -> sidecar_pb2.ProcessTracesResponse:
    events = [
        sidecar_pb2.PluginEvent(event=e.event, reason=e.reason, spans=e.spans)
        for e in result.events
    ]
    if result.changes is not None:
        return sidecar_pb2.ProcessTracesResponse(changes=result.changes, events=events)
    return sidecar_pb2.ProcessTracesResponse(traces=result.traces, events=events)


class SidecarServicer(sidecar_pb2_grpc.SidecarServicer):
    """The Sidecar service for `grpc.server` (one worker thread per call)."""

    def __init__(self, instances: PluginInstances) -> None:
        self._instances = instances

    def Configure(  # noqa: N802 - the gRPC method name
        self, request: sidecar_pb2.ConfigureRequest, context: grpc.ServicerContext
    ) -> sidecar_pb2.ConfigureResponse:
        try:
            version = self._instances.configure(
                request.instance, request.plugin, request.config_json
            )
        except Exception as exc:
            context.abort(*status_for(exc, "Configure", request.instance))
        return sidecar_pb2.ConfigureResponse(plugin_version=version)

    def ProcessTraces(  # noqa: N802 - the gRPC method name
        self, request: sidecar_pb2.ProcessTracesRequest, context: grpc.ServicerContext
    ) -> sidecar_pb2.ProcessTracesResponse:
        try:
            result = self._instances.process(request.instance, request.traces)
        except Exception as exc:
            context.abort(*status_for(exc, "ProcessTraces", request.instance))
        return _response(result)


class AsyncSidecarServicer(sidecar_pb2_grpc.SidecarServicer):
    """The Sidecar service for `grpc.aio.server`.

    Batches run on `batch_pool`, Configure (plugin start-up may be slow) on
    `control_pool`, so neither blocks the event loop that answers health checks.
    """

    def __init__(
        self, instances: PluginInstances, batch_pool: Executor, control_pool: Executor
    ) -> None:
        self._instances = instances
        self._batch_pool = batch_pool
        self._control_pool = control_pool

    async def Configure(  # noqa: N802 - the gRPC method name
        self,
        request: sidecar_pb2.ConfigureRequest,
        context: grpc.aio.ServicerContext[
            sidecar_pb2.ConfigureRequest, sidecar_pb2.ConfigureResponse
        ],
    ) -> sidecar_pb2.ConfigureResponse:
        loop = asyncio.get_running_loop()
        try:
            version = await loop.run_in_executor(
                self._control_pool,
                self._instances.configure,
                request.instance,
                request.plugin,
                request.config_json,
            )
        except Exception as exc:
            await context.abort(*status_for(exc, "Configure", request.instance))
        return sidecar_pb2.ConfigureResponse(plugin_version=version)

    async def ProcessTraces(  # noqa: N802 - the gRPC method name
        self,
        request: sidecar_pb2.ProcessTracesRequest,
        context: grpc.aio.ServicerContext[
            sidecar_pb2.ProcessTracesRequest, sidecar_pb2.ProcessTracesResponse
        ],
    ) -> sidecar_pb2.ProcessTracesResponse:
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(
                self._batch_pool, self._instances.process, request.instance, request.traces
            )
        except Exception as exc:
            await context.abort(*status_for(exc, "ProcessTraces", request.instance))
        return _response(result)


def add_sidecar_servicer(
    servicer: SidecarServicer | AsyncSidecarServicer,
    server: grpc.Server | grpc.aio.Server,
    batch_pool: ThreadPoolExecutor | None = None,
) -> None:
    """Register `servicer` with `server`.

    With `batch_pool` (thread-pool server only), ProcessTraces runs on that
    pool while Configure and the health service keep the server's own pool,
    so a backlog of batches never delays a health check past its deadline.
    """
    process_traces: Any = servicer.ProcessTraces
    if batch_pool is not None:
        bound = process_traces

        def process_traces(
            request: sidecar_pb2.ProcessTracesRequest, context: grpc.ServicerContext
        ) -> sidecar_pb2.ProcessTracesResponse:
            response: sidecar_pb2.ProcessTracesResponse = bound(request, context)
            return response

        # grpc.server runs a handler on the pool its behavior names this way.
        setattr(process_traces, "experimental_thread_pool", batch_pool)  # noqa: B010
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
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
