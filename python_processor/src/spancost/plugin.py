"""The plugin API: what a spancost processor plugin implements.

A plugin is a class derived from `Plugin`, published by an installed
distribution under the entry-point group ``spancost.processors``::

    # pyproject.toml of your package
    [project.entry-points."spancost.processors"]
    "acme.team_tag" = "acme_spancost.team_tag:TeamTagPlugin"

The collector's ``python`` processor names the plugin (``plugin: acme.team_tag``)
and hands it its ``config`` map. The sidecar then:

1. creates one instance per processor (``Plugin(config)``) when the collector
   starts, and again whenever the collector re-sends the configuration;
   ``__init__`` validates the configuration and raises `ConfigError` naming the
   offending key, which the collector reports before it starts its pipelines;
2. calls ``process(batch, events)`` for every batch of spans; the plugin
   changes ``batch`` in place (set attributes, drop spans) and counts what it
   did in ``events``; the sidecar sends the batch back to the collector.
   A plugin derived from `AnnotatingPlugin` implements
   ``annotate(batch, changes, events)`` instead and only describes its changes
   (the fast form: the collector applies them; see `spancost.changes`);
3. calls ``close()`` once the instance is replaced or the sidecar stops, after
   every batch already handed to the instance has finished.

A plugin that owns attributes (``spancost.cost`` owns ``cost.usd`` and the other
``cost.*`` it writes) says so with `Plugin.ownership`: the sidecar tells the
collector when the instance is configured, and on every path where the sidecar
does not answer for a batch (``on_error: pass`` after a timeout, a crash, an
error or a bad answer) the collector removes those attributes from the spans
itself and puts the plugin's ``unprocessed`` marker on them. A sender's value of
an owned attribute therefore never leaves the processor, answered or not.

Contract for ``process``:

* It may be called from several threads at once (one per in-flight batch):
  keep no per-batch state on ``self``; share only immutable or locked state.
* It must not add unrelated spans. Dropping spans is fine; remove any
  ``ScopeSpans``/``ResourceSpans`` it leaves empty.
* Odd input (an attribute of an unexpected type, a missing attribute) is
  data, not an error: handle it and count it, e.g.
  ``events.add("skipped", reason="service_name_not_a_string")``. An exception
  fails the whole batch: the collector then forwards it unchanged
  (``on_error: pass``) or rejects it (``on_error: reject``).
* It is on the collector's hot path: no network calls; refresh anything remote
  in a background thread started in ``__init__`` and stopped in ``close``.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from spancost.attributes import AttributeValue
from spancost.changes import Changes, iter_spans, span_count
from spancost.config import (
    AttributeSetting,
    Choice,
    ConfigModel,
    Duration,
    HttpUrl,
    Integer,
    Name,
    NameList,
    NoSettings,
    Number,
    StrList,
    invalid,
    parse,
)
from spancost.errors import ConfigError

__all__ = [
    "AnnotatingPlugin",
    "AttributeSetting",
    "Changes",
    "Choice",
    "ConfigError",
    "ConfigModel",
    "Duration",
    "Event",
    "Events",
    "ExportTraceServiceRequest",
    "HttpUrl",
    "Integer",
    "Name",
    "NameList",
    "Number",
    "Ownership",
    "Plugin",
    "StrList",
    "invalid",
    "iter_spans",
    "parse",
    "span_count",
]


@dataclass(frozen=True, slots=True)
class Event:
    """What happened to how many spans of one batch, and why."""

    event: str
    reason: str
    spans: int


class Events:
    """Counts what a plugin did to the spans of one batch.

    ``events.add("dropped", reason="environment=ci", spans=12)`` adds 12 to the
    count of (``dropped``, ``environment=ci``). The collector adds the counts to
    its metric ``otelcol_processor_python_plugin_events`` with the attributes
    ``event`` and ``reason``, so keep both to a small, fixed set of values:
    never put span data such as ids or free-form attribute values in a reason.
    """

    __slots__ = ("_counts",)

    def __init__(self) -> None:
        self._counts: dict[tuple[str, str], int] = {}

    def add(self, event: str, reason: str = "", spans: int = 1) -> None:
        """Count `spans` spans (default 1) for `event` with `reason` (may be empty)."""
        if not event:
            raise ValueError("event must be a non-empty string")
        if spans < 0:
            raise ValueError(f"spans must be >= 0, got {spans}")
        if spans:
            key = (event, reason)
            self._counts[key] = self._counts.get(key, 0) + spans

    def count(self, event: str, reason: str | None = None) -> int:
        """Spans counted for `event`, for one `reason` or (None) summed over all reasons."""
        return sum(
            spans
            for (name, why), spans in self._counts.items()
            if name == event and (reason is None or why == reason)
        )

    def __iter__(self) -> Iterator[Event]:
        for (event, reason), spans in self._counts.items():
            yield Event(event, reason, spans)

    def __len__(self) -> int:
        return len(self._counts)

    def __bool__(self) -> bool:
        return bool(self._counts)

    def __repr__(self) -> str:
        return f"Events({list(self)!r})"


@dataclass(frozen=True, slots=True)
class Ownership:
    """The attributes only a plugin sets, and what a span carries when it could not run.

    See the module docstring; the wire form is ``spancost.wire.v1.Ownership``.
    """

    keys: tuple[str, ...]
    """Attribute keys the plugin owns: every copy a sender put on a span is removed."""
    unprocessed: Mapping[str, AttributeValue] = field(default_factory=dict)
    """Put on each span the plugin could not run on, e.g. ``cost.unpriced_reason``."""
    unprocessed_event: tuple[str, str] = ("", "")
    """(event, reason) each such span is counted under; ("", "") counts nothing."""
    trusted_key: str = ""
    """Non-empty: a span whose first attribute of this key is a finite double >= 0 was
    priced by a trusted upstream collector and keeps its owned attributes."""

    def merged(self, other: Ownership) -> Ownership:
        """Both ownerships at once (a chain of plugins owns what each step owns)."""
        keys = self.keys + tuple(k for k in other.keys if k not in self.keys)
        event = self.unprocessed_event if self.unprocessed_event[0] else other.unprocessed_event
        return Ownership(
            keys=keys,
            unprocessed={**other.unprocessed, **self.unprocessed},
            unprocessed_event=event,
            trusted_key=self.trusted_key or other.trusted_key,
        )


class Plugin(abc.ABC):
    """Base class of every spancost processor plugin (see the module docstring)."""

    ownership: Ownership | None = None
    """The attributes this instance owns (None: none); see the module docstring."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        """Validate `config` (the processor's ``config`` map, JSON-shaped) and set up.

        Raise `ConfigError` naming the key (a dotted path such as ``tag.staging``
        or ``drop[1]``) for anything wrong: declare the keys as a `ConfigModel` and
        read them with ``parse(Model, config)``, which does this for you. The base
        implementation accepts no keys at all.
        """
        parse(NoSettings, config)

    @abc.abstractmethod
    def process(self, batch: ExportTraceServiceRequest, events: Events) -> None:
        """Change `batch` in place and count what happened in `events`."""

    def close(self) -> None:  # noqa: B027 - optional hook; most plugins hold nothing to release
        """Release what ``__init__`` acquired (threads, files); called exactly once."""


class AnnotatingPlugin(Plugin):
    """A plugin that describes its changes instead of making them: the fast form.

    Implement `annotate`: read `batch` (do not change it) and record in
    `changes` what to set, remove or drop, by span index (`iter_spans` gives
    the indices). The sidecar sends only the changes back and the collector
    applies them, which saves re-encoding the batch in Python and decoding it
    in Go. `process` is provided: it applies the changes in Python, for tests
    and for callers that want the full form.
    """

    @abc.abstractmethod
    def annotate(self, batch: ExportTraceServiceRequest, changes: Changes, events: Events) -> None:
        """Record in `changes` what should happen to `batch`; count it in `events`."""

    def annotate_wire(
        self, data: bytes, batch: ExportTraceServiceRequest, changes: Changes, events: Events
    ) -> None:
        """`annotate`, given also `data`, the bytes `batch` was parsed from.

        The sidecar calls this one. A plugin that searches serialized spans can
        use `data` instead of serializing `batch` again; the default ignores it.
        """
        self.annotate(batch, changes, events)

    def process(self, batch: ExportTraceServiceRequest, events: Events) -> None:
        changes = Changes(span_count(batch))
        self.annotate(batch, changes, events)
        changes.apply(batch)
