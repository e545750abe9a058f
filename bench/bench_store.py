"""`make bench`: the PostgreSQL totals store, on a private server started here.

The targets of issue #4, and the cost of the latest migration:
- write throughput: trace totals per second through `PostgresStore.write`, with
  1,000-span batches of 5-span traces (a root and four children, as the sink hands
  them over), by 1 writer and by several (threads sharing one store and its pool, as
  the sink's exporter workers would; and processes, as several collectors would), and
  with each trace split across two batches, and where the time goes (the writers' and
  the server's CPU per trace while they write); with ``--usage``, every span carries its
  pod and each root starts a service segment, as the sink's contributions do on
  Kubernetes (issue 12: the store keeps each trace's busy time and ``pod_busy``);
- migration 4 of a version-3 database (200,000 traces, 1,000,000 span keys), timed;
- the rolling 24 h per-domain spend (`domain_spend`, what the guard reads) with
  10 million trace rows in the current month: the rows are loaded with one
  ``INSERT ... SELECT generate_series`` into the real schema (``trace_keys`` and the
  ``traces`` partition), the hourly rollup is then built from them with one
  ``INSERT ... SELECT ... GROUP BY``, and `domain_spend` is timed many times.

The server is the one the tests use (python_processor/tests/pg.py), with ``fsync``
turned back on (the tests run without it): an acknowledged write is durable.
Results go to bench-results/store.json (``--results``) and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import multiprocessing
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import psutil
import psycopg
import spancost.store.postgres as postgres_module
from psycopg import sql
from spancost.store.migrations.postgres import MIGRATIONS
from spancost.store.postgres import PostgresStore
from spancost.totals import TotalsConfig
from spancost.totals.aggregate import SpanContribution, ns_from_utc

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench-results" / "store.json"
SPANS_PER_TRACE = 5
OWNER = os.environ.get("SPANCOST_BENCH_OWNER") == "1"
"""SPANCOST_BENCH_OWNER=1 (read here and, inherited, by every spawned writer): every span
carries its namespace, and the store charges each span to it (``domains.owner``, the
trace_charges rows); each trace's last span comes from another namespace."""
CONFIG = (
    TotalsConfig(owner_attribute="k8s.namespace.name")
    if OWNER
    else TotalsConfig(domains_by_service={f"service-{i}": f"domain-{i % 10}" for i in range(20)})
)


def _pg_module() -> ModuleType:
    """python_processor/tests/pg.py (``tests`` at the root is the e2e package)."""
    path = ROOT / "python_processor" / "tests" / "pg.py"
    spec = importlib.util.spec_from_file_location("spancost_bench_pg", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _new_database(server: str, name: str) -> str:
    with psycopg.connect(server, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return server.replace("dbname=postgres", f"dbname={name}")


# -- write throughput ----------------------------------------------------------------


def make_batches(
    writer: int,
    count: int,
    batch_spans: int,
    now: datetime,
    *,
    split: bool = False,
    usage: bool = False,
) -> list[list[SpanContribution]]:
    """`count` batches of `batch_spans` spans, traces of 5 spans, unique to `writer`.

    `split`: each trace's root and first child come in one batch, its three other
    children in the next (as when a trace's spans reach a collector in two batches):
    every batch but the first then adds to 200 traces written before and starts 200.
    `usage`: every span carries its pod (three per service), and the root, the trace's
    one local root (its children are the same service's), starts a segment."""
    batches = _whole_trace_batches(writer, count, batch_spans, now, usage=usage)
    if not split:
        return batches
    halves: list[list[SpanContribution]] = [[] for _ in range(count + 1)]
    for index, batch in enumerate(batches):
        for position, span in enumerate(batch):
            halves[index + (position % SPANS_PER_TRACE >= 2)].append(span)
    return [batch for batch in halves if batch]


def _whole_trace_batches(
    writer: int, count: int, batch_spans: int, now: datetime, *, usage: bool
) -> list[list[SpanContribution]]:
    now_ns = ns_from_utc(now)
    batches: list[list[SpanContribution]] = []
    trace = 0
    for _ in range(count):
        batch: list[SpanContribution] = []
        for _ in range(batch_spans // SPANS_PER_TRACE):
            trace += 1
            trace_id = f"{writer:08x}{trace:024x}"
            service = f"service-{trace % 20}"
            pod = f"7c9e6679-7425-40de-944b-{trace % 60:012x}" if usage else None
            start = now_ns - 30 * 10**9 + trace % 1000
            for index in range(SPANS_PER_TRACE):
                root = index == 0
                batch.append(
                    SpanContribution(
                        trace_id=trace_id,
                        span_id=f"{index + 1:016x}",
                        start_ns=start + index * 1000,
                        end_ns=start + index * 1000 + 5 * 10**6,
                        cost_usd=1.3e-6 * (index + 1),
                        unpriced_reason=None,
                        is_root=root,
                        name="POST /cart" if root else "SELECT orders",
                        service=service,
                        environment="production",
                        account="123456789012",
                        transaction_attribute=f"tx-{trace % 40}" if root else None,
                        # A downstream namespace for the last span: two charges a trace.
                        owner=(
                            f"ns-{(trace + (index == SPANS_PER_TRACE - 1)) % 10}" if OWNER else None
                        ),
                        pod=pod,
                        segment=usage and root,
                        # Priced as the node's compute (cost.model ec2.*), as spans on
                        # an EKS node are: the allocation's, not a per-request price.
                        compute=usage,
                    )
                )
        batches.append(batch)
    return batches


def _write_all(store: PostgresStore, batches: list[list[SpanContribution]], now: datetime) -> int:
    traces = 0
    for batch in batches:
        traces += store.write(batch, [], now).traces
    return traces


def _process_writer(job: tuple[str, int, int, int, bool, bool], start: Any, result: Any) -> None:
    dsn, writer, count, batch_spans, split, usage = job
    now = datetime.now(UTC)
    batches = make_batches(writer, count, batch_spans, now, split=split, usage=usage)
    store = PostgresStore(dsn, CONFIG, max_connections=1)
    start.wait()
    began, cpu = time.perf_counter(), time.process_time()
    traces = _write_all(store, batches, now)
    # Its own CPU, measured here: once it put its result the process may be gone.
    result.put((traces, time.perf_counter() - began, time.process_time() - cpu))
    store.close()


def _postmaster(dsn: str) -> psutil.Process:
    """The server's postmaster (pg_ctl daemonizes it: it is no child of this process)."""
    with psycopg.connect(dsn) as connection:
        row = connection.execute("SHOW data_directory").fetchone()
    assert row is not None
    pid = int((Path(row[0]) / "postmaster.pid").read_text().split()[0])
    return psutil.Process(pid)


def _server_cpu(postmaster: psutil.Process) -> float:
    """User + system CPU seconds of the server: the postmaster and every process it
    runs (backends, the WAL writer, the checkpointer), those that ended included (the
    postmaster's children times, once it has waited for them)."""
    own = postmaster.cpu_times()
    total = own.user + own.system + own.children_user + own.children_system
    for process in postmaster.children():
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:  # ended just now: in children times once reaped
            continue
        total += times.user + times.system
    return total


def write_throughput(
    server: str,
    label: str,
    *,
    writers: int,
    processes: bool,
    batches: int,
    batch_spans: int,
    split: bool = False,
    usage: bool = False,
) -> dict[str, Any]:
    """Trace totals a second: the traces stored (each once, whole) over the time taken;
    ``trace_writes`` counts every addition to a trace row (twice a trace when split)."""
    dsn = _new_database(server, f"bench_write_{label}")
    postmaster = _postmaster(dsn)
    store = PostgresStore(dsn, CONFIG, max_connections=max(1, writers))
    store.migrate()
    now = datetime.now(UTC)
    store.ensure_partitions(now)
    # Warm up: the first writes create the pool's connections and plans.
    _write_all(store, make_batches(10_000, 3, batch_spans, now, usage=usage), now)
    if processes:
        context = multiprocessing.get_context("spawn")
        start_event, results = context.Event(), context.Queue()
        workers = [
            context.Process(
                target=_process_writer,
                args=((dsn, writer, batches, batch_spans, split, usage), start_event, results),
            )
            for writer in range(writers)
        ]
        for worker in workers:
            worker.start()
        time.sleep(2.0)  # let every process build its batches and connect
        server_cpu = _server_cpu(postmaster)
        began = time.perf_counter()
        start_event.set()
        outcomes = [results.get(timeout=600) for _ in workers]
        elapsed = time.perf_counter() - began
        client_cpu = sum(cpu for _, _, cpu in outcomes)
        server_cpu = _server_cpu(postmaster) - server_cpu
        for worker in workers:
            worker.join()
        traces = sum(count for count, _, _ in outcomes)
    else:
        work = [
            make_batches(writer, batches, batch_spans, now, split=split, usage=usage)
            for writer in range(writers)
        ]
        counts = [0] * writers

        def run(index: int) -> None:
            counts[index] = _write_all(store, work[index], now)

        threads = [threading.Thread(target=run, args=(index,)) for index in range(writers)]
        client_cpu, server_cpu = time.process_time(), _server_cpu(postmaster)
        began = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - began
        client_cpu = time.process_time() - client_cpu
        server_cpu = _server_cpu(postmaster) - server_cpu
        traces = sum(counts)
    with psycopg.connect(dsn) as connection:
        stored = connection.execute("SELECT count(*) FROM traces").fetchone()
        complete = connection.execute(
            "SELECT count(*) FROM traces WHERE span_count = %s", (SPANS_PER_TRACE,)
        ).fetchone()
        kept = connection.execute("SELECT to_regclass('pod_busy') IS NOT NULL").fetchone()
        # A segment a trace (its root's), once, whichever writer stored it.
        segments = (
            connection.execute("SELECT sum(segments) FROM pod_busy").fetchone()
            if usage and kept == (True,)
            else None
        )
    store.close()
    written = writers * batches * (batch_spans // SPANS_PER_TRACE)
    expected = written + 3 * (batch_spans // SPANS_PER_TRACE)
    assert stored == complete == (expected,), f"stored {stored}, whole {complete}, {expected}"
    assert segments is None or segments == (expected,), f"segments {segments}, {expected}"
    return {
        "label": label,
        "writers": writers,
        "kind": "processes" if processes else "threads",
        "split": split,
        "usage": usage,
        "batch_spans": batch_spans,
        "traces": written,
        "trace_writes": traces,
        "seconds": round(elapsed, 3),
        "traces_per_s": round(written / elapsed),
        "spans_per_s": round(written * SPANS_PER_TRACE / elapsed),
        "ms_per_batch": round(1000 * elapsed / batches, 2),
        # Where the time goes: the writers' Python and psycopg, and PostgreSQL's own
        # work (every backend), CPU µs per trace while the writes ran.
        "writer_cpu_us_per_trace": round(client_cpu / written * 1e6, 1),
        "server_cpu_us_per_trace": round(server_cpu / written * 1e6, 1),
    }


# -- migration 4 on a version-3 database --------------------------------------------


_V3_KEYS = """
INSERT INTO trace_keys (trace_id, keyed_at)
SELECT lpad(to_hex(i), 32, '0'), %(month)s FROM generate_series(1, %(n)s) AS i
"""

_V3_CONTRIBUTIONS = """
INSERT INTO contributions (trace_id, span_id, keyed_at)
SELECT lpad(to_hex(i), 32, '0')::uuid, span, %(month)s
FROM generate_series(1, %(n)s) AS i, generate_series(1, 5) AS span
"""

_V3_TRACES = """
INSERT INTO traces (
    trace_id, keyed_at, cost_usd, span_count, priced_count, unpriced_count, start_ns, end_ns,
    first_seen, last_update, earliest_span_id, earliest_start_ns
)
SELECT lpad(to_hex(i), 32, '0'), %(month)s, 1e-6, 5, 5, 0, 1, 2, %(month)s, %(month)s,
    '0000000000000001', 1
FROM generate_series(1, %(n)s) AS i
"""


def migration_4(server: str, traces: int) -> dict[str, Any]:
    """`migrate` of a version-3 database holding `traces` traces of 5 spans (a key row
    each in ``contributions``) to the current schema, timed."""
    dsn = _new_database(server, "bench_migration_4")
    store = PostgresStore(dsn, CONFIG, max_connections=1)
    now = datetime.now(UTC)
    with (
        mock.patch.object(postgres_module, "MIGRATIONS", MIGRATIONS[:3]),
        mock.patch.object(postgres_module, "PARTITIONED_TABLES", ("contributions", "traces")),
    ):
        store.migrate()
        store.ensure_partitions(now)
    parameters = {"n": traces, "month": now.replace(day=1, hour=0, minute=0, second=0)}
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        for statement in (_V3_KEYS, _V3_CONTRIBUTIONS, _V3_TRACES):
            connection.execute(statement, parameters)
        connection.execute("VACUUM ANALYZE")
    began = time.perf_counter()
    store.migrate()
    seconds = time.perf_counter() - began
    with psycopg.connect(dsn) as connection:
        stored = connection.execute("SELECT count(*), sum(length(span_ids)) FROM traces")
        assert stored.fetchone() == (traces, 8 * SPANS_PER_TRACE * traces)
    store.close()
    return {"traces": traces, "spans": SPANS_PER_TRACE * traces, "seconds": round(seconds, 2)}


# -- the rolling 24 h rollup ---------------------------------------------------------

_LOAD_KEYS = """
INSERT INTO trace_keys (trace_id, keyed_at)
SELECT lpad(to_hex(i), 32, '0'), %(start)s + (%(span)s * i / %(rows)s)
FROM generate_series(1, %(rows)s) AS i
"""

_LOAD_TRACES = """
INSERT INTO traces (
    trace_id, keyed_at, cost_usd, span_count, priced_count, unpriced_count, start_ns, end_ns,
    first_seen, last_update, earliest_span_id, earliest_start_ns, earliest_service,
    earliest_environment, root_span_id, root_start_ns, root_transaction, root_service,
    root_environment, transaction_name, domain, environment, span_ids
)
SELECT trace_id, keyed_at, (i %% 997) * 1.0e-6, 5, 5, 0, ns, ns + 5000000,
    keyed_at, keyed_at, '0000000000000001', ns, 'service-' || (i %% 20), env,
    '0000000000000001', ns, 'tx-' || (i %% 40), 'service-' || (i %% 20), env,
    'tx-' || (i %% 40), 'domain-' || (i %% 50), env,
    int8send(1::bigint) || int8send(2::bigint) || int8send(3::bigint) || int8send(4::bigint)
        || int8send(5::bigint)
FROM (
    SELECT lpad(to_hex(i), 32, '0') AS trace_id, i,
        %(start)s + (%(span)s * i / %(rows)s) AS keyed_at,
        (extract(epoch FROM %(start)s + (%(span)s * i / %(rows)s)) * 1e9)::bigint AS ns,
        (ARRAY['production', 'production', 'staging', 'dev'])[1 + i %% 4] AS env
    FROM generate_series(1, %(rows)s) AS i
) AS generated
"""

_BUILD_ROLLUP = """
INSERT INTO domain_hourly (hour, domain, environment, cost_usd, traces, spans)
SELECT date_trunc('hour', first_seen), coalesce(domain, ''), coalesce(environment, ''),
    sum(cost_usd), count(*), sum(span_count)
FROM traces GROUP BY 1, 2, 3
"""


def _timed(action: Callable[[], object], rounds: int) -> list[float]:
    times: list[float] = []
    for _ in range(rounds):
        began = time.perf_counter()
        action()
        times.append((time.perf_counter() - began) * 1000)
    return times


# The allocation of the 25 hours up to now, in the database of the 10 M trace rows:
# 100 nodes (m5.2xlarge, 8 vCPU, 32 GiB), 1,000 pods (10 a node), each busy with 5 of 40
# transactions every hour.
_LOAD_USAGE = (
    """
INSERT INTO node_usage (hour_ns, node, seconds, region, instance_type, operating_system,
    capacity_type, zone, vcpu, memory_gib, hourly_usd, price_source, price_model,
    price_as_of, reported_ns)
SELECT h.hour_ns, 'node-' || n, 3600, 'us-east-1', 'm5.2xlarge', 'linux', 'on_demand',
    'us-east-1a', 8, 32, 0.384, 'bundled', 'ec2.on_demand.duration', '2025-01-01', h.hour_ns
FROM generate_series(0, 24) AS g(i), generate_series(0, 99) AS n,
    LATERAL (SELECT %(first)s::bigint + g.i * 3600000000000 AS hour_ns) AS h
""",
    """
INSERT INTO pod_usage (hour_ns, pod, node, seconds, cpu, memory_gib, namespace, workload)
SELECT h.hour_ns, 'pod-' || p, 'node-' || (p / 10), 3600, 0.5, 2, 'ns-' || (p %% 10),
    'Deployment/app-' || (p %% 50)
FROM generate_series(0, 24) AS g(i), generate_series(0, 999) AS p,
    LATERAL (SELECT %(first)s::bigint + g.i * 3600000000000 AS hour_ns) AS h
""",
    """
INSERT INTO pod_busy (hour_ns, pod, domain, transaction_name, environment, seconds, segments)
SELECT h.hour_ns, 'pod-' || p, 'domain-' || ((p + t) %% 8), 'tx-' || ((p + t) %% 40),
    'production', 100 + t, 10 + t
FROM generate_series(0, 24) AS g(i), generate_series(0, 999) AS p, generate_series(0, 4) AS t,
    LATERAL (SELECT %(first)s::bigint + g.i * 3600000000000 AS hour_ns) AS h
WHERE p %% 10 <> 9  -- every tenth pod untraced
""",
    """
INSERT INTO allocation_dirty (hour_ns)
SELECT %(first)s::bigint + g.i * 3600000000000 FROM generate_series(0, 24) AS g(i)
""",
)


def _allocation_queries(
    dsn: str, store: PostgresStore, now: datetime, rounds: int
) -> dict[str, Any]:
    """Allocate 25 hours of 100 nodes and 1,000 pods, then time the report's reads."""
    first = ns_from_utc(now.replace(minute=0, second=0)) - 24 * 3600 * 10**9
    with psycopg.connect(dsn, autocommit=True) as connection:
        for statement in _LOAD_USAGE:
            connection.execute(statement, {"first": first})
        connection.execute("VACUUM ANALYZE")
    began = time.perf_counter()
    hours = store.allocate()
    allocate_s = time.perf_counter() - began
    since = now - timedelta(hours=24)
    lines = store.reconcile(since, now)
    assert len(lines) == 100 * 25, len(lines)
    assert all(abs(line.difference) < 1e-9 for line in lines)
    totals = _timed(lambda: store.allocated_totals(since, now, {"staging"}), rounds)
    reconcile = _timed(lambda: store.reconcile(since, now), rounds)
    spend = _timed(lambda: store.allocated_domain_spend(since, now, {"staging"}), rounds)
    return {
        "allocated_hours": hours,
        "allocate_seconds": round(allocate_s, 2),
        "allocated_totals_24h_ms_median": round(statistics.median(totals), 2),
        "reconcile_24h_ms_median": round(statistics.median(reconcile), 2),
        "allocated_domain_spend_24h_ms_median": round(statistics.median(spend), 2),
    }


def rollup_query(server: str, rows: int, rounds: int) -> dict[str, Any]:
    dsn = _new_database(server, "bench_rollup")
    store = PostgresStore(dsn, CONFIG, max_connections=1)
    store.migrate()
    now = datetime.now(UTC).replace(microsecond=0)
    month = now.replace(day=1, hour=0, minute=0, second=0)
    store.ensure_partitions(now, months_ahead=1)
    # First seen from the month's start to a second before now: a trace first seen at
    # `now` itself would be in the rollup's current hour but not before `now`.
    parameters = {"start": month, "span": now - month - timedelta(seconds=1), "rows": rows}
    began = time.perf_counter()
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("SET TIME ZONE 'UTC'")
        connection.execute(_LOAD_KEYS, parameters)
        connection.execute(_LOAD_TRACES, parameters)
        connection.execute(_BUILD_ROLLUP)
        connection.execute("VACUUM ANALYZE")
        loaded = connection.execute("SELECT count(*) FROM traces").fetchone()
        rollup_rows = connection.execute("SELECT count(*) FROM domain_hourly").fetchone()
    load_s = time.perf_counter() - began
    assert loaded == (rows,)
    since, exclude = now - timedelta(hours=24), {"staging", "dev"}
    # Consistency: the rollup's answer equals the same sums over the trace rows.
    spend = store.domain_spend(since, now, exclude)
    with psycopg.connect(dsn) as connection:
        from_rows = connection.execute(
            "SELECT domain, sum(cost_usd) FROM traces"
            " WHERE first_seen >= %s AND first_seen <= %s"
            " AND environment <> ALL(%s) GROUP BY domain",
            (since, now, sorted(exclude)),
        ).fetchall()
    assert spend.keys() == {domain for domain, _ in from_rows}
    for domain, cost in from_rows:
        assert abs(spend[domain] - cost) <= 1e-9 * max(1.0, cost), domain
    times = _timed(lambda: store.domain_spend(since, now, exclude), rounds)
    report_times = _timed(lambda: store.transaction_totals(since, now, limit=10), 10)
    allocation = _allocation_queries(dsn, store, now, rounds=200)
    store.close()
    return {
        **allocation,
        "trace_rows": rows,
        "rollup_rows": rollup_rows[0] if rollup_rows else None,
        "load_seconds": round(load_s, 1),
        "domains": len(spend),
        "rounds": rounds,
        "domain_spend_ms_median": round(statistics.median(times), 3),
        "domain_spend_ms_p99": round(sorted(times)[int(len(times) * 0.99) - 1], 3),
        "transaction_totals_24h_ms_median": round(statistics.median(report_times), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200, help="batches per writer")
    parser.add_argument(
        "--write-rounds", type=int, default=3, help="runs of each writer set-up (median kept)"
    )
    parser.add_argument("--batch-spans", type=int, default=1000)
    parser.add_argument("--rows", type=int, default=10_000_000, help="trace rows for the rollup")
    parser.add_argument("--rounds", type=int, default=2000, help="domain_spend calls timed")
    parser.add_argument("--skip-rollup", action="store_true")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where the JSON goes")
    parser.add_argument(
        "--usage",
        action="store_true",
        help="spans carry their pod and roots start segments (the allocation's busy time)",
    )
    parser.add_argument(
        "--setups",
        default="",
        help="comma-separated write set-ups to run (e.g. 2-processes); default: all",
    )
    parser.add_argument(
        "--migration-traces", type=int, default=200_000, help="traces for migration 4 (0: skip)"
    )
    arguments = parser.parse_args()

    pg = _pg_module()
    results: dict[str, Any] = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{os.cpu_count()} CPUs, {platform.machine()},"
        f" Python {platform.python_version()}",
    }
    with pg.postgres_server() as server:
        with psycopg.connect(server, autocommit=True) as connection:
            connection.execute("ALTER SYSTEM SET fsync = on")
            connection.execute("SELECT pg_reload_conf()")
            version = connection.execute("SHOW server_version").fetchone()
        results["postgresql"] = version[0] if version else "?"
        setups = [
            ("1-thread", 1, False, False),
            ("2-threads", 2, False, False),
            ("4-threads", 4, False, False),
            ("2-processes", 2, True, False),
            ("4-processes", 4, True, False),
            ("2-processes-split", 2, True, True),
        ]
        if arguments.setups:
            wanted = set(arguments.setups.split(","))
            unknown = wanted - {label for label, *_ in setups}
            if unknown:
                parser.error(f"unknown set-ups: {', '.join(sorted(unknown))}")
            setups = [setup for setup in setups if setup[0] in wanted]
        runs: dict[str, list[dict[str, Any]]] = {label: [] for label, *_ in setups}
        # Rounds interleave the set-ups, so a slow minute of the VM hits each alike.
        for round_ in range(arguments.write_rounds):
            for label, writers, processes, split in setups:
                outcome = write_throughput(
                    server,
                    f"{label.replace('-', '_')}_{round_}",
                    writers=writers,
                    processes=processes,
                    batches=arguments.batches,
                    batch_spans=arguments.batch_spans,
                    split=split,
                    usage=arguments.usage,
                )
                runs[label].append(outcome)
                print(json.dumps(outcome), file=sys.stderr, flush=True)
        writes = []
        for label, *_ in setups:
            ordered = sorted(runs[label], key=lambda outcome: outcome["traces_per_s"])
            median = dict(ordered[len(ordered) // 2])
            median["traces_per_s_runs"] = [outcome["traces_per_s"] for outcome in runs[label]]
            writes.append(median)
        results["writes"] = writes
        if arguments.migration_traces > 0:
            results["migration_4"] = migration_4(server, arguments.migration_traces)
            print(json.dumps(results["migration_4"]), file=sys.stderr, flush=True)
        if not arguments.skip_rollup:
            results["rollup"] = rollup_query(server, arguments.rows, arguments.rounds)
            print(json.dumps(results["rollup"]), file=sys.stderr, flush=True)
    arguments.results.parent.mkdir(exist_ok=True)
    arguments.results.write_text(json.dumps(results, indent=1) + "\n")
    _print_results(results)


def _print_results(results: dict[str, Any]) -> None:
    print(f"PostgreSQL {results['postgresql']}, {results['machine']}, {results['date']}\n")
    print(
        "| writers | traces/s (median) | spans/s | ms per batch (per writer)"
        " | CPU µs per trace: writers / server | traces/s, every run |"
    )
    print("|---|---:|---:|---:|---:|---|")
    for outcome in results["writes"]:
        every = " · ".join(f"{count:,}" for count in outcome["traces_per_s_runs"])
        split = ", traces split in two batches" if outcome["split"] else ""
        split += ", spans with pods and segments" if outcome["usage"] else ""
        print(
            f"| {outcome['writers']} {outcome['kind']}{split} | {outcome['traces_per_s']:,} |"
            f" {outcome['spans_per_s']:,} | {outcome['ms_per_batch']} |"
            f" {outcome['writer_cpu_us_per_trace']} / {outcome['server_cpu_us_per_trace']} |"
            f" {every} |"
        )
    if "migration_4" in results:
        migration = results["migration_4"]
        print(
            f"\nmigration 3 -> 4 of {migration['traces']:,} traces ({migration['spans']:,} spans):"
            f" {migration['seconds']} s"
        )
    if "rollup" in results:
        rollup = results["rollup"]
        print(
            f"\ndomain_spend over 24 h with {rollup['trace_rows']:,} trace rows"
            f" ({rollup['rollup_rows']:,} rollup rows, loaded in {rollup['load_seconds']} s):"
            f" median {rollup['domain_spend_ms_median']} ms,"
            f" p99 {rollup['domain_spend_ms_p99']} ms over {rollup['rounds']} calls;"
            f" transaction_totals (24 h, trace rows) median"
            f" {rollup['transaction_totals_24h_ms_median']} ms"
        )


if __name__ == "__main__":
    main()
