"""Money integrity end to end: no number a sender chooses becomes cost.

The real collector with python/cost, the stock OTLP exporter into the sidecar's totals
sink and a real PostgreSQL 15, as in test_totals.py. Each test sends spans that carry a
sender's own ``cost.usd`` (5,000 USD) and checks what the store and ``spancost report``
hold: only what spancost priced.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import psutil
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.harness import ROOT, Collector, OtlpSink
from tests.e2e.raw import RawClient
from tests.e2e.totals import EC2, any_value, new_database, pg, socket_dir, totals_config
from tests.waiting import wait_for

Start = Callable[..., Collector]

FORGED = 5000.0
"""What a sender claims its span cost: never booked."""
UNPRICED = {"service.name": "checkout", "deployment.environment.name": "prod"}
"""A resource spancost cannot price (no cloud facts): its spans are unpriced."""


@pytest.fixture(scope="module")
def postgres() -> Iterator[Any]:
    with pg.running_postgres() as server:
        yield server


_ids = iter(range(1, 1 << 30))


def forged_span(
    copies: int, *, root: bool = True, duration_ns: int = 200_000_000
) -> trace_pb2.Span:
    """A span whose sender put ``cost.usd = 5000`` on it `copies` times (raw OTLP allows a
    repeated key), with a forged ``cost.source`` and ``cost.unpriced_reason`` besides."""
    n = next(_ids)
    now = time.time_ns()
    span = trace_pb2.Span(
        trace_id=(n | 1 << 100).to_bytes(16, "big"),
        span_id=n.to_bytes(8, "big"),
        name="POST /checkout",
        kind=trace_pb2.Span.SPAN_KIND_SERVER if root else trace_pb2.Span.SPAN_KIND_INTERNAL,
        start_time_unix_nano=now - duration_ns,
        end_time_unix_nano=now,
    )
    for _ in range(copies):
        span.attributes.add(key="cost.usd", value=common_pb2.AnyValue(double_value=FORGED))
    span.attributes.add(key="cost.source", value=common_pb2.AnyValue(string_value="client"))
    span.attributes.add(key="cost.unpriced_reason", value=common_pb2.AnyValue(string_value=""))
    return span


def export(
    resource: dict[str, str], spans: list[trace_pb2.Span]
) -> trace_service_pb2.ExportTraceServiceRequest:
    req = trace_service_pb2.ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for key, value in resource.items():
        rs.resource.attributes.add(key=key, value=any_value(value))
    rs.scope_spans.add().spans.extend(spans)
    return req


def cost_values(span: trace_pb2.Span) -> list[float]:
    """Every ``cost.usd`` on a span as it left the collector, repeats included."""
    return [kv.value.double_value for kv in span.attributes if kv.key == "cost.usd"]


def stored_traces(url: str, expected_spans: int) -> dict[str, tuple[float, int, int]]:
    """trace id -> (cost, priced spans, unpriced spans), once `expected_spans` are stored."""

    def read() -> dict[str, tuple[float, int, int]]:
        with psycopg.connect(url) as connection:
            rows = connection.execute(
                "SELECT trace_id, cost_usd, priced_count, unpriced_count FROM traces"
            ).fetchall()
        return {trace: (float(cost), priced, unpriced) for trace, cost, priced, unpriced in rows}

    wait_for(
        lambda: sum(p + u for _, p, u in read().values()) >= expected_spans,
        90,
        f"{expected_spans} spans in the totals store",
        interval=0.25,
    )
    return read()


def report(url: str) -> dict[str, Any]:
    """`spancost report --json` over the store, as a user runs it."""
    env = {**os.environ, "DATABASE_URL": url}
    result = subprocess.run(  # noqa: S603 - our own CLI
        [str(ROOT / ".venv" / "bin" / "spancost"), "report", "--json", "--since", "1h"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    document: dict[str, Any] = json.loads(result.stdout)
    return document


@pytest.mark.parametrize("copies", [1, 2, 3])
def test_a_senders_cost_keys_never_become_money(
    postgres: Any, sink: OtlpSink, collector: Start, copies: int
) -> None:
    url = new_database(postgres)
    c = collector(totals_config(sink.port, socket_dir() / "s.sock", url))
    client = RawClient(c.grpc_endpoint)
    # On a priced resource (an EC2 segment: the root is charged by duration, the child
    # is included in it) and on one spancost cannot price.
    priced_root, priced_child, unpriced = (
        forged_span(copies),
        forged_span(copies, root=False),
        forged_span(copies),
    )
    priced_child.trace_id, priced_child.parent_span_id = priced_root.trace_id, priced_root.span_id
    client.export(export(EC2, [priced_root, priced_child]))
    client.export(export(UNPRICED, [unpriced]))
    client.close()

    got = {span.span_id: span for _rs, _ss, span in sink.wait_spans(3)}
    m5_large_hour = 0.096  # the bundled us-east-1 on-demand price
    expected = m5_large_hour * 0.2 / 3600
    assert cost_values(got[priced_root.span_id]) == [pytest.approx(expected, rel=1e-9)]
    assert cost_values(got[priced_child.span_id]) == [0.0]
    assert cost_values(got[unpriced.span_id]) == [], "no copy of a sender's cost.usd survives"
    for span in got.values():
        assert [kv.value.string_value for kv in span.attributes if kv.key == "cost.source"] in (
            [],
            ["bundled"],
        )

    rows = stored_traces(url, 3)
    assert rows[priced_root.trace_id.hex()] == (pytest.approx(expected, rel=1e-9), 2, 0)
    assert rows[unpriced.trace_id.hex()] == (0.0, 0, 1)
    document = report(url)
    assert document["total"]["cost"] == pytest.approx(expected, rel=1e-9)
    assert document["total"]["spans"] == 3


@pytest.mark.parametrize("fault", ["frozen", "killed"])
def test_a_senders_cost_while_the_sidecar_does_not_answer_is_not_booked(
    postgres: Any, sink: OtlpSink, collector: Start, fault: str
) -> None:
    url = new_database(postgres)
    config = totals_config(sink.port, socket_dir() / "s.sock", url)
    config["processors"]["python/cost"]["timeout"] = "300ms"
    c = collector(config)
    client = RawClient(c.grpc_endpoint)
    client.export(export(EC2, [forged_span(1)]))  # warm: priced as usual
    sidecar = c.sidecar()
    forged = [forged_span(1), forged_span(2)]
    if fault == "frozen":
        os.kill(sidecar.pid, signal.SIGSTOP)
        try:
            # A signal is delivered asynchronously: a batch sent at once could still
            # be answered.
            wait_for(lambda: sidecar.status() == psutil.STATUS_STOPPED, 10, "the sidecar stopped")
            client.export(export(EC2, forged))
        finally:
            os.kill(sidecar.pid, signal.SIGCONT)
    else:
        sidecar.kill()
        sidecar.wait(10)
        client.export(export(EC2, forged))
    client.close()

    got = {span.span_id: span for _rs, _ss, span in sink.wait_spans(3)}
    for span in forged:
        out = got[span.span_id]
        assert cost_values(out) == [], "the processor removed every copy itself"
        reasons = [
            kv.value.string_value for kv in out.attributes if kv.key == "cost.unpriced_reason"
        ]
        assert reasons == ["sidecar_unavailable"]
    wait_for(
        lambda: (
            c.metric(
                "otelcol_processor_python_plugin_events",
                event="unpriced",
                reason="sidecar_unavailable",
            )
            == 2
        ),
        10,
        "the two spans counted unpriced for sidecar_unavailable",
    )
    rows = stored_traces(url, 3)
    for span in forged:
        assert rows[span.trace_id.hex()] == (0.0, 0, 1)
    total = math.fsum(cost for cost, _, _ in rows.values())
    assert 0 < total < 1, "only the warm-up span's own price"
    assert report(url)["total"]["cost"] == pytest.approx(total, rel=1e-9)


def test_a_pipeline_that_does_not_price_cannot_feed_the_totals(
    postgres: Any, sink: OtlpSink, collector: Start
) -> None:
    url = new_database(postgres)
    config = totals_config(sink.port, socket_dir() / "s.sock", url)
    config["service"]["pipelines"]["traces"]["processors"] = []
    c = collector(config, wait=False)
    assert c.wait_exit() != 0
    assert (
        'service::pipelines::traces: exporter "otlp_grpc/totals" feeds the sink "totals", which'
        " books cost.usd, but no python processor on the pipeline owns cost.usd"
    ) in c.log()
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT count(*) FROM traces").fetchone() == (0,)


HOUR_NS = 3600 * 10**9


def test_implausible_tokens_long_jobs_and_late_spans(
    postgres: Any, sink: OtlpSink, collector: Start
) -> None:
    """A forged token count is not booked; a 3-hour job that ends now is, with its compute;
    so are spans a queue held through a 3-hour outage."""
    url = new_database(postgres)
    c = collector(totals_config(sink.port, socket_dir() / "s.sock", url))
    now = time.time_ns()
    n = next(_ids)
    llm = trace_pb2.Span(
        trace_id=(n | 1 << 101).to_bytes(16, "big"),
        span_id=n.to_bytes(8, "big"),
        name="chat gpt-4o",
        kind=trace_pb2.Span.SPAN_KIND_CLIENT,
        start_time_unix_nano=now - 10**9,
        end_time_unix_nano=now,
    )
    for key, value in (
        ("gen_ai.provider.name", "openai"),
        ("gen_ai.request.model", "gpt-4o"),
        ("gen_ai.usage.input_tokens", 10),
        ("gen_ai.usage.output_tokens", 10**9),  # 10,000 USD at gpt-4o's price
    ):
        llm.attributes.add(key=key, value=any_value(value))
    job = forged_span(0, duration_ns=3 * HOUR_NS)  # ends now, started 3 hours ago
    held = forged_span(0)  # ended 3 hours ago, delivered now
    held.start_time_unix_nano -= 3 * HOUR_NS
    held.end_time_unix_nano -= 3 * HOUR_NS
    client = RawClient(c.grpc_endpoint)
    client.export(export(UNPRICED, [llm]))
    client.export(export(EC2, [job, held]))
    client.close()

    got = {span.span_id: span for _rs, _ss, span in sink.wait_spans(3)}
    reasons = [
        kv.value.string_value
        for kv in got[llm.span_id].attributes
        if kv.key == "cost.unpriced_reason"
    ]
    assert reasons == ["implausible_tokens"]
    m5_large_hour = 0.096
    rows = stored_traces(url, 3)
    assert rows[llm.trace_id.hex()] == (0.0, 0, 1)
    assert rows[job.trace_id.hex()] == (pytest.approx(m5_large_hour * 3, rel=1e-9), 1, 0)
    assert rows[held.trace_id.hex()] == (pytest.approx(m5_large_hour * 0.2 / 3600, rel=1e-9), 1, 0)
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT count(*) FROM quarantined_spans").fetchone() == (0,)
    document = report(url)
    assert document["total"]["cost"] == pytest.approx(m5_large_hour * (3 + 0.2 / 3600), rel=1e-9)
    assert document["unpriced"]["reasons"] == [{"reason": "implausible_tokens", "spans": 1}]
    wait_for(
        lambda: (
            c.metric(
                "otelcol_processor_python_plugin_events",
                event="unpriced",
                reason="implausible_tokens",
            )
            == 1
        ),
        10,
        "the span counted unpriced for implausible_tokens",
    )
