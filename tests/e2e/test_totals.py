"""The trace-totals path end to end: the real collector, python/cost, the stock OTLP
exporter with its queue, the sidecar's totals sink and a real PostgreSQL 15.

The invariant every test checks (`assert_exact`): per trace, the stored cost equals
the sum of ``cost.usd`` over the spans that left the processor (as the test's OTLP
sink received them) to 1e-9 relative, and the span counts are equal.
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml

from tests.e2e.harness import ROOT, Collector, OtlpSink, free_port
from tests.e2e.raw import RawClient
from tests.e2e.totals import (
    any_value,
    assert_exact,
    make_trace,
    new_database,
    pg,
    reference,
    request,
    sending,
    socket_dir,
    stored,
    totals_config,
)
from tests.waiting import wait_for

Start = Callable[..., Collector]


@pytest.fixture(scope="module")
def postgres() -> Iterator[Any]:
    with pg.running_postgres() as server:
        yield server


def test_a_trace_split_across_batches_and_two_collectors_sums_exactly(
    postgres: Any, sink: OtlpSink, collector: Start
) -> None:
    url = new_database(postgres)
    a = collector(totals_config(sink.port, socket_dir() / "a.sock", url))
    b = collector(totals_config(sink.port, socket_dir() / "b.sock", url))
    rng = random.Random(1)
    traces = [make_trace(rng, 6) for _ in range(300)]
    # Each trace's spans go in three batches, two to one collector and one to the
    # other, from two threads at once: both sidecars add to the same trace rows.
    parts: dict[str, list[list[Any]]] = {"a": [], "b": []}
    for n, spans in enumerate(traces):
        first, second = ("a", "b") if n % 2 else ("b", "a")
        parts[first] += [spans[0:2], spans[4:6]]
        parts[second].append(spans[2:4])

    def send(endpoint: str, batches: list[list[Any]]) -> None:
        client = RawClient(endpoint)
        try:
            for i in range(0, len(batches), 10):
                client.export(request([s for batch in batches[i : i + 10] for s in batch]))
        finally:
            client.close()

    threads = [
        threading.Thread(target=send, args=(a.grpc_endpoint, parts["a"])),
        threading.Thread(target=send, args=(b.grpc_endpoint, parts["b"])),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sink.wait_spans(300 * 6)
    got = assert_exact(sink, url)
    assert len(got.spans_by_trace) == 300
    # Both collectors stored part of the spans.
    for c in (a, b):
        wait_for(
            lambda c=c: c.metric("otelcol_extension_python_sink_spans", event="stored") > 0,
            10,
            "the sink's stored-spans metric",
        )
    with psycopg.connect(url) as connection:
        (rollup,) = connection.execute("SELECT sum(cost_usd) FROM domain_hourly").fetchone()
        accounts = connection.execute(
            "SELECT root_account, count(*) FROM traces GROUP BY 1"
        ).fetchall()
    assert rollup == pytest.approx(got.cost, rel=1e-9)
    assert accounts == [("123456789012", 300)]


def test_a_retry_after_a_timeout_whose_first_attempt_committed_adds_nothing(
    postgres: Any, sink: OtlpSink, collector: Start
) -> None:
    url = new_database(postgres)
    c = collector(
        totals_config(sink.port, socket_dir() / "s.sock", url, exporter={"timeout": "300ms"})
    )
    client = RawClient(c.grpc_endpoint)
    rng = random.Random(2)
    client.export(request(make_trace(rng, 3)))  # creates the schema's rows and partitions
    assert_exact(sink, url)
    # Hold a lock every write needs: the sink's writes wait, the exporter times out
    # after 300 ms and sends the batch again, and then every attempt commits.
    with psycopg.connect(url) as blocker:
        blocker.execute("LOCK TABLE domain_hourly IN SHARE MODE")
        for _ in range(5):
            client.export(request([s for _ in range(4) for s in make_trace(rng, 5)]))
        time.sleep(3)
        blocker.rollback()
    client.close()
    assert_exact(sink, url)
    wait_for(
        lambda: c.metric("otelcol_extension_python_sink_spans", event="duplicate") > 0,
        20,
        "duplicates counted by the sink (the exporter's retries)",
    )


def test_the_database_stopped_for_60_seconds_under_load_loses_nothing(
    postgres: Any, sink: OtlpSink, collector: Start
) -> None:
    url = new_database(postgres)
    c = collector(totals_config(sink.port, socket_dir() / "s.sock", url))
    with sending(c.grpc_endpoint, seed=3, interval=0.1) as sender:
        time.sleep(3)
        postgres.stop()
        try:
            time.sleep(60)
            down = c.metric("otelcol_extension_python_sink_batches_unavailable")
        finally:
            postgres.start()
        time.sleep(3)
    assert sender.failed == 0
    assert down > 0, "the sink refused batches while the database was down"
    assert_exact(sink, url, timeout=120)


def test_a_sigterm_restart_with_a_persistent_queue_loses_nothing(
    postgres: Any, sink: OtlpSink, collector: Start, tmp_path: Path
) -> None:
    url = new_database(postgres)
    storage = tmp_path / "queue"
    storage.mkdir()
    config = totals_config(sink.port, socket_dir() / "s.sock", url, storage=storage)
    first = collector(config)
    queued = "otelcol_exporter_queue_size"
    with sending(first.grpc_endpoint, seed=4, interval=0.05) as sender:
        wait_for(lambda: stored(url).spans > 0, 60, "spans stored before the outage")
        stored_before = stored(url).spans
        postgres.stop()  # batches now wait in the persistent queue
        try:
            wait_for(
                lambda: first.metric(queued, exporter="otlp_grpc/totals") > 0,
                60,
                "batches waiting in the totals exporter's queue",
            )
            assert first.stop() == 0
            # Spans the first collector took in but could not store: only the
            # persistent queue can bring them to the store now.
            assert sink.span_count() > stored_before
            assert any(storage.iterdir()), "the queue is persisted in file_storage"
            collector(config)  # same storage, same endpoints
            time.sleep(2)
        finally:
            postgres.start()
        time.sleep(2)
    assert sender.sent > 0
    assert_exact(sink, url, timeout=120)


def test_spans_postgres_cannot_hold_as_sent_do_not_block_the_queue(
    postgres: Any, sink: OtlpSink, collector: Start
) -> None:
    """A NUL in a span name and a transaction attribute, and a start time past int64
    nanoseconds: once made every write of their batch fail, so the exporter retried it
    forever and nothing behind it was stored. Now they are stored (the far-future span
    quarantined) and the batches after them too."""
    url = new_database(postgres)
    c = collector(totals_config(sink.port, socket_dir() / "s.sock", url))
    rng = random.Random(7)
    odd = make_trace(rng, 3)
    odd[0].name = "GET /pay\x00ment"
    odd[0].attributes.add(key="business.transaction", value=any_value("check\x00out"))
    far = make_trace(rng, 1)
    far[0].start_time_unix_nano = 2**64 - 2 * 10**9
    far[0].end_time_unix_nano = 2**64 - 10**9
    client = RawClient(c.grpc_endpoint)
    client.export(request([*odd, *far, *make_trace(rng, 2)]))
    client.export(request(make_trace(rng, 4)))  # behind it in the queue
    client.close()
    sink.wait_spans(3 + 1 + 2 + 4)
    expected = reference(sink)
    far_trace = far[0].trace_id.hex()
    wait_for(lambda: stored(url).spans >= expected.spans - 1, 60, "every span but one stored")
    got = stored(url)
    del expected.spans_by_trace[far_trace], expected.cost_by_trace[far_trace]
    assert got.spans_by_trace == expected.spans_by_trace
    for trace, cost in expected.cost_by_trace.items():
        assert math.isclose(got.cost_by_trace[trace], cost, rel_tol=1e-9, abs_tol=1e-15)
    with psycopg.connect(url) as connection:
        names = connection.execute(
            "SELECT transaction_name FROM traces WHERE trace_id = %s", (odd[0].trace_id.hex(),)
        ).fetchall()
        quarantined = connection.execute("SELECT trace_id, reason FROM quarantined_spans")
        assert quarantined.fetchall() == [(far_trace, "future")]
    assert names == [("check\ufffdout",)]
    wait_for(
        lambda: c.metric("otelcol_extension_python_sink_spans", event="sanitized") >= 3,
        20,
        "the sink's sanitized count (two NULs, one time out of range)",
    )


def test_a_bad_database_url_is_reported_at_start_up_and_spans_still_flow(
    sink: OtlpSink, collector: Start
) -> None:
    url = "postgresql://spancost:hunter2@127.0.0.1:1/nowhere"
    c = collector(totals_config(sink.port, socket_dir() / "s.sock", url))
    client = RawClient(c.grpc_endpoint)
    client.export(request(make_trace(random.Random(5), 3)))
    client.close()
    sink.wait_spans(3)
    log = c.log()
    assert "is not available" in log and "cannot connect to PostgreSQL" in log
    assert "hunter2" not in log

    def store_up() -> list[float]:
        return [
            value
            for key, value in c.metrics().items()
            if key.startswith("otelcol_extension_python_sink_gauge{") and 'name="store_up"' in key
        ]

    wait_for(lambda: store_up() == [0.0], 10, "the sink's store_up gauge at 0")


def test_make_runs_config_sums_into_sqlite_without_a_server(
    sink: OtlpSink, collector: Start, tmp_path: Path
) -> None:
    config = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    port = free_port()
    config["receivers"]["otlp"]["protocols"] = {"grpc": {"endpoint": f"127.0.0.1:{port}"}}
    config["extensions"]["health_check"]["endpoint"] = f"127.0.0.1:{free_port()}"
    config["exporters"]["prometheus/cost"]["endpoint"] = f"127.0.0.1:{free_port()}"
    config["exporters"]["otlp_grpc/test"] = {
        "endpoint": f"127.0.0.1:{sink.port}",
        "tls": {"insecure": True},
        "sending_queue": {"enabled": False},
    }
    config["service"]["pipelines"]["traces"]["exporters"].append("otlp_grpc/test")
    data = tmp_path / "data"
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("DATABASE_URL",)},
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "SPANCOST_RUN_DIR": str(socket_dir()),
        "SPANCOST_DATA_DIR": str(data),
    }
    c = collector(config, env=env)
    client = RawClient(c.grpc_endpoint)
    rng = random.Random(6)
    client.export(request([s for _ in range(20) for s in make_trace(rng, 4)]))
    client.close()
    expected = sink.wait_spans(80)
    database = data / "totals.db"

    def stored_spans() -> int:
        if not database.exists():
            return 0
        with sqlite3.connect(database) as db:
            (spans,) = db.execute("SELECT coalesce(sum(span_count), 0) FROM traces").fetchone()
        return int(spans)

    wait_for(lambda: stored_spans() == 80, 30, "80 spans in the SQLite totals store")
    with sqlite3.connect(database) as db:
        (cost,) = db.execute("SELECT sum(cost_usd) FROM traces").fetchone()
    sent_cost = sum(
        kv.value.double_value for _rs, _ss, span in expected for kv in span.attributes
        if kv.key == "cost.usd"
    )  # fmt: skip
    assert cost == pytest.approx(sent_cost, rel=1e-9)
    assert sent_cost > 0

    # What a user then runs: spancost report over the same embedded store.
    report = subprocess.run(  # noqa: S603 - our own CLI
        [str(ROOT / ".venv" / "bin" / "spancost"), "report", "--json", "--since", "1h"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    document = json.loads(report.stdout)
    assert document["total"]["traces"] == 20
    assert document["total"]["spans"] == 80
    assert document["total"]["cost"] == pytest.approx(sent_cost, rel=1e-9)
    transactions = {item["name"]: item for item in document["transactions"]}
    assert set(transactions) <= {"POST /checkout", "GET /search"}
    assert sum(item["traces"] for item in transactions.values()) == 20
    assert math.fsum(item["cost"] for item in transactions.values()) == pytest.approx(
        sent_cost, rel=1e-9
    )


def test_a_sidecar_container_restarted_behind_the_collector_gets_its_sink_back(
    postgres: Any, sink: OtlpSink, collector: Start, tmp_path: Path
) -> None:
    """Connect mode (the DaemonSet's sidecar container): the sidecar is killed and
    started again by someone else; the extension configures the sink again and the
    exporter's retries deliver what waited."""
    url = new_database(postgres)
    socket = socket_dir() / "s.sock"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPANCOST_")}
    env["SPANCOST_SIDECAR_LISTEN"] = f"unix://{socket}"
    log = (tmp_path / "sidecar.log").open("ab")

    def start_sidecar() -> subprocess.Popen[bytes]:
        return subprocess.Popen(  # noqa: S603 - our own CLI
            [str(ROOT / ".venv" / "bin" / "spancost"), "sidecar"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    sidecar = start_sidecar()
    try:
        config = totals_config(sink.port, socket, url)
        del config["extensions"]["python"]["command"]
        del config["extensions"]["python"]["restart"]
        config["extensions"]["python"]["startup_timeout"] = "30s"
        c = collector(config)
        client = RawClient(c.grpc_endpoint)
        rng = random.Random(7)
        client.export(request([s for _ in range(10) for s in make_trace(rng, 3)]))
        assert_exact(sink, url)
        sidecar.kill()
        sidecar.wait(10)
        sidecar = start_sidecar()
        wait_for(socket.exists, 30, "the restarted sidecar's socket")
        # Processed with on_error: pass while the sidecar is down or coming back; the
        # totals exporter retries until the sink is configured in the new sidecar.
        for _ in range(5):
            client.export(request([s for _ in range(10) for s in make_trace(rng, 3)]))
            time.sleep(0.2)
        client.close()
        assert_exact(sink, url, timeout=60, priced=False)
        assert "configured a sink the sidecar had lost" in c.log()
    finally:
        sidecar.kill()
        sidecar.wait(10)
        log.close()
