"""The sidecar's sinks, in a process of their own.

A sink parses every batch the pipeline exports and writes it to a database: CPU
and waiting that must never delay the answer to a ``ProcessTraces`` call, which
holds up the collector's pipeline. In the sidecar's process the two would share
one interpreter lock, and a sink draining a backlog added tens of milliseconds to
the processor's p99 (BENCHMARKS.md, "The Python hop with the shipped chain"). So
`SinkHost` runs the sinks in a child process (``python -m
spancost.sidecar.sinkhost``) and forwards to it what the gRPC servicer asks of
sinks: Configure of a sink, TraceService.Export (the request's bytes, parsed only
in the child), Stats.

The two processes talk over a socket pair: each message is one pickled tuple,
``(call, op, args)`` one way and ``(call, ok, result_or_error)`` back, so calls
from several threads run concurrently in the child (on as many threads as the
sidecar gives sinks). Errors are spancost's own (`spancost.errors`), re-raised in
the sidecar as they were raised in the child.

Faults: if the child exits (a crash, an OOM kill), the calls in flight fail with
`SinkUnavailableError` (the exporter keeps the batch and retries) and the next
call starts a new child and configures every sink in it again, as a restarted
sidecar is configured again by the collector. If the sidecar dies, the child
reads the end of the socket and exits once the exports it is running finished
(their batches were not acknowledged, so they come again and the sink absorbs the
replay, as it must). The child ignores SIGINT: the sidecar stops it in order.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from spancost.errors import SinkUnavailableError, SpancostError
from spancost.log import configure_logging
from spancost.plugin import Event
from spancost.sidecar.instances import PluginInstances, SinkStats

__all__ = ["SINK_NICENESS", "SinkHost", "main"]

logger = logging.getLogger(__name__)

SINK_NICENESS = 5
"""Added to the child's nice value: when the two compete for a core, the
processor's batches (which hold up the pipeline) go first; an exporter's queue
waits for the sink instead. Measured in BENCHMARKS.md."""

CLOSE_TIMEOUT_S = 30.0
"""How long `SinkHost.close` waits for the child to close its sinks."""


class SinkHost:
    """The sinks' side of `PluginInstances`, served by a child process (started on
    the first sink configured). Safe for concurrent use."""

    def __init__(self, log_level: str = "info", threads: int = 4) -> None:
        self._log_level = log_level
        self._threads = threads
        self._lock = threading.Lock()  # the child and the configured sinks
        self._child: _Child | None = None
        self._configured: dict[str, tuple[str, str]] = {}  # sink -> (plugin, config JSON)
        self._closed = False

    @property
    def pid(self) -> int | None:
        """The child's process ID while one runs (logs, tests)."""
        with self._lock:
            child = self._child
        return child.pid if child is not None and child.alive else None

    # -- what PluginInstances forwards ------------------------------------------------

    def configure_sink(
        self, sink: str, plugin_name: str, config_json: str
    ) -> tuple[str, list[str], tuple[str, ...]]:
        """As `PluginInstances.configure_sink`, in the child."""
        child = self._running()
        answer = child.call("configure_sink", sink, plugin_name, config_json)
        version, warnings, needs_owner = answer
        with self._lock:
            self._configured[sink] = (plugin_name, config_json)
        return version, list(warnings), tuple(needs_owner)

    def export(self, sink: str, data: bytes) -> list[Event]:
        """As `PluginInstances.export` (the request's bytes), in the child."""
        events: list[Event] = self._running().call("export", sink, data)
        return events

    def stats(self) -> list[SinkStats]:
        """Every sink's running totals; none before a sink was configured."""
        with self._lock:
            child = self._child
        if child is None or not child.alive:
            return []
        try:
            stats: list[SinkStats] = child.call("stats")
        except SinkUnavailableError:
            return []
        return stats

    def close(self) -> None:
        """Close every sink (once its exports finished), then stop the child."""
        with self._lock:
            self._closed = True
            child, self._child = self._child, None
        if child is not None:
            child.close(CLOSE_TIMEOUT_S)

    # -- the child ---------------------------------------------------------------------

    def _running(self) -> _Child:
        """The child, started (and its sinks configured again) if it is not running."""
        with self._lock:
            if self._closed:
                raise SinkUnavailableError("the sidecar is stopping")
            child = self._child
            if child is not None and child.alive:
                return child
            if child is not None:
                logger.warning(
                    "the sinks' process exited (%s); starting it again", child.exit_status()
                )
            child = _Child.start(self._log_level, self._threads)
            try:
                for sink, (plugin_name, config_json) in self._configured.items():
                    child.call("configure_sink", sink, plugin_name, config_json)
            except Exception:
                child.close(CLOSE_TIMEOUT_S)
                raise
            self._child = child
            return child


class _Child:
    """One child process and the calls waiting for its answers."""

    def __init__(self, proc: subprocess.Popen[bytes], conn: Connection) -> None:
        self._proc = proc
        self._conn = conn
        self._send_lock = threading.Lock()
        self._lock = threading.Lock()
        self._pending: dict[int, Future[Any]] = {}
        self._next_call = 0
        self._gone: str | None = None  # why calls can no longer be answered
        self._reader = threading.Thread(target=self._read, name="spancost-sinks", daemon=True)
        self._reader.start()

    @classmethod
    def start(cls, log_level: str, threads: int) -> _Child:
        ours, theirs = socket.socketpair()
        try:
            proc = subprocess.Popen(  # noqa: S603 - this interpreter, this package
                [
                    sys.executable,
                    "-m",
                    "spancost.sidecar.sinkhost",
                    str(theirs.fileno()),
                    log_level,
                    str(threads),
                ],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        finally:
            theirs.close()
        logger.info("sinks run in their own process (pid %d)", proc.pid)
        return cls(proc, Connection(ours.detach()))

    @property
    def pid(self) -> int:
        return self._proc.pid

    @property
    def alive(self) -> bool:
        return self._gone is None and self._proc.poll() is None

    def exit_status(self) -> str:
        code = self._proc.poll()
        if code is None:
            return "its connection closed"
        if code < 0:
            return f"signal {signal.Signals(-code).name}"
        return f"exit code {code}"

    def call(self, op: str, *args: Any) -> Any:
        future: Future[Any] = Future()
        with self._lock:
            if self._gone is not None:
                raise SinkUnavailableError(self._gone)
            call = self._next_call
            self._next_call += 1
            self._pending[call] = future
        try:
            with self._send_lock:
                self._conn.send((call, op, args))
        except OSError as exc:
            with self._lock:
                self._pending.pop(call, None)
            raise SinkUnavailableError(f"the sinks' process cannot be reached: {exc}") from exc
        return future.result()

    def _read(self) -> None:
        while True:
            try:
                call, ok, value = self._conn.recv()
            except (EOFError, OSError):
                break
            with self._lock:
                future = self._pending.pop(call, None)
            if future is None:
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        self._proc.wait()
        with self._lock:
            self._gone = f"the sinks' process exited ({self.exit_status()}); retry"
            pending, self._pending = self._pending, {}
        for future in pending.values():
            future.set_exception(SinkUnavailableError(self._gone))

    def close(self, timeout: float) -> None:
        with contextlib.suppress(SpancostError):  # it is gone already
            self.call("close")
        try:
            self._proc.wait(timeout)
        except subprocess.TimeoutExpired:
            logger.warning("the sinks' process did not stop in %.0f s; killing it", timeout)
            self._proc.kill()
            self._proc.wait()
        self._conn.close()


# -- in the child ------------------------------------------------------------------------


def serve(conn: Connection, instances: PluginInstances, threads: int) -> None:
    """Answer the sidecar's calls until it says close or goes away."""
    send_lock = threading.Lock()

    def answer(call: int, op: Callable[..., Any], args: tuple[Any, ...]) -> None:
        try:
            reply = (call, True, op(*args))
        except SpancostError as exc:
            reply = (call, False, _portable(exc))
        except Exception as exc:  # never expected: PluginInstances wraps what plugins raise
            logger.exception("sink call failed")
            reply = (call, False, SinkUnavailableError(f"{type(exc).__name__}: {exc}"))
        with send_lock, contextlib.suppress(OSError):  # the sidecar is gone: no one to answer
            conn.send(reply)

    ops: dict[str, Callable[..., Any]] = {
        "configure_sink": instances.configure_sink,
        "export": instances.export,
        "stats": instances.stats,
    }
    with ThreadPoolExecutor(threads, thread_name_prefix="spancost-sink") as pool:
        while True:
            try:
                call, op, args = conn.recv()
            except (EOFError, OSError):
                logger.info("the sidecar went away; closing the sinks")
                break
            if op == "close":
                pool.shutdown(wait=True)
                instances.close()
                answer(call, lambda: None, ())
                return
            pool.submit(answer, call, ops[op], args)
    instances.close()


def _portable(exc: SpancostError) -> SpancostError:
    """`exc` as it can cross to the sidecar: pickled, without its cause (logged here)."""
    if exc.__cause__ is not None:
        logger.error("%s", exc, exc_info=exc.__cause__)
    exc.__cause__ = None
    exc.__context__ = None
    exc.__traceback__ = None
    return exc


def main(argv: list[str] | None = None) -> None:
    """``python -m spancost.sidecar.sinkhost FD LOG_LEVEL THREADS`` (started by `SinkHost`)."""
    fd, log_level, threads = (argv or sys.argv[1:])[:3]
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(log_level)
    try:
        os.nice(SINK_NICENESS)
    except OSError as exc:
        logger.warning("cannot lower the sinks' priority: %s", exc)
    serve(Connection(int(fd)), PluginInstances(), int(threads))


if __name__ == "__main__":
    main()
