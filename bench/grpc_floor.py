"""`make bench`: what grpcio itself costs a Python server per message (issue #15).

No spancost code: a `grpc.server` (the sidecar's kind, on a thread pool, a Unix
socket) whose handlers answer 100 bytes to each message and do nothing else, in a
process of its own; a client sends 50,000-byte messages (about a 510-span batch)
as unary calls or on one bidirectional stream, at 40 a second (20,000 spans/s in
510-span batches) and as fast as answered. The server's user + system CPU per
message is the floor under the sidecar's CPU per batch that no plugin work can
lower: at 40 messages a second it is paid for 510 spans.

Results go to bench-results/grpc_floor.json and Markdown on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import subprocess
import sys
import tempfile
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
    finally:
        proc.terminate()
        proc.wait()
    out = ROOT / "bench-results"
    out.mkdir(exist_ok=True)
    (out / "grpc_floor.json").write_text(json.dumps(results, indent=2))
    print("| 50,000-byte messages | server CPU µs per message |\n|---|---:|")
    for label, micros in results.items():
        print(f"| {label} | {micros:,} |")


if __name__ == "__main__":
    main()
