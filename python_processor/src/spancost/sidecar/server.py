"""Runs the sidecar's gRPC server until a signal stops it.

`grpc.server` on thread pools: each unary batch runs on one of `workers` threads,
each open batch stream on a thread of its own (at most `workers` batches processed
at once either way); health checks and Configure have two threads of their own,
sink exports four. It serves `spancost.wire.v1.Sidecar`, the OTLP TraceService
(for sinks) and `grpc.health.v1.Health` (``""`` and ``spancost.wire.v1.Sidecar``
are SERVING while up, NOT_SERVING once stopping), and stops in order:
NOT_SERVING, refuse new calls, let in-flight calls finish within the grace
period, then close every plugin instance.

There is one concurrency model. An asyncio server (`grpc.aio`) was the other
until issue 16: it had no user and measured no better (bench/README.md).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from spancost.errors import ServerStartError
from spancost.sidecar.address import (
    ListenAddress,
    SocketId,
    prepare_unix_socket,
    private_umask,
    remove_socket,
    restrict_socket,
)
from spancost.sidecar.instances import PluginInstances
from spancost.sidecar.servicer import (
    SERVICE_NAME,
    SidecarServicer,
    add_sidecar_servicer,
)

__all__ = [
    "DEFAULT_GRACE_PERIOD",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DEFAULT_WORKERS",
    "SINK_THREADS",
    "ServerOptions",
    "SidecarServer",
    "serve_until_signalled",
]

logger = logging.getLogger(__name__)

# Batches are CPU-bound Python work under the GIL: more threads than usable
# cores only add contention (on 2 cores, 2 workers sustained ~5% more spans/s
# than 4 in `make bench`'s pipeline), and more than 4 never helped.
DEFAULT_WORKERS = max(1, min(4, len(os.sched_getaffinity(0))))
DEFAULT_GRACE_PERIOD = 10.0
DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
HEALTH_SERVICES = ("", SERVICE_NAME)
# Threads of the thread-pool server that answer health checks and Configure.
CONTROL_THREADS = 2
# Threads that run sink exports (TraceService.Export): mostly waiting on a database.
SINK_THREADS = 4
# Threads that serve ProcessTracesStream: one per open stream, for its whole life
# (mostly waiting for the next batch). The collector's python extension opens at
# most 4 (pythonextension's maxStreams); a stream beyond the pool would wait for a
# thread, and its batches time out.
STREAM_THREADS = 8


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """How the sidecar serves (the `spancost sidecar` flags)."""

    listen: ListenAddress
    workers: int = DEFAULT_WORKERS
    grace_period: float = DEFAULT_GRACE_PERIOD
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES

    def grpc_options(self) -> list[tuple[str, Any]]:
        """Channel arguments of the server."""
        return [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            # Without this, a second sidecar could bind the same TCP port and
            # silently take half the calls.
            ("grpc.so_reuseport", 0),
        ]


def _bound(address: ListenAddress, port: int) -> ListenAddress:
    # add_insecure_port returns 0 (older gRPC) or raises (newer) when it cannot bind.
    if port == 0:
        raise ServerStartError(f"cannot listen on {address}: the address is in use or invalid")
    if address.unix_path is None and address.port == 0:
        return address.with_port(port)
    return address


class SidecarServer:
    """The sidecar's `grpc.server`, started once and stopped once: batches on
    `options.workers` threads, the rest on pools of their own (module docstring)."""

    def __init__(self, options: ServerOptions, instances: PluginInstances) -> None:
        self._options = options
        self._instances = instances
        self.address = options.listen
        # Batches run on their own pool; health checks and Configure on the server's.
        self._batch_pool = ThreadPoolExecutor(options.workers, thread_name_prefix="spancost-batch")
        self._control_pool = ThreadPoolExecutor(CONTROL_THREADS, thread_name_prefix="spancost-rpc")
        self._sink_pool = ThreadPoolExecutor(SINK_THREADS, thread_name_prefix="spancost-sink")
        self._stream_pool = ThreadPoolExecutor(STREAM_THREADS, thread_name_prefix="spancost-stream")
        self._server = grpc.server(self._control_pool, options=options.grpc_options())
        self._health = health.HealthServicer()
        add_sidecar_servicer(
            SidecarServicer(instances, options.workers),
            self._server,
            self._batch_pool,
            self._sink_pool,
            self._stream_pool,
        )
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self._server)
        self._started = False
        self._stopped = False
        self._socket_id: SocketId | None = None

    def start(self) -> None:
        address = self._options.listen
        if address.unix_path is not None:
            prepare_unix_socket(address.unix_path)
        with private_umask(address):
            try:
                port = self._server.add_insecure_port(address.grpc_target)
            except RuntimeError as exc:
                raise ServerStartError(f"cannot listen on {address}: {exc}") from exc
            self.address = _bound(address, port)
            self._server.start()
        self._started = True
        self._socket_id = restrict_socket(address)
        for service in HEALTH_SERVICES:
            self._health.set(service, health_pb2.HealthCheckResponse.SERVING)

    def stop(self, grace: float) -> None:
        if self._stopped:
            return
        self._stopped = True
        self._health.enter_graceful_shutdown()
        if self._started:
            self._server.stop(grace).wait()
        # Before closing the plugins and sinks (which may take a while): the path is
        # free for a successor as soon as nobody listens on it.
        remove_socket(self._options.listen, self._socket_id)
        self._batch_pool.shutdown(wait=False)
        self._control_pool.shutdown(wait=False)
        self._sink_pool.shutdown(wait=False)
        self._stream_pool.shutdown(wait=False)
        self._instances.close()


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def serve_until_signalled(server: SidecarServer, grace: float) -> None:
    """Start `server`, serve until SIGTERM or SIGINT, then stop it gracefully.

    Must run on the main thread (Python only delivers signals there).
    """
    received: list[int] = []

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        # No lock here (not even threading.Event.set): the handler runs on the main
        # thread between two bytecodes, possibly while that thread holds the very
        # lock, which deadlocked a sidecar told to stop (seen after SIGSTOP/SIGCONT).
        received.append(signum)

    previous = {sig: signal.signal(sig, on_signal) for sig in STOP_SIGNALS}
    try:
        server.start()
        logger.info("sidecar serving on %s", server.address)
        # sleep is interrupted by a signal (its handler runs), then the flag is seen.
        while not received:
            time.sleep(0.2)
        logger.info(
            "%s received: refusing new calls, finishing in-flight batches (grace period %.1fs)",
            signal.Signals(received[0]).name,
            grace,
        )
    finally:
        server.stop(grace)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    logger.info("sidecar stopped")
