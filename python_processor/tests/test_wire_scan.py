"""spancost.wire_scan: a serialized request cut into its scopes, and the spans holding a needle.

The cost plugin's property test (test_cost_property.py) checks that searching the received
bytes prices a batch as reading every span does; these pin the scanner itself.
"""

from __future__ import annotations

import pytest
from opentelemetry.proto.trace.v1.trace_pb2 import ScopeSpans

from spancost.wire_scan import scope_blobs, spans_containing
from tests.builders import batch, resource_spans, span

LONG = "x" * 300  # lengths above 127 take a varint of two bytes


def test_the_scopes_bytes_are_those_each_scope_serializes_to() -> None:
    request = batch(
        resource_spans({"service.name": "a"}, [span("one")], [span("two"), span(LONG)]),
        resource_spans({"service.name": "b"}),
        resource_spans(None, [span("three", {"gen_ai.usage.input_tokens": 3})]),
    )
    blobs = scope_blobs(request.SerializeToString())
    assert blobs == [
        [scope.SerializeToString() for scope in resource.scope_spans]
        for resource in request.resource_spans
    ]
    assert [len(scopes) for scopes in blobs] == [2, 0, 1]


@pytest.mark.parametrize("data", [b"\xff not a request", b"\x0a\x05ab", b"\x0b"])
def test_bytes_that_do_not_parse_give_none(data: bytes) -> None:
    assert scope_blobs(data) is None


def test_an_empty_request_has_no_scopes() -> None:
    assert scope_blobs(b"") == []


def test_the_spans_whose_bytes_hold_a_needle() -> None:
    scope = ScopeSpans(
        spans=[
            span("plain", {"http.route": "/"}),
            span("llm", {"gen_ai.usage.input_tokens": 10, "gen_ai.usage.output_tokens": 2}),
            span(LONG, {"note": "gen_ai.usage. in a value counts too"}),
            span("lambda", {"faas.trigger": "http"}),
        ]
    )
    blob = scope.SerializeToString()
    assert spans_containing(blob, (b"gen_ai.usage.",)) == {1, 2}
    assert spans_containing(blob, (b"gen_ai.usage.", b"faas.trigger")) == {1, 2, 3}
    assert spans_containing(blob, (b"cost.usd",)) == set()
    assert spans_containing(blob, ()) == set()


def test_a_needle_in_the_scope_but_no_span_is_no_hit() -> None:
    scope = ScopeSpans(spans=[span("a")], schema_url="https://example.com/gen_ai.usage.")
    assert spans_containing(scope.SerializeToString(), (b"gen_ai.usage.",)) == set()


def test_a_scope_that_does_not_parse_is_read_whole() -> None:
    assert spans_containing(b"gen_ai.usage.\xff", (b"gen_ai.usage.",)) is None
