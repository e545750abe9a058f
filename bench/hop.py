"""`make bench`: what the Python hop costs with the shipped chain (issue #15).

The same otelcol-spancost in four pipelines, each measured in one run:

- ``stock``: otlp → batch → debug (no python);
- ``noop``: otlp → python/noop → batch → debug, where python/noop is
  spancost.environment with nothing to drop or tag: the hop itself (encoding, gRPC
  both ways, parsing, an empty answer applied) with next to no plugin work, the floor
  under ``chain``;
- ``chain``: otlp → python/spancost (spancost.chain of spancost.environment and
  spancost.cost, configured as configs/local.yaml configures it) → batch → debug;
- ``chain+sink``: the same, and the trace-totals path of configs/local.yaml as
  well: the stock otlp_grpc exporter, its queue, into the sidecar's totals sink
  on SQLite (a fresh database in a temporary directory).

The load is spancost-loadgen's pre-encoded mode (the generator encodes a pool of
requests once, then only patches fresh IDs in, so it takes little of the two
cores): 510-span requests, 51 traces of 10 spans each (a SERVER local root and
nine INTERNAL children) on one EKS node resource that spancost.cost prices as EC2.

For each pipeline:

- capacity: spans/s acknowledged, 4 senders unthrottled, `--seconds` long;
- CPU per span at a fixed 20,000 spans/s: user + system seconds of the collector,
  the sidecar and its children, from the first request until every span was
  exported (the totals sink included), over the spans accepted;
- p50/p99 of one 1,000-span request (one sender, 20 requests a second) on a quiet
  pipeline; for ``chain+sink`` also while the sink ingests at full speed (a burst
  sent first fills the exporter's queue; the latency is measured while it drains);
- the sink's rate: spans (and traces) it stored per second while draining the
  burst;
- RSS of the collector and the sidecar (and the sink's process, if any) at idle.

Results go to bench-results/hop.json and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import platform
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import yaml

from bench import pipeline
from bench.pipeline import cpu_seconds, processes
from tests.e2e.harness import ROOT, Collector, base_config, free_port

BATCH = 510
TRACE_SIZE = 10
POOL = 64
FIXED_RATE = 20_000
BURST_RATE = 200_000  # spans/s for 3 s: the totals exporter's backlog
PIPELINES = ("stock", "noop", "chain", "chain+sink")


def shipped_chain() -> dict[str, Any]:
    """python/spancost exactly as configs/local.yaml has it."""
    local = yaml.safe_load((ROOT / "configs" / "local.yaml").read_text())
    return copy.deepcopy(local["processors"]["python/spancost"])


def pipeline_config(name: str, workdir: Path) -> dict[str, Any]:
    cfg = base_config(free_port())
    cfg["processors"] = {"batch": {}}
    cfg["exporters"] = {
        "debug": {"verbosity": "basic", "sampling_initial": 1, "sampling_thereafter": 100_000}
    }
    pipeline: dict[str, Any] = {
        "receivers": ["otlp"],
        "processors": ["batch"],
        "exporters": ["debug"],
    }
    cfg["service"]["pipelines"] = {"traces": pipeline}
    cfg["service"]["telemetry"]["logs"] = {"level": "warn"}
    if name == "stock":
        del cfg["extensions"]
        cfg["service"]["extensions"] = []
        return cfg
    # The extension as shipped: its own defaults (base_config's are tuned for tests:
    # a health check every 200 ms would be paid here as CPU per span).
    cfg["extensions"]["python"] = {"command": cfg["extensions"]["python"]["command"]}
    if name == "noop":
        cfg["processors"]["python/noop"] = {
            **{k: v for k, v in shipped_chain().items() if k not in ("plugin", "config")},
            "plugin": "spancost.environment",
            "config": {},
        }
        pipeline["processors"] = ["python/noop", "batch"]
        return cfg
    cfg["processors"]["python/spancost"] = shipped_chain()
    pipeline["processors"] = ["python/spancost", "batch"]
    if name == "chain+sink":
        socket = Path(tempfile.mkdtemp(prefix="spc-", dir="/tmp")) / "s.sock"
        endpoint = f"unix://{socket}"
        cfg["extensions"]["python"].update(
            endpoint=endpoint,
            sinks={
                "totals": {
                    "plugin": "spancost.totals",
                    "config": {
                        "database_url": f"sqlite:{workdir / 'totals.db'}",
                        "transaction": {"attribute": "business.transaction"},
                    },
                }
            },
        )
        cfg["exporters"]["otlp_grpc/totals"] = {
            "endpoint": endpoint,
            "tls": {"insecure": True},
            "compression": "none",
            "headers": {"spancost-sink": "totals"},
            "sending_queue": {"enabled": True, "queue_size": 8_000_000, "sizer": "items"},
            "retry_on_failure": {"enabled": True, "max_elapsed_time": "0s"},
        }
        pipeline["exporters"] = ["debug", "otlp_grpc/totals"]
    return cfg


def loadgen(
    c: Collector, *, rate: float, seconds: float, batch: int = BATCH, workers: int = 4
) -> dict[str, Any]:
    return pipeline.loadgen(
        c,
        rate=rate,
        seconds=seconds,
        batch=batch,
        workers=workers,
        trace_size=TRACE_SIZE,
        pre_encoded=POOL,
    )


def rss_mib(procs: list[psutil.Process]) -> list[float]:
    return [round(p.memory_info().rss / 2**20, 1) for p in procs]


def count(c: Collector, name: str, exporter: str) -> float:
    """An exporter's counter; 0 while the collector has no series of it."""
    with contextlib.suppress(AssertionError):
        return c.metric(name, exporter=exporter)
    return 0.0


def exported(c: Collector, exporter: str) -> float:
    """Spans `exporter` sent, and those it could not queue."""
    return count(c, "otelcol_exporter_sent_spans", exporter) + count(
        c, "otelcol_exporter_enqueue_failed_spans", exporter
    )


def drained(c: Collector, accepted: float, sink: bool, timeout: float = 300) -> float:
    """Wait until every accepted span left through every exporter; the time it took."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        done = exported(c, "debug") >= accepted and (
            not sink or exported(c, "otlp_grpc/totals") >= accepted
        )
        if done:
            return time.monotonic() - began
        time.sleep(0.05)
    raise TimeoutError(f"{accepted:.0f} spans not all exported after {timeout:.0f} s")


def cpu_at_fixed_rate(c: Collector, seconds: float, sink: bool) -> dict[str, float]:
    procs = processes(c)
    accepted0 = c.metric("otelcol_receiver_accepted_spans")
    cpu0 = cpu_seconds(procs)
    gen = loadgen(c, rate=FIXED_RATE, seconds=seconds)
    accepted = c.metric("otelcol_receiver_accepted_spans")
    drained(c, accepted, sink)
    time.sleep(0.3)  # the batch processor's and the sink's last flush
    cpu = cpu_seconds(procs) - cpu0
    spans = accepted - accepted0
    return {
        "achieved": round(gen["acked_spans"] / gen["elapsed_s"]),
        "failed_calls": gen["failed_calls"],
        "spans": spans,
        "cpu_us_per_span": round(cpu / max(spans, 1) * 1e6, 2),
    }


def latency(c: Collector, seconds: float) -> dict[str, float]:
    gen = loadgen(c, rate=20_000, seconds=seconds, batch=1000, workers=1)
    return {
        "p50_ms": round(gen["p50_ms"], 2),
        "p99_ms": round(gen["p99_ms"], 2),
        "n": gen["requests"],
    }


def while_sink_busy(c: Collector, seconds: float) -> dict[str, Any]:
    """A burst fills the totals exporter's queue; latency is measured while the sink
    drains it, and the sink's rate from the drain."""
    time.sleep(1)
    sent0 = exported(c, "otlp_grpc/totals")
    burst = loadgen(c, rate=BURST_RATE, seconds=3)
    accepted = c.metric("otelcol_receiver_accepted_spans")
    backlog = accepted - exported(c, "otlp_grpc/totals")
    result: dict[str, Any] = {}

    def measure() -> None:
        result["latency"] = latency(c, seconds)

    t = threading.Thread(target=measure)
    began = time.monotonic()
    t.start()
    took = drained(c, accepted, sink=True)
    stored = exported(c, "otlp_grpc/totals") - sent0
    t.join()
    result["latency_measured_while_draining"] = time.monotonic() - began >= seconds
    result.update(
        burst_spans=burst["acked_spans"],
        backlog_spans=backlog,
        drain_s=round(took, 2),
        sink_spans_per_s=round(backlog / max(took, 1e-9)),
        sink_traces_per_s=round(backlog / TRACE_SIZE / max(took, 1e-9)),
        stored=stored,
    )
    return result


def measure(name: str, seconds: float) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="spancost-hop-"))
    c = Collector(pipeline_config(name, workdir), workdir).start()
    try:
        time.sleep(2)
        procs = processes(c)
        out: dict[str, Any] = {
            "rss_idle_mib": rss_mib(procs),
            "processes": [p.name() for p in procs],
        }
        out["latency"] = latency(c, seconds)
        out["cpu"] = cpu_at_fixed_rate(c, seconds, sink=name == "chain+sink")
        time.sleep(1)
        cap = loadgen(c, rate=0, seconds=seconds)
        out["capacity"] = round(cap["acked_spans"] / cap["elapsed_s"])
        out["capacity_failed_calls"] = cap["failed_calls"]
        if name == "chain+sink":
            drained(c, c.metric("otelcol_receiver_accepted_spans"), sink=True)
            out["sink_enqueue_failed"] = count(
                c, "otelcol_exporter_enqueue_failed_spans", "otlp_grpc/totals"
            )
            out["sink_busy"] = while_sink_busy(c, seconds)
        print(f"  {name}: {json.dumps(out)}", flush=True)
        return out
    finally:
        c.stop()


def table(r: dict[str, Any]) -> str:
    names = [n for n in PIPELINES if n in r]
    stock = r.get("stock")
    rows = [
        ("capacity, spans/s (4 senders, unthrottled)", [f"{r[n]['capacity']:,}" for n in names]),
        (
            f"CPU µs per span at {FIXED_RATE:,} spans/s",
            [f"{r[n]['cpu']['cpu_us_per_span']:.2f}" for n in names],
        ),
        (
            "1,000-span request p50 / p99 (ms), quiet",
            [f"{r[n]['latency']['p50_ms']:.2f} / {r[n]['latency']['p99_ms']:.2f}" for n in names],
        ),
        (
            "RSS at idle (MiB): collector, sidecar, ...",
            [" / ".join(f"{m:.0f}" for m in r[n]["rss_idle_mib"]) for n in names],
        ),
    ]
    lines = ["| measure | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    if stock:
        for n in names[1:]:
            lines.append(
                f"\n{n}: {r[n]['capacity'] / stock['capacity']:.2f} times the stock capacity; "
                f"p99 {r[n]['latency']['p99_ms'] - stock['latency']['p99_ms']:+.2f} ms over stock"
            )
    busy = r.get("chain+sink", {}).get("sink_busy")
    if busy:
        lat = busy["latency"]
        extra = (
            f" ({lat['p99_ms'] - stock['latency']['p99_ms']:+.2f} ms over stock)" if stock else ""
        )
        lines.append(
            f"\nwhile the sink drains {busy['backlog_spans']:,.0f} spans: p50 / p99 "
            f"{lat['p50_ms']:.2f} / {lat['p99_ms']:.2f} ms{extra}; the sink stored "
            f"{busy['sink_spans_per_s']:,} spans/s ({busy['sink_traces_per_s']:,} traces/s)"
        )
    lines.append(f"\nmachine: {r['machine']}")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10, help="length of each load step")
    ap.add_argument(
        "--only", choices=PIPELINES, action="append", help="measure only these pipelines"
    )
    args = ap.parse_args()
    results: dict[str, Any] = {
        "machine": {
            "cores": psutil.cpu_count(),
            "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d %H:%M"),
        }
    }
    for name in args.only or PIPELINES:
        results[name] = measure(name, args.seconds)
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "hop.json").write_text(json.dumps(results, indent=2))
    print(table(results))


if __name__ == "__main__":
    main()
