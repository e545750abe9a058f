"""The generated applier corpus: current, and laid out only, never altered.

The collector's applier_corpus_test.go compares its bytes with the corpus; the
corpus is what `spancost.changes.apply` gives today, or this test fails.
"""

from __future__ import annotations

import base64
import json

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spancost.changes import apply
from spancost.wire.v1 import sidecar_pb2
from tests.gen_applier_corpus import CORPUS, generate, pdata_layout


def test_the_checked_in_corpus_is_what_the_reference_gives_today() -> None:
    assert CORPUS.read_text() == generate(), (
        "proto/testdata/applier_corpus.jsonl is stale: run "
        ".venv/bin/python python_processor/tests/gen_applier_corpus.py"
    )


def test_the_pdata_layout_only_reorders_fields() -> None:
    """Parsed back, each stored batch is the message it was made from, to the byte."""
    lines = CORPUS.read_text().splitlines()[1:]
    assert len(lines) >= 200
    for line in lines:
        case = json.loads(line)
        for name in ("input", "output"):
            stored = base64.b64decode(case[name])
            message = ExportTraceServiceRequest.FromString(stored)
            assert pdata_layout(message) == stored
            assert len(stored) == len(message.SerializeToString())
        batch = ExportTraceServiceRequest.FromString(base64.b64decode(case["input"]))
        apply(batch, sidecar_pb2.BatchChanges.FromString(base64.b64decode(case["changes"])))
        assert pdata_layout(batch) == base64.b64decode(case["output"])


def test_pdata_layout_is_reverse_declaration_order() -> None:
    request = ExportTraceServiceRequest()
    span = request.resource_spans.add().scope_spans.add().spans.add(name="n", flags=1)
    span.status.SetInParent()
    kv = span.attributes.add(key="k")
    kv.value.string_value = "v"
    # The order pdata v1.67's ProtoMarshaler writes (its MarshalProto fills
    # the buffer from the end, fields in declaration order): status,
    # attributes, name, then flags (16, declared after parent_span_id); a
    # KeyValue's value before its key.
    span_bytes = bytes.fromhex(
        "7a00" + "4a08" + "1203" + "0a0176" + "0a016b" + "2a016e" + "8501" + "01000000"
    )
    scope_spans = bytes([0x12, len(span_bytes)]) + span_bytes
    resource_spans = bytes([0x12, len(scope_spans)]) + scope_spans
    assert pdata_layout(request) == bytes([0x0A, len(resource_spans)]) + resource_spans
