"""A real plugin failing in the real sidecar: on_error decides what the sender sees, and
no span is lost or doubled.

The plugins (python_processor/tests/fixtures/spancost_test_plugins.py) fail three
ways: they raise, answer changes for spans the batch does not have (the fast form),
or answer a batch the collector cannot decode (the full form).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.harness import Collector, OtlpSink, base_config
from tests.e2e.raw import RawClient, batch
from tests.e2e.sdk import Sender
from tests.waiting import wait_for

FAILING_PLUGINS = [
    pytest.param("test.failing", "plugin_error", id="raises"),
    pytest.param("test.bad_changes", "bad_response", id="changes-outside-the-batch"),
    pytest.param("test.bad_traces", "bad_response", id="undecodable-batch"),
]
PROCESSOR = "python/env"


StartFailing = Callable[..., Collector]


@pytest.fixture
def start_failing(
    sink: OtlpSink, collector: Callable[..., Collector], test_plugin_site: Path
) -> StartFailing:
    """Starts a collector whose python/env runs a failing test plugin (the sidecar sees
    the test plugins through the extension's env) and exports to `sink`."""

    def start(plugin: str, on_error: str, while_file: Path | None = None) -> Collector:
        return collector(
            base_config(
                sink.port,
                plugin_config={} if while_file is None else {"while_file": str(while_file)},
                # Generous: the failure must be the plugin's, never a slow machine's.
                processor={"plugin": plugin, "on_error": on_error, "timeout": "10s"},
                extension={"env": {"PYTHONPATH": str(test_plugin_site)}},
            )
        )

    return start


def comparable(span: trace_pb2.Span) -> trace_pb2.Span:
    """`span` for comparing what was sent with what arrived: without ``cost.*`` (a
    pricing plugin's attributes, which the collector may put on a span it could not
    price; these plugins own nothing) and without an empty status (the collector
    writes one out)."""
    copy = trace_pb2.Span()
    copy.CopyFrom(span)
    kept = [kv for kv in copy.attributes if not kv.key.startswith("cost.")]
    del copy.attributes[:]
    copy.attributes.extend(kept)
    if copy.status == trace_pb2.Status():
        copy.ClearField("status")
    return copy


@pytest.mark.parametrize(("plugin", "reason"), FAILING_PLUGINS)
def test_on_error_pass_forwards_every_span_once_unchanged_and_counts_the_failure(
    plugin: str, reason: str, sink: OtlpSink, start_failing: StartFailing
) -> None:
    c = start_failing(plugin, "pass")
    client = RawClient(c.grpc_endpoint)
    requests = [batch(10) for _ in range(5)]
    for request in requests:
        client.export(request)  # accepted: on_error is pass
    client.close()

    sent = {
        span.span_id: span for r in requests for span in r.resource_spans[0].scope_spans[0].spans
    }
    got = sink.wait_spans(len(sent))
    assert len(got) == len(sent), "spans were doubled"
    assert {span.span_id for _, _, span in got} == set(sent)
    for _, _, span in got:
        assert comparable(span) == comparable(sent[span.span_id])

    failed = "otelcol_processor_python_requests_failed"
    assert c.metric(failed, processor=PROCESSOR, reason=reason) == len(requests)
    assert c.metric(failed, processor=PROCESSOR) == len(requests), "counted under another reason"
    passed = "otelcol_processor_python_spans_passed_unchanged"
    assert c.metric(passed, processor=PROCESSOR) == len(sent)
    assert c.metric("otelcol_processor_python_spans_rejected", processor=PROCESSOR) == 0


@pytest.mark.parametrize(("plugin", "reason"), FAILING_PLUGINS)
def test_on_error_reject_tells_the_sender_to_retry_and_a_retry_after_the_fix_loses_nothing(
    plugin: str, reason: str, sink: OtlpSink, start_failing: StartFailing, tmp_path: Path
) -> None:
    broken = tmp_path / "broken"  # the plugin fails while this file exists
    broken.touch()
    c = start_failing(plugin, "reject", while_file=broken)

    # The sender is told to retry (UNAVAILABLE), and why.
    client = RawClient(c.grpc_endpoint)
    with pytest.raises(grpc.RpcError) as refused:
        client.export(batch(3))
    client.close()
    error = refused.value
    assert isinstance(error, grpc.Call)
    assert error.code() == grpc.StatusCode.UNAVAILABLE, error.details()
    assert f"python sidecar failed ({reason}), on_error is reject" in (error.details() or "")
    assert sink.span_count() == 0

    # A sender that retries keeps its spans while the plugin fails, and delivers each
    # once when the plugin works again.
    rejected = "otelcol_processor_python_spans_rejected"
    before = c.metric(rejected, processor=PROCESSOR)
    assert before == 3
    sender = Sender(
        c.grpc_endpoint,
        resource={"service.name": "checkout", "deployment.environment.name": "prod"},
        timeout=60,
    )
    for _ in range(5):
        sender.trace(children=2)
    wait_for(
        lambda: c.metric(rejected, processor=PROCESSOR) > before,
        30,
        "the collector to refuse the sender's spans",
    )
    broken.unlink()
    sender.flush()
    sent = {s.get_span_context().span_id.to_bytes(8, "big") for s in sender.sent()}  # type: ignore[union-attr]
    got = sink.wait_spans(len(sent))
    assert len(got) == len(sent), "spans were lost or doubled"
    assert {span.span_id for _, _, span in got} == sent
    sender.shutdown()

    failed = "otelcol_processor_python_requests_failed"
    assert c.metric(failed, processor=PROCESSOR, reason=reason) >= 2
    assert c.metric(failed, processor=PROCESSOR) == c.metric(
        failed, processor=PROCESSOR, reason=reason
    ), "counted under another reason"
    assert c.metric("otelcol_processor_python_spans_passed_unchanged", processor=PROCESSOR) == 0
