"""Compares the sidecar's server modes (threads vs asyncio) end to end.

For each mode it starts ``spancost sidecar`` as a subprocess on a unix socket,
configures the ``spancost.environment`` plugin, and has a few client threads
send 1,000-span batches back to back over gRPC (raw bytes, so the client does
as little work as possible). It prints round-trip p50/p99 latency and
throughput per mode as a markdown table.

    .venv/bin/python -m bench.bench_server_modes

Batch layouts (``--layout``):
``resource``  the environment is a resource attribute (the usual case): one
              decision per ResourceSpans; 1 in 4 resources is dropped, 1 in 4 tagged.
``span``      the environment is only on the spans: every span is visited.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
from grpc_health.v1 import health_pb2, health_pb2_grpc
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, Span
from spancost.wire.v1 import sidecar_pb2

ENVIRONMENTS = ("prod", "ci", "staging", "dev")
PLUGIN_CONFIG = {
    "drop": ["ci"],
    "tag": {"staging": {"env.tier": "pre-production", "env.billable": False}},
}
PROCESS_METHOD = "/spancost.wire.v1.Sidecar/ProcessTraces"


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


def make_batch(spans: int, resources: int, layout: str) -> ExportTraceServiceRequest:
    """`spans` realistic server/client spans spread evenly over `resources` resources."""
    request = ExportTraceServiceRequest()
    per_resource = spans // resources
    n = 0
    for r in range(resources):
        env = ENVIRONMENTS[r % len(ENVIRONMENTS)]
        rs: ResourceSpans = request.resource_spans.add()
        resource_attrs = {
            "service.name": f"service-{r}",
            "service.version": "1.4.2",
            "cloud.provider": "aws",
            "cloud.platform": "aws_eks",
            "cloud.region": "eu-west-1",
            "host.type": "m6i.large",
            "k8s.namespace.name": "shop",
            "k8s.pod.name": f"service-{r}-7d9f8b6c5-x2x9z",
        }
        if layout == "resource":
            resource_attrs["deployment.environment.name"] = env
        rs.resource.attributes.extend(_kv(k, v) for k, v in resource_attrs.items())
        scope = rs.scope_spans.add()
        scope.scope.name = "io.opentelemetry.instrumentation.http"
        scope.scope.version = "2.10.0"
        for i in range(per_resource):
            n += 1
            span: Span = scope.spans.add()
            span.trace_id = (n // 10 + 1).to_bytes(16, "big")
            span.span_id = n.to_bytes(8, "big")
            span.parent_span_id = (n - 1).to_bytes(8, "big") if i % 10 else b""
            span.name = f"GET /api/items/{i % 20}"
            span.kind = Span.SPAN_KIND_SERVER
            span.start_time_unix_nano = 1_700_000_000_000_000_000 + n * 1000
            span.end_time_unix_nano = span.start_time_unix_nano + 250_000
            attrs: dict[str, str | int | bool] = {
                "http.request.method": "GET",
                "http.route": "/api/items/{id}",
                "http.response.status_code": 200,
                "url.path": f"/api/items/{i}",
                "server.address": "shop.example.com",
                "network.protocol.version": "1.1",
                "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64)",
                "client.address": "10.1.2.3",
            }
            if layout == "span":
                attrs["deployment.environment.name"] = ENVIRONMENTS[(r + i) % len(ENVIRONMENTS)]
            span.attributes.extend(_kv(k, v) for k, v in attrs.items())
            if i % 10 == 0:
                span.events.add(name="cache.miss", time_unix_nano=span.start_time_unix_nano + 5)
    return request


@dataclass
class Result:
    mode: str
    layout: str
    latencies: list[float]
    elapsed: float
    spans_per_batch: int
    server_cpu_seconds: float

    def row(self) -> str:
        ordered = sorted(self.latencies)
        p50 = statistics.median(ordered) * 1000
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000
        rate = len(ordered) / self.elapsed
        cpu_ms = self.server_cpu_seconds / max(1, len(ordered)) * 1000
        return (
            f"| {self.mode} | {self.layout} | {len(ordered)} | {p50:.2f} | {p99:.2f} | "
            f"{rate:.0f} | {rate * self.spans_per_batch:,.0f} | {cpu_ms:.2f} |"
        )


def start_sidecar(mode: str, socket_path: Path, workers: int) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "spancost", "sidecar", f"--listen=unix://{socket_path}"]
    args += [f"--server-mode={mode}", f"--workers={workers}", "--log-level=warning"]
    process = subprocess.Popen(args)  # noqa: S603 - this interpreter, our own package
    with grpc.insecure_channel(f"unix://{socket_path}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                health.Check(health_pb2.HealthCheckRequest(), timeout=0.5)
                return process
            except grpc.RpcError:
                time.sleep(0.05)
    process.kill()
    raise SystemExit(f"sidecar ({mode}) did not start")


def run_mode(mode: str, layout: str, args: argparse.Namespace, payload: bytes) -> Result:
    with tempfile.TemporaryDirectory(prefix="spancost-bench-") as tmp:
        socket_path = Path(tmp) / "sidecar.sock"
        process = start_sidecar(mode, socket_path, args.workers)
        try:
            return _drive(mode, layout, args, payload, f"unix://{socket_path}", process.pid)
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def _drive(  # noqa: PLR0917
    mode: str, layout: str, args: argparse.Namespace, payload: bytes, target: str, pid: int
) -> Result:
    options = [("grpc.max_receive_message_length", 64 * 1024 * 1024)]
    with grpc.insecure_channel(target, options=options) as channel:
        channel.unary_unary("/spancost.wire.v1.Sidecar/Configure", None, None)(
            sidecar_pb2.ConfigureRequest(
                instance="python/env",
                plugin="spancost.environment",
                config_json=json.dumps(PLUGIN_CONFIG),
            ).SerializeToString(),
            timeout=10,
        )
    request = sidecar_pb2.ProcessTracesRequest(instance="python/env", traces=payload)
    raw = request.SerializeToString()
    start_measuring = time.monotonic() + args.warmup
    stop_at = start_measuring + args.duration
    latencies: list[list[float]] = [[] for _ in range(args.clients)]

    def client(index: int) -> None:
        # One connection per client, as several collector pipelines would open.
        with grpc.insecure_channel(target, options=options) as channel:
            call = channel.unary_unary(PROCESS_METHOD, None, None)  # raw bytes in and out
            while True:
                began = time.perf_counter()
                call(raw, timeout=30)
                took = time.perf_counter() - began
                now = time.monotonic()
                if now >= stop_at:
                    return
                if now >= start_measuring:
                    latencies[index].append(took)

    server = psutil.Process(pid)
    cpu: list[float] = []

    def sample_cpu(at: float) -> None:
        time.sleep(max(0.0, at - time.monotonic()))
        times = server.cpu_times()
        cpu.append(times.user + times.system)

    samplers = [
        threading.Thread(target=sample_cpu, args=(start_measuring,)),
        threading.Thread(target=sample_cpu, args=(stop_at,)),
    ]
    threads = [threading.Thread(target=client, args=(i,)) for i in range(args.clients)]
    for thread in [*threads, *samplers]:
        thread.start()
    for thread in [*threads, *samplers]:
        thread.join()
    merged = [latency for per_client in latencies for latency in per_client]
    return Result(mode, layout, merged, args.duration, args.spans, max(cpu) - min(cpu))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="threads,asyncio")
    parser.add_argument("--layouts", default="resource,span")
    parser.add_argument("--clients", type=int, default=4, help="concurrent client threads")
    parser.add_argument("--workers", type=int, default=4, help="sidecar --workers")
    parser.add_argument("--spans", type=int, default=1000, help="spans per batch")
    parser.add_argument("--resources", type=int, default=8, help="ResourceSpans per batch")
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument("--rounds", type=int, default=1, help="alternate the modes this often")
    args = parser.parse_args()

    print(
        f"# {args.spans}-span batches, {args.clients} client threads, --workers {args.workers}, "
        f"{args.duration:.0f}s per run, {os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
    )
    print(
        "| mode | layout | batches | p50 ms | p99 ms | batches/s | spans/s | server CPU ms/batch |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for layout in args.layouts.split(","):
        payload = make_batch(args.spans, args.resources, layout).SerializeToString()
        for _ in range(args.rounds):
            for mode in args.modes.split(","):
                print(run_mode(mode, layout, args, payload).row(), flush=True)


if __name__ == "__main__":
    main()
