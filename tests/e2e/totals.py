"""Helpers for the trace-totals end-to-end tests: a real PostgreSQL, collector configs
with the totals sink, traces to send, and the exactness check.

The PostgreSQL server comes from python_processor/tests/pg.py (loaded by path: both
test trees are packages named ``tests``), started by the tests themselves.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.harness import ROOT, OtlpSink, attrs, base_config
from tests.e2e.raw import RawClient
from tests.waiting import wait_for


def _load_pg() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "spancost_test_pg", ROOT / "python_processor" / "tests" / "pg.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pg = _load_pg()

EC2 = {
    "service.name": "checkout",
    "deployment.environment.name": "prod",
    "cloud.provider": "aws",
    "cloud.platform": "aws_eks",
    "cloud.region": "us-east-1",
    "host.type": "m5.large",
    "cloud.account.id": "123456789012",
}
_databases = itertools.count(1)
_ids = itertools.count(1)


def new_database(server: Any) -> str:
    """A fresh database on `server` (a pg.PostgresServer); its postgresql:// URL."""
    name = f"totals_e2e_{next(_databases)}"
    with psycopg.connect(server.dsn, autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql://postgres@127.0.0.1:{server.port}/{name}"


def socket_dir() -> Path:
    """A short private directory for a sidecar socket (Unix socket paths are limited)."""
    return Path(tempfile.mkdtemp(prefix="sc-"))


def totals_config(
    sink_port: int,
    socket: Path,
    database_url: str,
    *,
    storage: Path | None = None,
    exporter: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """python/cost, then the test's OTLP sink and the totals sink behind `socket`."""
    endpoint = f"unix://{socket}"
    config = base_config(
        sink_port,
        extension={
            "endpoint": endpoint,
            "stats_interval": "200ms",
            "sinks": {
                "totals": {
                    "plugin": "spancost.totals",
                    "config": {"database_url": database_url, "reconnect_interval": "200ms"},
                }
            },
        },
    )
    config["processors"] = {
        "python/cost": {"extension": "python", "plugin": "spancost.cost", "timeout": "2s"}
    }
    queue: dict[str, Any] = {"enabled": True, "queue_size": 100_000}
    if storage is not None:
        config["extensions"]["file_storage"] = {"directory": str(storage)}
        config["service"]["extensions"].append("file_storage")
        queue["storage"] = "file_storage"
    totals: dict[str, Any] = {
        "endpoint": endpoint,
        "tls": {"insecure": True},
        "compression": "none",
        "headers": {"spancost-sink": "totals"},
        "timeout": "5s",
        "sending_queue": queue,
        "retry_on_failure": {
            "enabled": True,
            "initial_interval": "100ms",
            "max_interval": "1s",
            "max_elapsed_time": "0s",
        },
    }
    totals.update(exporter or {})
    config["exporters"]["otlp_grpc/totals"] = totals
    pipeline = config["service"]["pipelines"]["traces"]
    pipeline["processors"] = ["python/cost"]
    pipeline["exporters"] = ["otlp_grpc", "otlp_grpc/totals"]
    return config


def any_value(v: Any) -> common_pb2.AnyValue:
    if isinstance(v, int):
        return common_pb2.AnyValue(int_value=v)
    return common_pb2.AnyValue(string_value=v)


def make_trace(rng: random.Random, spans: int) -> list[trace_pb2.Span]:
    """One request: an EC2 root (priced by duration), children, some LLM calls."""
    trace_id = next(_ids).to_bytes(16, "big")
    now = time.time_ns()
    root_id = next(_ids).to_bytes(8, "big")
    duration = rng.randrange(50_000_000, 3_000_000_000)
    result = [
        trace_pb2.Span(
            trace_id=trace_id,
            span_id=root_id,
            name=rng.choice(["POST /checkout", "GET /search"]),
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=now - duration,
            end_time_unix_nano=now,
        )
    ]
    for _ in range(spans - 1):
        child = trace_pb2.Span(
            trace_id=trace_id,
            span_id=next(_ids).to_bytes(8, "big"),
            parent_span_id=root_id,
            name="call",
            kind=trace_pb2.Span.SPAN_KIND_CLIENT,
            start_time_unix_nano=now - duration // 2,
            end_time_unix_nano=now,
        )
        if rng.random() < 0.3:
            for key, value in (
                ("gen_ai.provider.name", "openai"),
                ("gen_ai.request.model", "gpt-4o"),
                ("gen_ai.usage.input_tokens", rng.randrange(1, 5000)),
                ("gen_ai.usage.output_tokens", rng.randrange(1, 800)),
            ):
                child.attributes.add(key=key, value=any_value(value))
        result.append(child)
    return result


def request(spans: list[trace_pb2.Span]) -> trace_service_pb2.ExportTraceServiceRequest:
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, value in EC2.items():
        rs.resource.attributes.add(key=key, value=any_value(value))
    scope = rs.scope_spans.add()
    scope.scope.name = "spancost.e2e.totals"
    scope.spans.extend(spans)
    return req


@dataclass
class Reference:
    """What left the processor, as the test's OTLP sink received it."""

    cost_by_trace: dict[str, float] = field(default_factory=dict)
    spans_by_trace: dict[str, int] = field(default_factory=dict)

    @property
    def spans(self) -> int:
        return sum(self.spans_by_trace.values())

    @property
    def cost(self) -> float:
        return math.fsum(self.cost_by_trace.values())


def reference(sink: OtlpSink, *, priced: bool = True) -> Reference:
    """Per-trace cost and span count at `sink`; every span must have arrived once, and
    with `priced`, carry a price or an unpriced reason (without: spans the processor
    passed unchanged, with no cost attribute, count as cost 0)."""
    seen: set[tuple[bytes, bytes]] = set()
    costs: dict[str, list[float]] = {}
    result = Reference()
    for _rs, _ss, span in sink.spans():
        key = (span.trace_id, span.span_id)
        assert key not in seen, f"span {span.span_id.hex()} reached the sink twice"
        seen.add(key)
        values = attrs(span.attributes)
        if priced:
            assert "cost.usd" in values or "cost.unpriced_reason" in values, values
        trace = span.trace_id.hex()
        costs.setdefault(trace, []).append(float(values.get("cost.usd", 0.0)))
        result.spans_by_trace[trace] = result.spans_by_trace.get(trace, 0) + 1
    result.cost_by_trace = {trace: math.fsum(values) for trace, values in costs.items()}
    return result


def stored(database_url: str) -> Reference:
    """Per-trace cost and span count in the totals store."""
    result = Reference()
    with psycopg.connect(database_url) as connection:
        for trace, cost, spans in connection.execute(
            "SELECT trace_id, cost_usd, span_count FROM traces"
        ):
            result.cost_by_trace[trace] = float(cost)
            result.spans_by_trace[trace] = int(spans)
    return result


def assert_exact(
    sink: OtlpSink, database_url: str, timeout: float = 90.0, *, priced: bool = True
) -> Reference:
    """Wait until the store holds every span the sink received, then compare exactly."""
    expected = reference(sink, priced=priced)
    assert expected.spans > 0
    wait_for(
        lambda: stored(database_url).spans >= expected.spans,
        timeout,
        f"{expected.spans} spans in the totals store",
        interval=0.25,
    )
    got = stored(database_url)
    assert got.spans_by_trace == expected.spans_by_trace
    assert set(got.cost_by_trace) == set(expected.cost_by_trace)
    for trace, cost in expected.cost_by_trace.items():
        assert math.isclose(got.cost_by_trace[trace], cost, rel_tol=1e-9, abs_tol=1e-15), trace
    assert math.isclose(got.cost, expected.cost, rel_tol=1e-9)
    assert expected.cost > 0
    return got


class Sender:
    """Sends batches to a collector from a thread until stopped; counts failures."""

    def __init__(self, endpoint: str, rng: random.Random, interval: float = 0.05) -> None:
        self.client = RawClient(endpoint)
        self.rng = rng
        self.interval = interval
        self.sent = 0
        self.failed = 0
        self.keys: set[tuple[bytes, bytes]] = set()  # (trace id, span id) of what was taken
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            spans = [span for _ in range(5) for span in make_trace(self.rng, 4)]
            try:
                self.client.export(request(spans), timeout=5)
                self.keys.update((span.trace_id, span.span_id) for span in spans)
                self.sent += len(spans)
            except Exception:
                self.failed += 1
            self._stop.wait(self.interval)

    def start(self) -> Sender:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.client.close()


@contextmanager
def sending(endpoint: str, seed: int, interval: float = 0.05) -> Iterator[Sender]:
    sender = Sender(endpoint, random.Random(seed), interval).start()
    try:
        yield sender
    finally:
        sender.stop()
