"""`make bench`: what grpcio itself costs a Python server per message (issue #15).

No spancost code: a `grpc.server` (the sidecar's kind, on a thread pool, a Unix
socket) whose handlers answer 100 bytes to each message and do nothing else, in a
process of its own; a client sends 50,000-byte messages (about a 510-span batch)
as unary calls or on one bidirectional stream, at 40 a second (20,000 spans/s in
510-span batches) and as fast as answered. The server's user + system CPU per
message is the floor under the sidecar's CPU per batch that no plugin work can
lower: at 40 messages a second it is paid for 510 spans.

It also measures the latency floor under the hop's p99 (issue 15's latency target):

- the round trip of one 136,000-byte message (the latency step's 1,000-span request)
  on the same server, one every 50 ms as bench/hop.py sends them, and back to back;
- a thread handoff with no gRPC at all: one Python thread wakes another, which wakes
  it back (a ``threading.Event`` each way), one every 50 ms. Every hop between
  threads or processes (the collector's goroutines, the socket, grpcio's poller and
  worker threads) pays at least this much; on a virtual machine whose idle vCPUs
  sleep, waking one can take milliseconds.

Results go to bench-results/grpc_floor.json and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import grpc
import psutil

from tests.e2e.harness import ROOT

SERVICE = "spancost.bench.Echo"


def _identity(data: bytes) -> bytes:
    return data


def serve(socket: str) -> None:
    """The server process: unary `U` and bidirectional `B`, 100 bytes back."""

    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        return request[:100]

    def stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        for request in requests:
            yield request[:100]

    server = grpc.server(ThreadPoolExecutor(4))
    handlers = {
        "U": grpc.unary_unary_rpc_method_handler(unary, _identity, _identity),
        "B": grpc.stream_stream_rpc_method_handler(stream, _identity, _identity),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    server.add_insecure_port(f"unix://{socket}")
    server.start()
    print("serving", flush=True)
    server.wait_for_termination()


def measure(socket: str, pid: int, kind: str, messages: int, rate: float) -> float:
    """Server CPU µs per message for `messages` sent at `rate` (0: as fast as answered)."""
    channel = grpc.insecure_channel(f"unix://{socket}")
    payload = os.urandom(50_000)
    server = psutil.Process(pid)
    interval = 1 / rate if rate else 0.0
    unary = channel.unary_unary(f"/{SERVICE}/U", _identity, _identity)
    bidi = channel.stream_stream(f"/{SERVICE}/B", _identity, _identity)
    unary(payload)  # connected
    before = server.cpu_times()
    if kind == "unary":
        for _ in range(messages):
            unary(payload)
            time.sleep(interval)
    else:
        outbox: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()

        def requests() -> Iterator[bytes]:
            while (item := outbox.get()) is not None:
                yield item

        answers = bidi(requests())
        for _ in range(messages):
            outbox.put(payload)
            next(answers)
            time.sleep(interval)
        outbox.put(None)
    after = server.cpu_times()
    channel.close()
    cpu = (after.user - before.user) + (after.system - before.system)
    return cpu / messages * 1e6


LATENCY_BYTES = 136_000
GAP_S = 0.05


def _percentiles(samples_ms: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(samples_ms, n=100)
    return {"p50_ms": round(cuts[49], 3), "p99_ms": round(cuts[98], 3)}


def round_trips(socket: str, calls: int, gap_s: float) -> dict[str, float]:
    """p50/p99 of unary calls with a `LATENCY_BYTES` message, `gap_s` apart."""
    channel = grpc.insecure_channel(f"unix://{socket}")
    payload = os.urandom(LATENCY_BYTES)
    unary = channel.unary_unary(f"/{SERVICE}/U", _identity, _identity)
    unary(payload)  # connected
    samples = []
    for _ in range(calls):
        began = time.perf_counter()
        unary(payload)
        samples.append((time.perf_counter() - began) * 1e3)
        time.sleep(gap_s)
    channel.close()
    return _percentiles(samples)


def handoffs(rounds: int, gap_s: float) -> dict[str, float]:
    """p50/p99 of a wake-up there and back between two Python threads, `gap_s` apart."""
    there, back = threading.Event(), threading.Event()
    stop = False

    def echo() -> None:
        while True:
            there.wait()
            there.clear()
            if stop:
                return
            back.set()

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    samples = []
    for _ in range(rounds):
        began = time.perf_counter()
        there.set()
        back.wait()
        back.clear()
        samples.append((time.perf_counter() - began) * 1e3)
        time.sleep(gap_s)
    stop = True
    there.set()
    thread.join()
    return _percentiles(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return
    socket = str(Path(tempfile.mkdtemp(prefix="spc-")) / "echo.sock")
    proc = subprocess.Popen(  # noqa: S603 - this script
        [sys.executable, "-m", "bench.grpc_floor", "--serve", socket],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        assert proc.stdout is not None
        proc.stdout.readline()
        results: dict[str, Any] = {}
        for rate in (40.0, 0.0):
            for kind in ("unary", "stream"):
                label = f"{kind} at {'40/s' if rate else 'full speed'}"
                results[label] = round(measure(socket, proc.pid, kind, args.messages, rate))
        latency = {
            "unary round trip, one every 50 ms": round_trips(socket, args.messages, GAP_S),
            "unary round trip, back to back": round_trips(socket, args.messages, 0.0),
        }
    finally:
        proc.terminate()
        proc.wait()
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    latency["thread handoff there and back, one every 50 ms"] = handoffs(args.messages, GAP_S)
    (out / "grpc_floor.json").write_text(
        json.dumps({"cpu_us_per_message": results, "latency": latency}, indent=2)
    )
    print("| 50,000-byte messages | server CPU µs per message |\n|---|---:|")
    for label, micros in results.items():
        print(f"| {label} | {micros:,} |")
    print(f"\n| latency ({LATENCY_BYTES:,}-byte messages) | p50 ms | p99 ms |\n|---|---:|---:|")
    for label, cut in latency.items():
        print(f"| {label} | {cut['p50_ms']:.2f} | {cut['p99_ms']:.2f} |")


if __name__ == "__main__":
    main()
