"""Spans through the real collector and sidecar arrive complete, exact and enriched."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.harness import Collector, OtlpSink, attrs, base_config
from tests.e2e.sdk import Sender, assert_same_span

TAG = "spancost.checked"


@pytest.mark.parametrize(
    ("protocol", "answer_form"), [("grpc", "auto"), ("http", "auto"), ("grpc", "full")]
)
def test_spans_pass_through_the_plugin_unchanged_but_for_its_changes(
    protocol: str, answer_form: str, sink: OtlpSink, collector: Callable[..., Collector]
) -> None:
    """auto: the environment plugin answers in the fast form (changes applied in Go);
    full: the sidecar sends the whole batch back (decoded in Go)."""
    config = base_config(sink.port)
    config["extensions"]["python"]["command"] += ["--answer-form", answer_form]
    c = collector(config)
    endpoint = c.grpc_endpoint if protocol == "grpc" else c.http_endpoint
    prod = Sender(
        endpoint,
        protocol=protocol,
        resource={"service.name": "checkout", "deployment.environment.name": "prod"},
    )
    ci = Sender(
        endpoint,
        protocol=protocol,
        resource={"service.name": "checkout", "deployment.environment": "ci"},
    )
    for _ in range(20):
        prod.trace(children=3)
        ci.trace(children=1)
    prod.flush()
    ci.flush()

    sent = {s.get_span_context().span_id.to_bytes(8, "big"): s for s in prod.sent()}  # type: ignore[union-attr]
    assert len(sent) == 80
    got = sink.wait_spans(len(sent))
    # The ci spans were dropped by the plugin, and nothing else went missing or doubled.
    assert len(got) == len(sent), f"expected exactly {len(sent)} spans, got {len(got)}"
    assert {span.span_id for _, _, span in got} == set(sent)
    for rs, ss, span in got:
        assert attrs(span.attributes)[TAG] is True
        assert_same_span(sent[span.span_id], rs, ss, span, added={TAG})
    prod.shutdown()
    ci.shutdown()

    assert (
        c.metric(
            "otelcol_processor_python_plugin_events",
            processor="python/env",
            event="dropped",
        )
        == 40
    )
    assert c.metric("otelcol_processor_python_spans_passed_unchanged") == 0
    assert c.metric("otelcol_processor_python_requests_failed") == 0
