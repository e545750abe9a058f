"""`make bench`: the same otelcol-spancost with and without the python processor.

For each pipeline it measures, in one run:
- the highest sustained span rate with no drops: spancost-loadgen (our own
  OTLP/gRPC generator, collector/cmd/spancost-loadgen) unthrottled to find the
  capacity, then at 95% of it (stepping down by 5%) until a step passes:
  every span sent was acknowledged, accepted and exported, none refused, and
  the rate reached 95% of its target;
- CPU seconds per million spans (collector + sidecar) at the highest passing step;
- p50/p99 latency of exporting one 1,000-span batch at 20 batches a second
  (the OTLP/gRPC call returns once the batch has passed the processors and
  entered the batch processor), and the difference;
- RSS of the collector and the sidecar, idle and at the end of the load.
Results go to bench-results/pipeline.json and a Markdown table on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

from tests.e2e.harness import ROOT, Collector, base_config, free_port

LOADGEN = Path(os.environ.get("LOADGEN", ROOT / "_build" / "spancost-loadgen"))


def pipeline_config(name: str) -> dict[str, Any]:
    """baseline: no python; python / python_full: spancost.environment in the fast /
    full form; python_cost: spancost.cost (every span an EC2 local root, priced)."""
    with_python = name != "baseline"
    answer_form = "full" if name == "python_full" else "auto"
    cfg = base_config(free_port(), plugin_config={"drop": ["ci", "staging"]})
    cfg["extensions"]["python"]["command"] += ["--answer-form", answer_form]
    cfg["processors"]["batch"] = {}
    if name == "python_cost":
        cfg["processors"]["python/env"].update(plugin="spancost.cost", config={}, timeout="1s")
    cfg["exporters"] = {
        "debug": {
            "verbosity": "basic",
            "sampling_initial": 1,
            "sampling_thereafter": 1000,
        }
    }
    processors = ["python/env", "batch"] if with_python else ["batch"]
    cfg["service"]["pipelines"]["traces"] = {
        "receivers": ["otlp"],
        "processors": processors,
        "exporters": ["debug"],
    }
    cfg["service"]["telemetry"]["logs"] = {"level": "warn"}
    if not with_python:
        del cfg["processors"]["python/env"]
        del cfg["extensions"]
        cfg["service"]["extensions"] = []
    return cfg


def processes(c: Collector) -> list[psutil.Process]:
    assert c.proc is not None
    main = psutil.Process(c.proc.pid)
    return [main, *main.children(recursive=True)]


def cpu_seconds(procs: list[psutil.Process]) -> float:
    return sum(p.cpu_times().user + p.cpu_times().system for p in procs)


def rss_mib(p: psutil.Process) -> float:
    return p.memory_info().rss / 2**20


def loadgen(
    c: Collector,
    *,
    rate: float,
    seconds: float,
    batch: int = 512,
    workers: int = 4,
    trace_size: int = 1,
    pre_encoded: int = 0,
) -> dict[str, Any]:
    """One spancost-loadgen run against `c`; its JSON result."""
    out = subprocess.run(  # noqa: S603 - our own tool
        [
            str(LOADGEN),
            "-endpoint",
            c.grpc_endpoint,
            "-rate",
            str(rate),
            "-duration",
            f"{seconds}s",
            "-batch",
            str(batch),
            "-workers",
            str(workers),
            "-trace-size",
            str(trace_size),
            "-pre-encoded",
            str(pre_encoded),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return dict(json.loads(out.stdout))


def load_step(
    c: Collector, spans_per_s: float, seconds: float, trace_size: int = 1
) -> dict[str, Any]:
    """One run at a fixed rate (0: as fast as the collector acknowledges)."""
    time.sleep(1.5)  # let the batch processor flush what came before
    accepted0 = c.metric("otelcol_receiver_accepted_spans")
    exported0 = c.metric("otelcol_exporter_sent_spans")
    refused0 = c.metric("otelcol_receiver_refused_spans")
    procs = processes(c)
    cpu0 = cpu_seconds(procs)
    gen = loadgen(c, rate=spans_per_s, seconds=seconds, trace_size=trace_size)
    time.sleep(1.5)
    cpu = cpu_seconds(procs) - cpu0
    accepted = c.metric("otelcol_receiver_accepted_spans") - accepted0
    exported = c.metric("otelcol_exporter_sent_spans") - exported0
    refused = c.metric("otelcol_receiver_refused_spans") - refused0
    achieved = gen["acked_spans"] / gen["elapsed_s"]
    return {
        "target": round(spans_per_s),
        "sent": gen["sent_spans"],
        "acked": gen["acked_spans"],
        "accepted": accepted,
        "exported": exported,
        "refused": refused,
        "failed_calls": gen["failed_calls"],
        "achieved": round(achieved),
        "cpu_s_per_million": cpu / max(accepted, 1) * 1e6,
        "ok": gen["failed_calls"] == 0
        and refused == 0
        and accepted == gen["sent_spans"] == exported
        and (spans_per_s == 0 or achieved >= 0.95 * spans_per_s),
        "rss_mib": {p.pid: round(rss_mib(p), 1) for p in procs},
    }


def latency(c: Collector, seconds: float) -> dict[str, float]:
    """One sender, 1,000-span batches, 20 a second: the latency of a quiet pipeline."""
    gen = loadgen(c, rate=20_000, seconds=seconds, batch=1000, workers=1)
    return {
        "p50_ms": round(gen["p50_ms"], 3),
        "p99_ms": round(gen["p99_ms"], 3),
        "samples": gen["requests"],
    }


def measure(name: str, seconds: float) -> dict[str, Any]:
    """Capacity first (unthrottled), then the highest rate that holds with no drops."""
    workdir = Path(tempfile.mkdtemp(prefix="spancost-bench-"))
    c = Collector(pipeline_config(name), workdir).start()
    try:
        time.sleep(2)
        procs = processes(c)
        idle = {
            "collector": rss_mib(procs[0]),
            "sidecar": rss_mib(procs[1]) if len(procs) > 1 else None,
        }
        lat = latency(c, seconds)
        probe = load_step(c, 0, seconds)
        print(f"  {name}: unthrottled {probe['achieved']:,} spans/s", flush=True)
        steps, rate = [], probe["achieved"] * 0.95
        for _ in range(10):
            step = load_step(c, rate, seconds)
            steps.append(step)
            print(
                f"  {name}: {step['target']:>8,} spans/s -> {step['achieved']:>8,} ok={step['ok']}",
                flush=True,
            )
            if step["ok"]:
                break
            rate *= 0.95
        best = next((s for s in steps if s["ok"]), None)
        loaded = {
            "collector": rss_mib(procs[0]),
            "sidecar": rss_mib(procs[1]) if len(procs) > 1 else None,
        }
        return {
            "latency": lat,
            "probe": probe,
            "steps": steps,
            "best": best,
            "rss_idle_mib": idle,
            "rss_loaded_mib": loaded,
        }
    finally:
        c.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=10, help="length of each load step")
    args = ap.parse_args()
    results = {
        "machine": {
            "cpu": _cpu_model(),
            "cores": psutil.cpu_count(),
            "mem_gib": round(psutil.virtual_memory().total / 2**30),
            "python": platform.python_version(),
        },
        "baseline": measure("baseline", args.seconds),
        "python": measure("python", args.seconds),
        "python_full": measure("python_full", args.seconds),
        "python_cost": measure("python_cost", args.seconds),
    }
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "pipeline.json").write_text(json.dumps(results, indent=2))
    print(table(results))


def _cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def table(r: dict[str, Any]) -> str:
    names = ("baseline", "python", "python_full", "python_cost")

    def best(x: dict[str, Any], key: str) -> str:
        if x["best"] is None:
            return "n/a"
        return f"{x['best'][key]:,.0f}" if key == "achieved" else f"{x['best'][key]:.2f}"

    def rss(x: dict[str, Any], who: str) -> str:
        if x["rss_idle_mib"][who] is None:
            return "-"
        return f"{x['rss_idle_mib'][who]:.0f} / {x['rss_loaded_mib'][who]:.0f}"

    rows = [
        (
            "highest sustained spans/s, no drops",
            [best(r[n], "achieved") for n in names],
        ),
        (
            "CPU seconds per million spans",
            [best(r[n], "cpu_s_per_million") for n in names],
        ),
        (
            "1,000-span batch latency p50 (ms)",
            [f"{r[n]['latency']['p50_ms']:.2f}" for n in names],
        ),
        (
            "1,000-span batch latency p99 (ms)",
            [f"{r[n]['latency']['p99_ms']:.2f}" for n in names],
        ),
        ("collector RSS idle / loaded (MiB)", [rss(r[n], "collector") for n in names]),
        ("sidecar RSS idle / loaded (MiB)", [rss(r[n], "sidecar") for n in names]),
    ]
    lines = [
        "| measure | without python | python/env, fast form | python/env, full form "
        "| python/cost (fast form) |",
        "|---|---:|---:|---:|---:|",
    ]
    lines += [f"| {label} | " + " | ".join(cells) + " |" for label, cells in rows]
    b = r["baseline"]
    for n in names[1:]:
        x = r[n]
        ratio = (
            (x["best"]["achieved"] / b["best"]["achieved"])
            if x["best"] and b["best"]
            else float("nan")
        )
        capacity = x["probe"]["achieved"] / b["probe"]["achieved"]
        lines.append(
            f"\n{n}: {ratio:.0%} of the baseline's sustained rate "
            f"({capacity:.0%} of its capacity); "
            "added latency per 1,000-span batch "
            f"p50 {x['latency']['p50_ms'] - b['latency']['p50_ms']:.2f} ms, "
            f"p99 {x['latency']['p99_ms'] - b['latency']['p99_ms']:.2f} ms"
        )
    lines.append(f"\nmachine: {r['machine']}")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
