"""Reading a serialized OTLP trace request without parsing it.

The sidecar receives each batch as bytes and parses it once. The serialized bytes of a
``ScopeSpans`` hold every attribute key of its spans, so searching them (``in`` and
``find``, in C) tells which few spans are worth reading attribute by attribute, far faster
than reading every span's attributes through the protobuf runtime. `scope_blobs` cuts a
request's bytes into those of its scopes, `spans_containing` finds the spans of a scope
whose bytes hold a needle. Only the length-delimited framing of the wire format is read
(tags and varints), never a field's contents; bytes that do not parse give None (never
expected: upb or the collector encoded them), and the caller reads everything instead.

Here, not in spancost/wire/: that package is generated from proto/ by
scripts/generate.sh, which deletes it first.
"""

from __future__ import annotations

import bisect

__all__ = ["scope_blobs", "spans_containing"]


def scope_blobs(data: bytes) -> list[list[bytes]] | None:
    """Per ``ResourceSpans`` of a serialized ``ExportTraceServiceRequest`` (field 1), the
    bytes of each of its ``ScopeSpans`` (field 2), in document order; None if the bytes
    do not parse."""
    resources = _fields(data, 1)
    if resources is None:
        return None
    result: list[list[bytes]] = []
    for resource in resources:
        scopes = _fields(resource, 2)
        if scopes is None:
            return None
        result.append(scopes)
    return result


def spans_containing(blob: bytes, needles: tuple[bytes, ...]) -> set[int] | None:
    """Offsets of the spans of a serialized ``ScopeSpans`` whose bytes contain a needle (a
    false positive costs a read).

    None: read them all (the bytes did not parse; never expected, they come from upb).
    """
    found = [needle for needle in needles if needle in blob]
    if not found:
        return set()
    bounds = _span_bounds(blob)
    if bounds is None:
        return None
    starts, ends = bounds
    hits: set[int] = set()
    for needle in found:
        position = blob.find(needle)
        while position != -1:
            span = bisect.bisect_right(starts, position) - 1
            if span >= 0 and position < ends[span]:
                hits.add(span)
                position = blob.find(needle, ends[span])
            else:
                position = blob.find(needle, position + 1)
    return hits


def _fields(blob: bytes, field: int) -> list[bytes] | None:
    """The bytes of each length-delimited occurrence of `field` in `blob`, in order."""
    bounds = _bounds(blob, field)
    if bounds is None:
        return None
    return [blob[start:end] for start, end in zip(*bounds, strict=True)]


def _span_bounds(blob: bytes) -> tuple[list[int], list[int]] | None:
    """Where each span starts and ends in a serialized ``ScopeSpans`` (field 2)."""
    return _bounds(blob, 2)


def _bounds(blob: bytes, field: int) -> tuple[list[int], list[int]] | None:
    """Where each length-delimited occurrence of `field` of the message `blob` starts and
    ends, in order. None if the bytes do not parse (never expected: upb or the collector
    encoded them)."""
    starts: list[int] = []
    ends: list[int] = []
    position = 0
    size = len(blob)
    try:
        while position < size:
            tag, position = _varint(blob, position)
            wire_type = tag & 7
            if wire_type == 2:  # length-delimited
                length, position = _varint(blob, position)
                if tag >> 3 == field:
                    starts.append(position)
                    ends.append(position + length)
                position += length
            elif wire_type == 0:
                _, position = _varint(blob, position)
            elif wire_type == 1:
                position += 8
            elif wire_type == 5:
                position += 4
            else:
                return None
    except IndexError:
        return None
    if position != size:
        return None
    return starts, ends


def _varint(blob: bytes, position: int) -> tuple[int, int]:
    byte = blob[position]
    position += 1
    if byte < 0x80:
        return byte, position
    result = byte & 0x7F
    shift = 7
    while True:
        byte = blob[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, position
        shift += 7
