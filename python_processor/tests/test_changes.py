"""spancost.changes: the fast-form answer, checked against the shared vectors."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import json_format

from spancost.changes import Changes, apply, check, iter_spans, span_count
from spancost.plugin import ExportTraceServiceRequest
from spancost.wire.v1 import sidecar_pb2
from tests.builders import all_spans, attribute_map, batch, resource_spans, span

VECTORS = Path(__file__).resolve().parents[2] / "proto" / "testdata" / "changes.json"


def vectors(kind: str) -> list[dict[str, Any]]:
    """The shared vectors of `kind`: ``cases`` or ``invalid``."""
    cases: list[dict[str, Any]] = json.loads(VECTORS.read_text())[kind]
    return cases


def parse_traces(obj: object) -> ExportTraceServiceRequest:
    return json_format.Parse(json.dumps(obj), ExportTraceServiceRequest())


def parse_changes(obj: object) -> sidecar_pb2.BatchChanges:
    return json_format.Parse(json.dumps(obj), sidecar_pb2.BatchChanges())


@pytest.mark.parametrize("case", vectors("cases"), ids=lambda c: c["name"])
def test_shared_vectors(case: dict[str, Any]) -> None:
    """The same vectors the Go applier runs (changes_test.go)."""
    request = parse_traces(case["input"])
    apply(request, parse_changes(case["changes"]))
    want = parse_traces(case["output"])
    # The JSON form for a readable difference, then the encoded bytes, as the
    # collector's side compares them: repeated keys, order, the bits of -0.0.
    assert json_format.MessageToDict(request) == json_format.MessageToDict(want)
    assert request.SerializeToString() == want.SerializeToString()


@pytest.mark.parametrize("case", vectors("invalid"), ids=lambda c: c["name"])
def test_shared_invalid_vectors(case: dict[str, Any]) -> None:
    """Both appliers refuse these answers, with the same message, changing nothing."""
    request = parse_traces(case["input"])
    before = request.SerializeToString()
    changes = parse_changes(case["changes"])
    with pytest.raises(ValueError, match=re.escape(case["error"])):
        check(changes, span_count(request))
    with pytest.raises(ValueError, match=re.escape(case["error"])):
        apply(request, changes)
    assert request.SerializeToString() == before


def test_iter_spans_numbers_spans_in_document_order() -> None:
    request = batch(
        resource_spans({}, [span("a"), span("b")], [span("c")]),
        resource_spans({}, [], [span("d")]),
    )
    assert [(i, s.name) for i, _, _, s in iter_spans(request)] == [
        (0, "a"),
        (1, "b"),
        (2, "c"),
        (3, "d"),
    ]
    assert span_count(request) == 4
    assert span_count(request.resource_spans[1]) == 1


def test_changes_round_trip_through_the_wire_form_sorted_by_start() -> None:
    request = batch(resource_spans({}, [span("a", {"x": "1"}), span("b"), span("c")]))
    changes = Changes(3)
    changes.set_span(2, {"n": 3, "flag": True, "ratio": 0.5, "s": "v"})
    changes.remove(0, 1, ["x"])
    changes.drop(1, 2)
    wire = changes.to_proto()
    assert [c.start for c in wire.attributes] == [0, 2]
    apply(request, wire)
    assert [s.name for s in all_spans(request)] == ["a", "c"]
    a, c = all_spans(request)
    assert attribute_map(a.attributes) == {}
    assert attribute_map(c.attributes) == {"n": 3, "flag": True, "ratio": 0.5, "s": "v"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.set(0, 4, {"k": "v"}), "span range [0, 4) is outside the batch's 3 spans"),
        (lambda c: c.drop(2, 1), "span range [2, 1) is outside"),
        (lambda c: c.remove(-1, 1, ["k"]), "span range [-1, 1) is outside"),
        (lambda c: c.set(0, 1, {"": "v"}), "attribute key must be a non-empty string"),
        (lambda c: c.set(0, 1, {"k": None}), "attribute k: value must be str, bool, int or float"),
        (lambda c: c.set(0, 1, {"k": 2**63}), "does not fit in 64 bits"),
    ],
)
def test_changes_refuse_what_the_collector_would_refuse(call: Any, message: str) -> None:
    changes = Changes(3)
    with pytest.raises(
        ValueError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")
    ):
        call(changes)
    assert not changes


def test_empty_ranges_and_keys_record_nothing() -> None:
    changes = Changes(3)
    changes.drop(1, 1)
    changes.set(0, 3, {})
    changes.remove(0, 3, [])
    assert not changes
    assert changes.to_proto() == sidecar_pb2.BatchChanges()


def test_set_spans_and_doubles_touch_only_the_listed_spans() -> None:
    request = batch(resource_spans({}, [span("a"), span("b"), span("c"), span("d")]))
    changes = Changes(4)
    changes.set(0, 4, {"cost.model": "included", "cost.usd": 0.0})
    changes.set_spans([0, 3], {"cost.model": "duration"}, remove=["gone"])
    changes.set_doubles("cost.usd", [0], [0.25])
    changes.set_doubles("cost.usd", [3], [1e-15])
    wire = changes.to_proto()
    assert len(wire.attributes) == 2
    assert list(wire.doubles[0].spans) == [0, 3]
    apply(request, wire)
    got = [(s.name, attribute_map(s.attributes)) for s in all_spans(request)]
    assert got == [
        ("a", {"cost.model": "duration", "cost.usd": 0.25}),
        ("b", {"cost.model": "included", "cost.usd": 0.0}),
        ("c", {"cost.model": "included", "cost.usd": 0.0}),
        ("d", {"cost.model": "duration", "cost.usd": 1e-15}),
    ]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda c: c.set_spans([2, 1], {"k": "v"}), "must ascend strictly: 1 after 2"),
        (lambda c: c.set_spans([1, 3], {"k": "v"}), "outside the batch's 3 spans"),
        (lambda c: c.set_doubles("k", [0, 1], [1.0]), "2 span indices but 1 values"),
        (lambda c: c.set_doubles("", [0], [1.0]), "non-empty string"),
        (lambda c: c.set_doubles("k", [1, 1], [1.0, 2.0]), "must ascend strictly: 1 after 1"),
    ],
)
def test_set_spans_and_doubles_refuse_bad_indices(call: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call(Changes(3))


def test_doubles_for_one_key_must_come_in_span_order() -> None:
    changes = Changes(3)
    changes.set_doubles("k", [2], [1.0])
    with pytest.raises(ValueError, match="must ascend strictly: 1 after 2"):
        changes.set_doubles("k", [1], [1.0])
