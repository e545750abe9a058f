"""`make bench`: the trace-totals path end to end (issue #4).

The real collector with python/cost, the batch processor at its defaults and the
stock otlp_grpc exporter into the sidecar's totals sink, on a private PostgreSQL
15 this script starts:

- visibility: a trace is sent every 0.5 s; the time from its spans' end to its row
  being readable in ``traces`` (polled every 10 ms), over 40 traces;
- throughput: 200,000 spans (40,000 traces of 5 spans) sent as fast as two
  clients can, then the time until every one is stored: spans and trace totals
  stored per second through the whole path (collector, exporter, sidecar, sink,
  PostgreSQL), not the store alone (bench/bench_store.py measures that).

Results go to bench-results/totals_path.json and Markdown on stdout.
"""

from __future__ import annotations

import json
import os
import platform
import random
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from tests.e2e.harness import ROOT, Collector, free_port
from tests.e2e.raw import RawClient
from tests.e2e.totals import make_trace, new_database, pg, request, socket_dir, totals_config


def config(url: str) -> dict[str, Any]:
    cfg = totals_config(free_port(), socket_dir() / "s.sock", url)
    cfg["processors"]["batch"] = {}
    cfg["exporters"]["otlp_grpc/totals"].update(timeout="5s")
    cfg["exporters"]["otlp_grpc/totals"]["retry_on_failure"] = {"enabled": True}
    cfg["exporters"]["otlp_grpc/totals"]["sending_queue"] = {"enabled": True}
    cfg["exporters"].pop("otlp_grpc")
    pipeline = cfg["service"]["pipelines"]["traces"]
    pipeline["processors"] = ["python/cost", "batch"]
    pipeline["exporters"] = ["otlp_grpc/totals"]
    cfg["service"]["telemetry"]["logs"] = {"level": "warn"}
    return cfg


def visibility(c: Collector, url: str, traces: int = 40) -> list[float]:
    client = RawClient(c.grpc_endpoint)
    rng = random.Random(1)
    latencies = []
    with psycopg.connect(url, autocommit=True) as db:
        for _ in range(traces):
            spans = make_trace(rng, 3)
            end_ns = max(span.end_time_unix_nano for span in spans)
            trace_id = spans[0].trace_id.hex()
            client.export(request(spans))
            while not db.execute(
                "SELECT 1 FROM traces WHERE trace_id = %s AND span_count = 3", (trace_id,)
            ).fetchone():
                time.sleep(0.01)
            latencies.append((time.time_ns() - end_ns) / 1e9)
            time.sleep(0.5)
    client.close()
    return latencies


def stored_spans(url: str) -> int:
    with psycopg.connect(url) as db:
        (spans,) = db.execute("SELECT coalesce(sum(span_count), 0) FROM traces").fetchone()
    return int(spans)


def throughput(c: Collector, url: str, spans: int = 200_000) -> dict[str, float]:
    before = stored_spans(url)
    per_batch, clients = 1000, 2
    batches = spans // per_batch

    def send(seed: int) -> None:
        rng = random.Random(seed)
        client = RawClient(c.grpc_endpoint)
        for _ in range(batches // clients):
            client.export(request([s for _ in range(per_batch // 5) for s in make_trace(rng, 5)]))
        client.close()

    began = time.monotonic()
    threads = [threading.Thread(target=send, args=(seed,)) for seed in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    sent = time.monotonic() - began
    while stored_spans(url) - before < spans:
        time.sleep(0.05)
    elapsed = time.monotonic() - began
    return {
        "spans": spans,
        "send_seconds": round(sent, 2),
        "stored_seconds": round(elapsed, 2),
        "spans_per_second": round(spans / elapsed),
        "traces_per_second": round(spans / 5 / elapsed),
    }


def main() -> None:
    with pg.running_postgres() as server:
        url = new_database(server)
        workdir = Path(tempfile.mkdtemp(prefix="spancost-bench-totals-"))
        c = Collector(config(url), workdir).start()
        try:
            lat = sorted(visibility(c, url))
            result: dict[str, Any] = {
                "machine": f"{platform.machine()}, {len(os.sched_getaffinity(0))} cpus",
                "visibility_seconds": {
                    "median": round(statistics.median(lat), 3),
                    "p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 3),
                    "max": round(lat[-1], 3),
                    "n": len(lat),
                },
                "throughput": throughput(c, url),
            }
        finally:
            c.stop()
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "totals_path.json").write_text(json.dumps(result, indent=2))
    v, t = result["visibility_seconds"], result["throughput"]
    print("| measure | value |\n| --- | --- |")
    print(
        f"| span end → visible in `traces`, median / p99 / max (n={v['n']}) |"
        f" {v['median']} s / {v['p99']} s / {v['max']} s |"
    )
    print(f"| spans stored per second through the whole path | {t['spans_per_second']:,} |")
    print(
        f"| trace totals (5-span traces) per second through the whole path |"
        f" {t['traces_per_second']:,} |"
    )


if __name__ == "__main__":
    main()
