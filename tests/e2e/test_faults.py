"""A sidecar that dies, freezes or is misconfigured never costs a span."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable

import pytest

from tests.e2e.harness import Collector, OtlpSink, attrs, base_config
from tests.e2e.raw import RawClient, batch, span_ids
from tests.e2e.sdk import Sender
from tests.waiting import wait_for

TAG = "spancost.checked"


def enriched(span: object) -> bool:
    return attrs(span.attributes).get(TAG) is True  # type: ignore[attr-defined]


def test_sigkilled_sidecar_loses_nothing_with_on_error_pass(
    sink: OtlpSink, collector: Callable[..., Collector]
) -> None:
    c = collector(base_config(sink.port))
    client = RawClient(c.grpc_endpoint)
    old = c.sidecar()
    sent: list[list[bytes]] = []  # span ids, batch by batch, in the order sent
    killed_after: list[int] = []  # batches sent when the kill came

    def kill_during_traffic() -> None:
        wait_for(lambda: len(sent) >= 20, 30, "20 batches through the sidecar")
        killed_after.append(len(sent))
        old.send_signal(signal.SIGKILL)

    def enriched_at_the_sink(ids: list[bytes]) -> bool:
        by_id = {span.span_id: span for _, _, span in sink.spans()}
        return all(enriched(by_id[i]) for i in ids)

    killer = threading.Thread(target=kill_during_traffic)
    killer.start()
    # Send until enrichment is back (the first batch begun after the kill that comes
    # back enriched) and 20 batches more. The deadline only bounds a hang: the
    # restart backoff is 50 ms, so enrichment resumes once a new sidecar has started.
    resumed_at: int | None = None
    deadline = time.monotonic() + 60
    while resumed_at is None or len(sent) < resumed_at + 20:
        assert time.monotonic() < deadline, "enrichment did not resume within 60 s"
        req = batch(10)
        client.export(req)  # returns once the sink has the batch: no sending queue
        sent.append(span_ids(req))
        after_kill = bool(killed_after) and len(sent) - 1 > killed_after[0]
        if resumed_at is None and after_kill and enriched_at_the_sink(sent[-1]):
            resumed_at = len(sent) - 1
        time.sleep(0.02)
    killer.join()
    client.close()

    all_ids = [i for ids in sent for i in ids]
    got = sink.wait_spans(len(all_ids))
    assert len(got) == len(all_ids), "spans were duplicated"
    assert sorted(span.span_id for _, _, span in got) == sorted(all_ids)

    by_id = {span.span_id: span for _, _, span in got}
    unenriched = sum(1 for span in by_id.values() if not enriched(span))
    assert unenriched > 0, "the kill never hit a batch: the test proved nothing"
    wait_for(
        lambda: c.metric("otelcol_processor_python_spans_passed_unchanged") == unenriched,
        30,
        "spans_passed_unchanged to match the unenriched spans",
    )
    assert c.metric("otelcol_extension_python_sidecar_restarts", extension="python") == 1
    # Enrichment, once back, stays on.
    assert resumed_at is not None
    assert all(enriched(by_id[i]) for ids in sent[resumed_at:] for i in ids)
    assert c.sidecar().pid != old.pid


def test_rejecting_processor_with_a_retrying_sender_loses_nothing(
    sink: OtlpSink, collector: Callable[..., Collector]
) -> None:
    c = collector(base_config(sink.port, processor={"on_error": "reject"}))
    sender = Sender(
        c.grpc_endpoint,
        resource={"service.name": "checkout", "deployment.environment.name": "prod"},
    )
    old = c.sidecar()
    rejected = "otelcol_processor_python_spans_rejected"
    restarts = "otelcol_extension_python_sidecar_restarts"
    # Send until the kill has hit a batch (it was rejected) and a new sidecar is up;
    # the kill comes once spans flow through the sidecar. The deadline only bounds a
    # hang.
    killed = False
    deadline = time.monotonic() + 60
    while not (killed and c.metric(rejected) > 0 and c.metric(restarts) >= 1):
        assert time.monotonic() < deadline, "no rejected batch and restart within 60 s"
        sender.trace(children=2)
        if not killed and sink.span_count() > 0:
            old.send_signal(signal.SIGKILL)
            killed = True
        time.sleep(0.01)
    for _ in range(20):
        sender.trace(children=2)
    sender.flush()
    sent = {s.get_span_context().span_id.to_bytes(8, "big") for s in sender.sent()}  # type: ignore[union-attr]
    got = sink.wait_spans(len(sent))
    assert len(got) == len(sent), "spans were lost or duplicated"
    assert {span.span_id for _, _, span in got} == sent
    # With reject, every span that reached the backend went through the plugin.
    assert all(enriched(span) for _, _, span in got)
    sender.shutdown()


def test_frozen_sidecar_costs_at_most_the_timeout(
    sink: OtlpSink, collector: Callable[..., Collector]
) -> None:
    c = collector(
        base_config(
            sink.port,
            processor={"timeout": "200ms"},
            extension={
                "health_check": {
                    "interval": "10s",
                    "timeout": "1s",
                    "failure_threshold": 3,
                }
            },
        )
    )
    client = RawClient(c.grpc_endpoint)
    client.export(batch(5))  # warm: the connection is up
    sidecar = c.sidecar()
    os.kill(sidecar.pid, signal.SIGSTOP)
    try:
        began = time.monotonic()
        client.export(batch(5))
        took = time.monotonic() - began
    finally:
        os.kill(sidecar.pid, signal.SIGCONT)
    client.close()
    # The point of the test: the processor's 200 ms timeout ends the wait, not the
    # sender's 30 s deadline nor a health-check restart (three failed checks 10 s apart).
    # 5 s leaves a loaded machine 25 times the timeout and still tells them apart;
    # the timeout reason counted below says which one it was.
    assert 0.2 <= took < 5.0, f"the frozen sidecar held the batch for {took:.3f}s"
    got = sink.wait_spans(10)
    assert sum(1 for _, _, span in got if not enriched(span)) == 5
    assert c.metric("otelcol_processor_python_requests_failed", reason="timeout") == 1


def test_a_20_mb_batch_is_split_not_dropped(
    sink: OtlpSink, collector: Callable[..., Collector]
) -> None:
    c = collector(base_config(sink.port))
    req = batch(4000, attr_bytes=5000)
    assert req.ByteSize() > 20_000_000
    client = RawClient(c.grpc_endpoint)
    client.export(req, timeout=60)
    client.close()
    got = sink.wait_spans(4000, timeout=60)
    assert len(got) == 4000
    assert sorted(span.span_id for _, _, span in got) == sorted(span_ids(req))
    assert all(enriched(span) for _, _, span in got)
    assert c.metric("otelcol_processor_python_requests_sent") >= 5  # 4 MiB parts
    assert c.metric("otelcol_processor_python_requests_failed") == 0


@pytest.mark.parametrize(
    ("processor", "extension", "expected"),
    [
        ({"plugin": "nosuch.plugin"}, {}, 'plugin: "nosuch.plugin"'),
        ({"config": {"drop": "ci"}}, {}, "config.drop"),
        ({"config": {"drpo": ["ci"]}}, {}, "config.drpo"),
        ({"on_error": "drop"}, {}, 'on_error: must be "pass" or "reject", got "drop"'),
        ({"timeout": "0s"}, {}, "timeout: must be positive"),
        (
            {},
            {"command": ["/nonexistent/spancost", "sidecar"]},
            "/nonexistent/spancost",
        ),
        ({}, {"endpoint": "0.0.0.0:4999"}, "endpoint"),
    ],
    ids=[
        "unknown-plugin",
        "plugin-config-type",
        "plugin-config-unknown-key",
        "on_error",
        "timeout",
        "missing-sidecar-command",
        "public-endpoint",
    ],
)
def test_bad_configuration_stops_the_collector_naming_the_problem(
    processor: dict[str, object],
    extension: dict[str, object],
    expected: str,
    sink: OtlpSink,
    collector: Callable[..., Collector],
) -> None:
    c = collector(base_config(sink.port, processor=processor, extension=extension), wait=False)
    rc = c.wait_exit(timeout=30)
    assert rc != 0
    assert expected in c.log(), c.log()[-3000:]
