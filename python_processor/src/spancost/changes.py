"""The fast form of a plugin's answer: a description of its changes.

A plugin that derives from `AnnotatingPlugin` does not edit the batch; it
records what should change in a `Changes`, and the collector applies that to
the batch it still holds. Nothing is re-encoded in Python or sent back but the
changes, which is most of a round trip's cost (see BENCHMARKS.md).

Spans are numbered in document order over the whole batch, from 0: resource by
resource, scope by scope, span by span, exactly as `iter_spans` yields them.
Ranges are half-open, ``[start, end)``. The wire form is
``spancost.wire.v1.BatchChanges``; `apply` here and the collector's Go code
apply it the same way:

1. attribute changes in order of ``start`` (ties in the order they were
   recorded): on each span of the range (or only on the spans it lists, for
   `Changes.set_spans`), first ``remove`` keys, then ``set`` attributes;
2. double columns (`Changes.set_doubles`): ``key = value`` on each listed span;
3. then dropped spans are removed; a scope or resource that held spans and
   holds none afterwards is removed too (with any empty scopes it had).

OTLP forbids a key twice in one span's attributes, but the wire allows it, so
a client can send a second ``cost.usd``; both appliers treat repeated keys the
same way, so that none survives to be read later:

- ``remove`` removes every attribute with that key;
- ``set``, and a double column's entry, leave exactly one attribute of that
  key: the first copy keeps its position and takes the new value (and type),
  every later copy is removed; a key that is absent is appended;
- every other attribute keeps its position, and the attributes of a span no
  change names are not touched at all.

Both refuse a malformed answer as a whole, before changing anything, with the
same messages: `check` lists what is refused (proto/testdata/changes.json holds
the shared cases, and a generated corpus, applier_corpus.jsonl, holds the
bytes both must produce).
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from spancost.attributes import AttributeValue, remove_keys, set_value
from spancost.vocabulary.limits import INT64_MAX, INT64_MIN
from spancost.wire.v1 import sidecar_pb2

__all__ = ["Changes", "apply", "check", "iter_spans", "span_count"]


def iter_spans(
    batch: ExportTraceServiceRequest,
) -> Iterator[tuple[int, ResourceSpans, ScopeSpans, Span]]:
    """Every span of `batch` with its index, resource and scope, in document order."""
    index = 0
    for resource_spans in batch.resource_spans:
        for scope_spans in resource_spans.scope_spans:
            for span in scope_spans.spans:
                yield index, resource_spans, scope_spans, span
                index += 1


def span_count(container: ExportTraceServiceRequest | ResourceSpans) -> int:
    """How many spans `container` (a batch or one resource) holds."""
    if isinstance(container, ResourceSpans):
        return sum(len(ss.spans) for ss in container.scope_spans)
    return sum(len(ss.spans) for rs in container.resource_spans for ss in rs.scope_spans)


@dataclass(slots=True)
class _AttributeChange:
    start: int
    end: int
    remove: tuple[str, ...]
    set: tuple[tuple[str, AttributeValue], ...]
    spans: tuple[int, ...] = ()


@dataclass(slots=True)
class Changes:
    """What a plugin changes in one batch of `spans` spans (see the module docstring)."""

    spans: int
    _attributes: list[_AttributeChange] = field(default_factory=list)
    _drops: list[tuple[int, int]] = field(default_factory=list)
    _doubles: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)

    def set(self, start: int, end: int, attributes: Mapping[str, AttributeValue]) -> None:
        """Put `attributes` on spans ``[start, end)``."""
        self._check(start, end)
        items = tuple(attributes.items())
        for key, value in items:
            _check_value(key, value)
        if items:
            self._attributes.append(_AttributeChange(start, end, (), items))

    def set_span(self, index: int, attributes: Mapping[str, AttributeValue]) -> None:
        """Put `attributes` on span `index`."""
        self.set(index, index + 1, attributes)

    def set_spans(
        self,
        indices: Sequence[int],
        attributes: Mapping[str, AttributeValue],
        remove: Iterable[str] = (),
    ) -> None:
        """Remove `remove`, then put `attributes`, on each span of `indices` (ascending).

        One change for scattered spans, e.g. every local root of a resource.
        """
        if not indices:
            return
        for previous, index in itertools.pairwise(indices):
            if index <= previous:
                raise ValueError(f"span indices must ascend strictly: {index} after {previous}")
        self._check(indices[0], indices[-1] + 1)
        items = tuple(attributes.items())
        for key, value in items:
            _check_value(key, value)
        keys = tuple(remove)
        if items or keys:
            change = _AttributeChange(indices[0], indices[-1] + 1, keys, items, tuple(indices))
            self._attributes.append(change)

    def set_doubles(self, key: str, indices: Sequence[int], values: Sequence[float]) -> None:
        """Put ``key = values[i]`` on span ``indices[i]``: a number per span, cheaply.

        Applied after every `set`/`remove`. Calls for the same key must come in
        ascending span order.
        """
        if not key:
            raise ValueError("attribute key must be a non-empty string")
        if len(indices) != len(values):
            raise ValueError(f"{len(indices)} span indices but {len(values)} values")
        if not indices:
            return
        spans, numbers = self._doubles.setdefault(key, ([], []))
        last = spans[-1] if spans else -1
        for index in indices:
            if index <= last:
                raise ValueError(f"span indices must ascend strictly: {index} after {last}")
            last = index
        self._check(indices[0], indices[-1] + 1)
        spans.extend(indices)
        numbers.extend(float(v) for v in values)

    def remove(self, start: int, end: int, keys: Iterable[str]) -> None:
        """Remove attributes `keys` from spans ``[start, end)``."""
        self._check(start, end)
        keys = tuple(keys)
        if keys:
            self._attributes.append(_AttributeChange(start, end, keys, ()))

    def drop(self, start: int, end: int) -> None:
        """Remove spans ``[start, end)`` from the batch."""
        self._check(start, end)
        if start < end:
            self._drops.append((start, end))

    def __bool__(self) -> bool:
        return bool(self._attributes or self._drops or self._doubles)

    def _check(self, start: int, end: int) -> None:
        if not 0 <= start <= end <= self.spans:
            raise ValueError(
                f"span range [{start}, {end}) is outside the batch's {self.spans} spans"
            )

    def to_proto(self) -> sidecar_pb2.BatchChanges:
        """The wire form, attribute changes sorted by start (stable)."""
        out = sidecar_pb2.BatchChanges()
        for change in sorted(self._attributes, key=lambda c: c.start):
            msg = out.attributes.add(
                start=change.start, end=change.end, remove=change.remove, spans=change.spans
            )
            for key, value in change.set:
                _to_wire(msg.set.add(key=key), value)
        for key, (spans, values) in self._doubles.items():
            out.doubles.add(key=key, spans=spans, values=values)
        for start, end in self._drops:
            out.drop.add(start=start, end=end)
        return out

    def apply(self, batch: ExportTraceServiceRequest) -> None:
        """Apply the changes to `batch` in place, as the collector does."""
        apply(batch, self.to_proto())


def apply(batch: ExportTraceServiceRequest, changes: sidecar_pb2.BatchChanges) -> None:
    """Apply wire-form `changes` to `batch` in place (the reference for the Go side).

    Raises ValueError, and changes nothing, when `check` refuses `changes`.
    """
    check(changes, span_count(batch))
    _apply_attributes(batch, changes)
    if changes.doubles:
        _apply_doubles(batch, changes)
    if changes.drop:
        _apply_drops(batch, sorted((r.start, r.end) for r in changes.drop))


def check(changes: sidecar_pb2.BatchChanges, spans: int) -> None:
    """Raise ValueError unless `changes` can apply to a batch of `spans` spans.

    The collector's checkChanges, check for check and message for message:
    ranges within the batch, attribute changes in order of start, listed spans
    strictly ascending within their change's range, a key and a value for each
    set, a key for each double column and as many values as its spans, which
    ascend strictly within the batch.
    """
    previous_start = 0
    for i, change in enumerate(changes.attributes):
        _check_range(f"attributes[{i}]", change.start, change.end, spans)
        if change.start < previous_start:
            raise ValueError(
                f"attributes[{i}]: start {change.start} comes after start {previous_start}; "
                "changes must be in order of start"
            )
        previous_start = change.start
        _check_spans(f"attributes[{i}].spans", change.spans, change.start, change.end)
        for j, attribute in enumerate(change.set):
            if not attribute.key:
                raise ValueError(f"attributes[{i}].set[{j}]: empty key")
            if attribute.WhichOneof("value") is None:
                raise ValueError(
                    f"attributes[{i}].set[{j}]: attribute {_quote(attribute.key)} has no value"
                )
    for i, column in enumerate(changes.doubles):
        if not column.key:
            raise ValueError(f"doubles[{i}]: empty key")
        if len(column.spans) != len(column.values):
            raise ValueError(
                f"doubles[{i}]: {len(column.spans)} spans but {len(column.values)} values"
            )
        _check_spans(f"doubles[{i}].spans", column.spans, 0, spans)
    for i, span_range in enumerate(changes.drop):
        _check_range(f"drop[{i}]", span_range.start, span_range.end, spans)


def _check_range(where: str, start: int, end: int, spans: int) -> None:
    if start > end or end > spans:
        raise ValueError(
            f"{where}: span range [{start}, {end}) is outside the batch's {spans} spans"
        )


def _check_spans(where: str, indices: Sequence[int], start: int, end: int) -> None:
    previous = -1
    for index in indices:
        if not start <= index < end:
            raise ValueError(f"{where}: span {index} is outside [{start}, {end})")
        if index <= previous:
            raise ValueError(f"{where}: span {index} does not come after span {previous}")
        previous = index


def _quote(key: str) -> str:
    # Go's %q for the keys that occur: quotes, with \ and " escaped.
    return json.dumps(key, ensure_ascii=False)


def _apply_attributes(batch: ExportTraceServiceRequest, changes: sidecar_pb2.BatchChanges) -> None:
    pending = list(changes.attributes)
    listed = {id(c): frozenset(c.spans) for c in pending if c.spans}
    removed = {id(c): frozenset(c.remove) for c in pending if c.remove}
    active: list[sidecar_pb2.AttributeChange] = []
    cursor = 0
    for index, _, _, span in iter_spans(batch):
        while cursor < len(pending) and pending[cursor].start <= index:
            active.append(pending[cursor])
            cursor += 1
        active = [c for c in active if c.end > index]
        for change in active:
            if change.spans and index not in listed[id(change)]:
                continue
            if change.remove:
                remove_keys(span.attributes, removed[id(change)])
            for attribute in change.set:
                set_value(span.attributes, attribute.key, _from_wire(attribute))


def _apply_doubles(batch: ExportTraceServiceRequest, changes: sidecar_pb2.BatchChanges) -> None:
    columns = [(c.key, dict(zip(c.spans, c.values, strict=True))) for c in changes.doubles]
    for index, _, _, span in iter_spans(batch):
        for key, values in columns:
            if index in values:
                set_value(span.attributes, key, values[index])


def _apply_drops(batch: ExportTraceServiceRequest, ranges: list[tuple[int, int]]) -> None:
    index = 0
    emptied_resources = []
    for r, resource_spans in enumerate(batch.resource_spans):
        emptied_scopes = []
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            n = len(scope_spans.spans)
            gone = [i for i in range(n) if _in_ranges(index + i, ranges)]
            index += n
            if not gone:
                continue
            if len(gone) == n:
                emptied_scopes.append(s)
                continue
            for i in reversed(gone):
                del scope_spans.spans[i]
        if emptied_scopes:
            kept = (
                ss for s, ss in enumerate(resource_spans.scope_spans) if s not in emptied_scopes
            )
            if not any(ss.spans for ss in kept):
                emptied_resources.append(r)
                continue
            for s in reversed(emptied_scopes):
                del resource_spans.scope_spans[s]
    for r in reversed(emptied_resources):
        del batch.resource_spans[r]


def _in_ranges(index: int, ranges: list[tuple[int, int]]) -> bool:
    return any(start <= index < end for start, end in ranges)


def _check_value(key: str, value: object) -> None:
    if not isinstance(key, str) or not key:
        raise ValueError(f"attribute key must be a non-empty string, got {key!r}")
    if isinstance(value, bool | str | float):
        return
    if isinstance(value, int):
        if not INT64_MIN <= value <= INT64_MAX:
            raise ValueError(f"attribute {key}: integer {value} does not fit in 64 bits")
        return
    raise ValueError(
        f"attribute {key}: value must be str, bool, int or float, got {type(value).__name__}"
    )


def _to_wire(target: sidecar_pb2.Attribute, value: AttributeValue) -> None:
    # bool first: it is an int subclass.
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, int):
        target.int_value = value
    elif isinstance(value, float):
        target.double_value = value
    else:
        target.string_value = value


def _from_wire(attribute: sidecar_pb2.Attribute) -> AttributeValue:
    which = attribute.WhichOneof("value")
    if which is None:
        return ""
    value: AttributeValue = getattr(attribute, which)
    return value
