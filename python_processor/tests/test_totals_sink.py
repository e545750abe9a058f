"""The ``spancost.totals`` sink: unit tests over SQLite, and the sidecar's TraceService
endpoint over real gRPC (header routing, acknowledgement after commit, UNAVAILABLE)."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spancost.errors import ConfigError, PluginNotFoundError
from spancost.plugin import Events
from spancost.plugins.totals import GAUGE_STORE_UP, GAUGE_UNATTRIBUTED_RATIO, TotalsSink
from spancost.sidecar.instances import PluginInstances
from spancost.sink import SinkUnavailableError
from spancost.store.base import StoreDataError, StoreError, TotalsStore
from spancost.store.open import open_store
from spancost.wire.v1 import sidecar_pb2, sidecar_pb2_grpc
from tests.builders import attributes, batch, resource_spans

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
NOW_NS = int(NOW.timestamp()) * 1_000_000_000


def make_span(
    trace: int,
    span: int,
    *,
    parent: int = 0,
    cost: float | None = 0.25,
    name: str = "GET /checkout",
    start_ns: int = NOW_NS - 5_000_000_000,
) -> Span:
    attrs: dict[str, Any] = {}
    if cost is not None:
        attrs["cost.usd"] = cost
    else:
        attrs["cost.unpriced_reason"] = "no_resource_info"
    return Span(
        trace_id=trace.to_bytes(16, "big"),
        span_id=span.to_bytes(8, "big"),
        parent_span_id=parent.to_bytes(8, "big") if parent else b"",
        name=name,
        start_time_unix_nano=start_ns,
        end_time_unix_nano=start_ns + 1_000_000,
        attributes=attributes(attrs),
    )


def traces_of(path: Path) -> dict[str, tuple[float, int, str | None]]:
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT trace_id, cost_usd, span_count, transaction_name FROM traces")
        return {trace: (cost, spans, name) for trace, cost, spans, name in rows}


def sqlite_config(path: Path, **extra: Any) -> dict[str, Any]:
    return {"database_url": f"sqlite:{path}", **extra}


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "totals.db"


@pytest.fixture
def sink(db_path: Path) -> Iterator[TotalsSink]:
    created = TotalsSink(sqlite_config(db_path), clock=lambda: NOW)
    yield created
    created.close()


def test_a_batch_is_summed_per_trace_and_a_replay_adds_nothing(
    sink: TotalsSink, db_path: Path
) -> None:
    request = batch(
        resource_spans(
            {"service.name": "shop"},
            [make_span(1, 1), make_span(1, 2, parent=1, cost=0.5), make_span(2, 3, cost=None)],
        )
    )
    events = Events()
    sink.export(request, events)
    assert events.count("stored") == 3
    assert traces_of(db_path)[f"{1:032x}"] == (0.75, 2, "GET /checkout")
    replay = Events()
    sink.export(request, replay)
    assert replay.count("stored") == 0
    assert replay.count("duplicate") == 3
    assert traces_of(db_path)[f"{1:032x}"] == (0.75, 2, "GET /checkout")


def test_spans_far_from_ingest_time_are_quarantined_and_counted(
    sink: TotalsSink, db_path: Path
) -> None:
    future = make_span(3, 1, start_ns=NOW_NS + 3 * 3600 * 1_000_000_000)
    events = Events()
    sink.export(batch(resource_spans({"service.name": "shop"}, [future, make_span(4, 2)])), events)
    assert events.count("quarantined", "future") == 1
    assert events.count("stored") == 1
    assert f"{3:032x}" not in traces_of(db_path)
    with sqlite3.connect(db_path) as db:
        reasons = db.execute(
            "SELECT quarantine_reason FROM contributions WHERE trace_id = ?", (f"{3:032x}",)
        )
        assert [row[0] for row in reasons] == ["future"]


def test_late_spans_count_while_the_retention_keeps_their_month(db_path: Path) -> None:
    hour = 3600 * 1_000_000_000
    # A 3-hour batch job that ends now, and a span a queue held through a 3-hour outage.
    job = make_span(5, 1, start_ns=NOW_NS - 3 * hour, cost=0.3)
    job.end_time_unix_nano = NOW_NS
    held = make_span(6, 1, start_ns=NOW_NS - 3 * hour - 1_000_000, cost=0.2)
    # Ends on 2025-10-25: before the horizon of 12 months back (2025-11-01), within 13.
    last_year = make_span(7, 1, start_ns=NOW_NS - 400 * 24 * hour, cost=9.0)
    request = batch(resource_spans({"service.name": "shop"}, [job, held, last_year]))
    for months, kept in ((12, False), (13, True)):
        path = db_path.with_name(f"{months}.db")
        created = TotalsSink(sqlite_config(path, retention_months=months), clock=lambda: NOW)
        try:
            events = Events()
            created.export(request, events)
        finally:
            created.close()
        traces = traces_of(path)
        assert traces[f"{5:032x}"][:2] == (0.3, 1)
        assert traces[f"{6:032x}"][:2] == (0.2, 1)
        assert (f"{7:032x}" in traces) is kept
        assert events.count("quarantined", "past") == (0 if kept else 1)


def test_orphans_are_named_after_the_grace_and_show_in_the_unattributed_ratio(
    db_path: Path,
) -> None:
    clock = [NOW]
    sink = TotalsSink(sqlite_config(db_path, orphan_grace="1m"), clock=lambda: clock[0])
    try:
        sink.export(
            batch(
                resource_spans(
                    {"service.name": "shop"},
                    [make_span(5, 1, cost=1.0), make_span(6, 7, parent=99, cost=3.0)],
                )
            ),
            Events(),
        )
        sink.maintain()
        assert traces_of(db_path)[f"{6:032x}"][2] is None  # still waiting for its root
        clock[0] = NOW + timedelta(minutes=1)
        sink.maintain()
        assert traces_of(db_path)[f"{6:032x}"][2] == "(unattributed)"
        assert sink.gauges()[GAUGE_UNATTRIBUTED_RATIO] == pytest.approx(0.75)
        assert sink.gauges()[GAUGE_STORE_UP] == 1.0
    finally:
        sink.close()


class FlakyOpener:
    """Fails to open the store `failures` times, then opens the real one."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def __call__(self, url: str | None, config: Any, **kwargs: Any) -> TotalsStore:
        self.calls += 1
        if self.calls <= self.failures:
            raise StoreError("cannot connect to PostgreSQL totals store: connection refused")
        return open_store(url, config, **kwargs)


def test_a_store_down_at_start_up_warns_refuses_batches_then_recovers(db_path: Path) -> None:
    opener = FlakyOpener(failures=1)
    sink = TotalsSink(
        sqlite_config(db_path, reconnect_interval="50ms"), clock=lambda: NOW, opener=opener
    )
    try:
        assert len(sink.warnings) == 1
        assert "connection refused" in sink.warnings[0]
        assert "exporter's queue" in sink.warnings[0]
        request = batch(resource_spans({"service.name": "shop"}, [make_span(7, 1)]))
        if sink.gauges()[GAUGE_STORE_UP] == 0.0:  # the reconnect may already have happened
            with pytest.raises(SinkUnavailableError, match="connection refused"):
                sink.export(request, Events())
        deadline = time.monotonic() + 10
        while sink.gauges()[GAUGE_STORE_UP] == 0.0 and time.monotonic() < deadline:
            time.sleep(0.02)
        sink.export(request, Events())
        assert traces_of(db_path)[f"{7:032x}"][0] == 0.25
        assert opener.calls == 2
    finally:
        sink.close()


class FailingStore:
    """A store whose writes fail (a database that went away after start-up)."""

    def migrate(self) -> None:
        pass

    def write(self, *args: Any) -> Any:
        raise StoreError("totals store write: server closed the connection unexpectedly")

    def save_setting(self, *args: Any) -> None:
        return None

    def close(self) -> None:
        pass


def failing_opener(*args: Any, **kwargs: Any) -> Any:
    return FailingStore()


def test_a_failed_write_is_unavailable_not_acknowledged() -> None:
    sink = TotalsSink({}, clock=lambda: NOW, opener=failing_opener)
    try:
        with pytest.raises(SinkUnavailableError, match="closed the connection"):
            sink.export(batch(resource_spans({}, [make_span(8, 1)])), Events())
    finally:
        sink.close()


class RefusingStore:
    """A real SQLite store that refuses, as a database refuses data it cannot hold, every
    write holding a span named "poison" (or, with `crash`, fails unexpectedly); records
    the size of every write it was asked for."""

    def __init__(self, path: Path, *, crash: bool = False) -> None:
        self.inner = open_store(f"sqlite:{path}")
        self.crash = crash
        self.writes: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def write(self, accepted: Any, quarantined: Any, now: datetime) -> Any:
        self.writes.append(len(accepted) + len(quarantined))
        names = [c.name for c in accepted] + [q.contribution.name for q in quarantined]
        if "poison" in names:
            if self.crash:
                raise ZeroDivisionError("a bug in the store")
            raise StoreDataError("totals store write: value out of range")
        return self.inner.write(accepted, quarantined, now)


@pytest.mark.parametrize("crash", [False, True])
def test_a_span_the_store_refuses_is_quarantined_and_the_rest_stored(
    db_path: Path, crash: bool
) -> None:
    store = RefusingStore(db_path, crash=crash)
    sink = TotalsSink({}, clock=lambda: NOW, opener=lambda *a, **k: store)
    spans = [make_span(10 + n, 1, cost=0.5) for n in range(8)]
    spans[5].name = "poison"
    request = batch(resource_spans({"service.name": "shop"}, spans))
    try:
        events = Events()
        sink.export(request, events)  # acknowledged: never retried as it is, never dropped
        assert events.count("stored") == 7
        assert events.count("quarantined", "unstorable") == 1
        traces = traces_of(db_path)
        assert sorted(traces) == sorted(f"{10 + n:032x}" for n in range(8) if n != 5)
        assert math.fsum(cost for cost, _, _ in traces.values()) == 3.5
        with sqlite3.connect(db_path) as db:
            (reason,) = db.execute(
                "SELECT quarantine_reason FROM contributions WHERE trace_id = ?", (f"{15:032x}",)
            ).fetchone()
        assert reason == "unstorable"
        # Halves, down to the span: the whole batch, then parts, not one write per span.
        assert store.writes[0] == 8 and len(store.writes) < 12
        replay = Events()
        sink.export(request, replay)
        assert replay.count("duplicate") == 8 and replay.count("stored") == 0
    finally:
        sink.close()


def test_a_store_error_while_isolating_is_still_unavailable(db_path: Path) -> None:
    store = RefusingStore(db_path)
    sink = TotalsSink({}, clock=lambda: NOW, opener=lambda *a, **k: store)
    spans = [make_span(20, 1), make_span(21, 1, name="poison")]
    calls = []

    def flaky(accepted: Any, quarantined: Any, now: datetime) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise StoreDataError("value out of range")
        raise StoreError("server closed the connection unexpectedly")

    store.write = flaky  # type: ignore[method-assign]
    try:
        with pytest.raises(SinkUnavailableError, match="closed the connection"):
            sink.export(batch(resource_spans({}, spans)), Events())
    finally:
        sink.close()


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({"retention_months": 0}, "config.retention_months"),
        ({"database_url": "mysql://u:p@h/db"}, "config.database_url"),
        ({"database_url": 5}, "config.database_url"),
        ({"max_connections": 0}, "config.max_connections"),
        ({"maintenance_interval": "soon"}, "config.maintenance_interval"),
        ({"orphan_grace": "-1m"}, "config.orphan_grace"),
        ({"databse_url": "x"}, "config"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, config: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        TotalsSink(config, opener=failing_opener)
    assert str(caught.value).startswith(key)
    assert "p@h" not in str(caught.value)


# --- through the sidecar's gRPC server -------------------------------------------


def configure_sink(channel: grpc.Channel, name: str, config: str) -> sidecar_pb2.ConfigureResponse:
    stub = sidecar_pb2_grpc.SidecarStub(channel)  # type: ignore[no-untyped-call]
    response: sidecar_pb2.ConfigureResponse = stub.Configure(
        sidecar_pb2.ConfigureRequest(
            instance=name, plugin="spancost.totals", config_json=config, kind=sidecar_pb2.KIND_SINK
        )
    )
    return response


def export(channel: grpc.Channel, request: Any, sink: str | None) -> None:
    stub = trace_service_pb2_grpc.TraceServiceStub(channel)  # type: ignore[no-untyped-call]
    metadata = [("spancost-sink", sink)] if sink is not None else []
    stub.Export(request, metadata=metadata, timeout=10)


def live_span(trace: int, span: int, cost: float) -> Span:
    now_ns = time.time_ns()
    return make_span(trace, span, cost=cost, start_ns=now_ns - 1_000_000_000)


def test_export_through_grpc_is_routed_by_header_and_counted_in_stats(
    channel: grpc.Channel, tmp_path: Path
) -> None:
    first, second = tmp_path / "a.db", tmp_path / "b.db"
    response = configure_sink(channel, "a", f'{{"database_url": "sqlite:{first}"}}')
    assert response.plugin_version.startswith("spancost ")
    assert list(response.warnings) == []
    # With one sink configured, an export without the header goes to it.
    export(channel, batch(resource_spans({}, [live_span(10, 1, 0.5)])), None)
    configure_sink(channel, "b", f'{{"database_url": "sqlite:{second}"}}')
    request = batch(resource_spans({}, [live_span(11, 1, 2.0)]))
    export(channel, request, "b")
    export(channel, request, "b")  # a replay
    assert set(traces_of(first)) == {f"{10:032x}"}
    assert traces_of(second)[f"{11:032x}"][:2] == (2.0, 1)

    with pytest.raises(grpc.RpcError) as no_header:
        export(channel, request, None)
    assert no_header.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "configured: a, b" in str(no_header.value.details())
    with pytest.raises(grpc.RpcError) as unknown:
        export(channel, request, "c")
    assert unknown.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "no sink named 'c'" in str(unknown.value.details())

    stub = sidecar_pb2_grpc.SidecarStub(channel)  # type: ignore[no-untyped-call]
    stats = {item.sink: item for item in stub.Stats(sidecar_pb2.StatsRequest()).sinks}
    counts_b = {(c.event, c.reason): c.spans for c in stats["b"].counts}
    assert counts_b == {("stored", ""): 1, ("duplicate", ""): 1}
    assert {g.name: g.value for g in stats["b"].gauges}[GAUGE_STORE_UP] == 1.0


def test_an_unreachable_database_configures_with_a_warning_and_exports_are_unavailable(
    channel: grpc.Channel,
) -> None:
    response = configure_sink(
        channel, "totals", '{"database_url": "postgresql://spancost:hunter2@127.0.0.1:1/x"}'
    )
    assert len(response.warnings) == 1
    assert "cannot connect" in response.warnings[0]
    assert "hunter2" not in response.warnings[0]
    with pytest.raises(grpc.RpcError) as caught:
        export(channel, batch(resource_spans({}, [live_span(12, 1, 1.0)])), "totals")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    stub = sidecar_pb2_grpc.SidecarStub(channel)  # type: ignore[no-untyped-call]
    (stats,) = stub.Stats(sidecar_pb2.StatsRequest()).sinks
    assert stats.unavailable == 1


def test_a_bad_sink_config_is_invalid_argument_naming_the_key(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        configure_sink(channel, "totals", '{"database_url": "mysql://x"}')
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(caught.value.details()).startswith("config.database_url:")


def test_an_unknown_sink_plugin_is_not_found_in_the_sinks_group() -> None:
    with pytest.raises(PluginNotFoundError, match=r"'spancost.sinks'.*spancost.totals"):
        PluginInstances().configure_sink("x", "spancost.nope", "{}")


def test_concurrent_exports_of_one_trace_sum_exactly(db_path: Path) -> None:
    sink = TotalsSink(sqlite_config(db_path), clock=lambda: NOW)
    costs = [0.1 * (i % 7) + 1e-7 * i for i in range(400)]
    try:

        def send(part: int) -> None:
            spans = [
                make_span(20, i + 1, parent=0 if i == 0 else 1, cost=costs[i])
                for i in range(part, len(costs), 4)
            ]
            sink.export(batch(resource_spans({}, spans)), Events())

        threads = [threading.Thread(target=send, args=(part,)) for part in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        cost, spans, _ = traces_of(db_path)[f"{20:032x}"]
        assert spans == len(costs)
        assert math.isclose(cost, math.fsum(costs), rel_tol=1e-9)
    finally:
        sink.close()
