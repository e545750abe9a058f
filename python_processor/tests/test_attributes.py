"""spancost.attributes: writing leaves no repeated copy of a key behind."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spancost.attributes import remove_keys, set_value, value_type
from tests.builders import Value, any_value, span


def with_attributes(*items: tuple[str, Value]) -> Span:
    """A span whose attributes are `items`, repeated keys and all."""
    result = span()
    result.attributes.extend(KeyValue(key=k, value=any_value(v)) for k, v in items)
    return result


def typed(attributes: Iterable[KeyValue]) -> list[tuple[str, str]]:
    return [(kv.key, value_type(kv.value)) for kv in attributes]


def test_set_value_keeps_the_first_copy_in_place_and_removes_the_later_ones() -> None:
    s = with_attributes(("cost.usd", "client"), ("a", 1), ("cost.usd", 2.0), ("b", True))
    set_value(s.attributes, "cost.usd", 0.5)
    assert typed(s.attributes) == [("cost.usd", "double"), ("a", "int"), ("b", "bool")]
    assert s.attributes[0].value.double_value == 0.5


def test_set_value_appends_an_absent_key() -> None:
    s = with_attributes(("a", "x"))
    set_value(s.attributes, "n", 7)
    assert typed(s.attributes) == [("a", "string"), ("n", "int")]


def test_set_value_refusing_a_value_changes_nothing() -> None:
    s = with_attributes(("a", "x"))
    with pytest.raises(ValueError, match="64 bits"):
        set_value(s.attributes, "big", 2**63)
    assert typed(s.attributes) == [("a", "string")]


def test_remove_keys_removes_every_copy_and_keeps_the_order() -> None:
    s = with_attributes(*((key, key) for key in ["k", "a", "k", "b", "j", "k", "c"]))
    remove_keys(s.attributes, {"k", "j"})
    assert [kv.key for kv in s.attributes] == ["a", "b", "c"]
    remove_keys(s.attributes, {"absent"})
    assert [kv.key for kv in s.attributes] == ["a", "b", "c"]
