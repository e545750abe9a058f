"""`SinkHost`: the sidecar's sinks in a child process of their own, with the real
``spancost.totals`` sink on SQLite: the same answers and errors as in-process, and
the faults (the child killed, the sidecar killed, a stop)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spancost.errors import ConfigError, InvalidRequestError, SinkUnavailableError, UnknownSinkError
from spancost.sidecar.instances import PluginInstances
from spancost.sidecar.sinkhost import SINK_NICENESS, SinkHost
from tests.builders import attributes, batch, resource_spans


def priced_request(trace: int, spans: int = 3, usd: float = 0.25) -> bytes:
    now = time.time_ns()
    items = [
        Span(
            trace_id=trace.to_bytes(16, "big"),
            span_id=(trace * 100 + n + 1).to_bytes(8, "big"),
            parent_span_id=b"" if n == 0 else (trace * 100 + 1).to_bytes(8, "big"),
            name="GET /checkout",
            start_time_unix_nano=now - 2_000_000,
            end_time_unix_nano=now - 1_000_000,
            attributes=attributes({"cost.usd": usd}),
        )
        for n in range(spans)
    ]
    return batch(resource_spans({"service.name": "shop"}, items)).SerializeToString()


def stored_traces(path: Path) -> dict[str, tuple[float, int]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT trace_id, cost_usd, span_count FROM traces")
        return {trace: (cost, spans) for trace, cost, spans in rows}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "totals.db"


@pytest.fixture
def host(db: Path) -> Iterator[SinkHost]:
    host = SinkHost("warning", threads=2)
    host.configure_sink("totals", "spancost.totals", json.dumps({"database_url": f"sqlite:{db}"}))
    yield host
    host.close()


def wait_gone(pid: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.05)
    raise AssertionError(f"process {pid} still runs after {timeout} s")


def test_sinks_run_in_a_child_process_that_stores_and_counts(host: SinkHost, db: Path) -> None:
    assert host.pid is not None and host.pid != os.getpid()
    events = host.export("totals", priced_request(7))
    assert [(e.event, e.spans) for e in events] == [("stored", 3)]
    assert stored_traces(db) == {f"{7:032x}": (0.75, 3)}
    (stats,) = host.stats()
    assert stats.sink == "totals"
    assert [(e.event, e.spans) for e in stats.counts] == [("stored", 3)]
    # A replay (the exporter retried) is absorbed, and counted as such.
    again = host.export("totals", priced_request(7))
    assert [(e.event, e.spans) for e in again] == [("duplicate", 3)]
    assert stored_traces(db) == {f"{7:032x}": (0.75, 3)}


def test_errors_cross_as_in_process(host: SinkHost, db: Path) -> None:
    local = PluginInstances()
    bad = {"database_url": f"sqlite:{db}", "transaction": {"attribute": 7}}
    with pytest.raises(ConfigError) as here:
        local.configure_sink("t", "spancost.totals", json.dumps(bad))
    with pytest.raises(ConfigError) as there:
        host.configure_sink("t", "spancost.totals", json.dumps(bad))
    assert (there.value.key, str(there.value)) == (here.value.key, str(here.value))
    with pytest.raises(UnknownSinkError) as unknown:
        host.export("nope", priced_request(1))
    assert unknown.value.sink == "nope" and unknown.value.configured == ["totals"]
    with pytest.raises(InvalidRequestError, match="not a serialized ExportTraceServiceRequest"):
        host.export("totals", b"\xff\xff\xff")
    local.close()


def test_a_killed_child_fails_calls_as_unavailable_then_comes_back_configured(
    host: SinkHost, db: Path
) -> None:
    first = host.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    wait_gone(first)
    deadline = time.monotonic() + 10
    while host.pid == first and time.monotonic() < deadline:
        time.sleep(0.02)  # the reader notices the closed socket
    events = host.export("totals", priced_request(8))  # a new child, the sink configured again
    assert [(e.event, e.spans) for e in events] == [("stored", 3)]
    assert host.pid not in (None, first)
    assert f"{8:032x}" in stored_traces(db)


def test_calls_in_flight_when_the_child_dies_are_unavailable(host: SinkHost) -> None:
    pid = host.pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the export below waits for an answer that never comes
    errors: list[BaseException] = []

    def export() -> None:
        try:
            host.export("totals", priced_request(9))
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=export)
    t.start()
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    t.join(20)
    assert not t.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], SinkUnavailableError)
    assert "exited (signal SIGKILL)" in str(errors[0])


def test_the_child_exits_when_the_sidecar_is_killed(tmp_path: Path) -> None:
    script = (
        "import json, sys, time\n"
        "from spancost.sidecar.sinkhost import SINK_NICENESS, SinkHost\n"
        "host = SinkHost('warning')\n"
        f"config = json.dumps({{'database_url': 'sqlite:{tmp_path}/t.db'}})\n"
        "host.configure_sink('t', 'spancost.totals', config)\n"
        "print(host.pid, flush=True)\n"
        "time.sleep(600)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        assert psutil.Process(child).ppid() == parent.pid
        parent.kill()
        parent.wait()
        wait_gone(child)
    finally:
        parent.kill()


def test_close_stops_the_child_and_refuses_later_calls(db: Path) -> None:
    host = SinkHost("warning")
    host.configure_sink("totals", "spancost.totals", json.dumps({"database_url": f"sqlite:{db}"}))
    pid = host.pid
    assert pid is not None
    host.close()
    wait_gone(pid, timeout=1)
    assert host.pid is None
    with pytest.raises(SinkUnavailableError, match="stopping"):
        host.export("totals", priced_request(1))
    assert host.stats() == []


def test_the_child_runs_at_a_lower_priority(host: SinkHost) -> None:
    assert host.pid is not None
    ours = psutil.Process().nice()
    assert psutil.Process(host.pid).nice() == min(ours + SINK_NICENESS, 19)
