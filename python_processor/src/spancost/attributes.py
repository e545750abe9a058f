"""Reading and writing OTLP attributes (``repeated KeyValue``) in place.

OTLP requires attribute keys to be unique; if a producer repeats one anyway,
reading finds the first occurrence, as the collector's ``pcommon.Map`` does.
Writing leaves no copy behind that could be read later: `set_value` keeps
exactly one attribute of its key and `remove_keys` removes every copy, as the
collector's applier does (spancost.changes). `AttributeValue` and `value_type` are
the vocabulary's (spancost.vocabulary.otlp), here for plugins.
"""

from __future__ import annotations

from collections.abc import Container, Iterable

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue

from spancost.vocabulary.limits import INT64_MAX, INT64_MIN
from spancost.vocabulary.otlp import AttributeValue, value_type

__all__ = [
    "AttributeValue",
    "assign",
    "find_value",
    "remove_keys",
    "set_value",
    "value_type",
]


def find_value(attributes: Iterable[KeyValue], key: str) -> AnyValue | None:
    """The value of the first attribute named `key`, or None."""
    for attribute in attributes:
        if attribute.key == key:
            return attribute.value
    return None


def assign(target: AnyValue, value: AttributeValue) -> None:
    """Store a Python scalar in `target`, replacing whatever it held."""
    # bool first: it is an int subclass.
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"integer attribute value {value} does not fit in 64 bits")
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    else:
        target.string_value = value


def set_value(
    attributes: RepeatedCompositeFieldContainer[KeyValue], key: str, value: AttributeValue
) -> None:
    """Set attribute `key` to `value`, leaving exactly one attribute named `key`.

    The first existing `key` keeps its place and takes `value` (and its type);
    later copies are removed. A `key` not there is appended.
    """
    first: KeyValue | None = None
    later: list[int] = []
    for index, attribute in enumerate(attributes):
        if attribute.key == key:
            if first is None:
                first = attribute
            else:
                later.append(index)
    if first is None:
        added = attributes.add(key=key)
        try:
            assign(added.value, value)
        except ValueError:
            del attributes[-1]
            raise
        return
    assign(first.value, value)
    for index in reversed(later):
        del attributes[index]


def remove_keys(
    attributes: RepeatedCompositeFieldContainer[KeyValue], keys: Container[str]
) -> None:
    """Remove every attribute whose key is in `keys` (each copy of a repeated key).

    The others keep their order; nothing is written when no key is there.
    """
    doomed = [index for index, attribute in enumerate(attributes) if attribute.key in keys]
    for index in reversed(doomed):
        del attributes[index]
