"""The sink API: what a spancost sink implements.

A sink receives the spans that leave a collector pipeline, through the
collector's own exporter (the stock ``otlp_grpc`` exporter pointed at the
sidecar, with its sending queue, retries and persistent storage), and stores
what it needs of them. A sink is a class derived from `Sink`, published under
the entry-point group ``spancost.sinks``::

    [project.entry-points."spancost.sinks"]
    "acme.archive" = "acme_spancost.archive:ArchiveSink"

It is configured in the collector YAML under the ``python`` extension::

    extensions:
      python:
        command: ["spancost", "sidecar"]
        endpoint: unix:///var/run/spancost/sidecar.sock
        sinks:
          totals: {plugin: spancost.totals, config: {...}}
    exporters:
      otlp_grpc/totals:
        endpoint: unix:///var/run/spancost/sidecar.sock
        headers: {spancost-sink: totals}

The sidecar then:

1. creates the sink (``Sink(config)``) when the collector starts, and again
   after a sidecar restart; ``__init__`` raises `ConfigError` naming the key
   for a wrong configuration (the collector refuses to start) and puts problems
   that should not stop the collector (a database not reachable yet) in
   ``self.warnings``, which the collector logs;
2. calls ``export(batch, events)`` for every batch the exporter sends, possibly
   from several threads at once. The sidecar acknowledges the batch when
   ``export`` returns, so return only once the batch is stored durably; raise
   `SinkUnavailableError` when it is not (the exporter keeps the batch and
   retries: a batch may therefore arrive more than once, and a sink must
   absorb replays). Count what happened to the spans in ``events``; the
   sidecar keeps running totals that the collector exposes as metrics;
3. reads ``gauges()`` when the collector polls its statistics;
4. calls ``close()`` once, after every export handed to it has finished.

A sink that books attributes as facts (``spancost.totals`` books ``cost.usd`` as
money) lists them in `Sink.needs_owner`: the collector then refuses to start
unless every pipeline that feeds the sink runs a python processor whose plugin
owns them (`spancost.plugin.Ownership`), so that no sender's value is booked.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any

from spancost.config import NoSettings, parse
from spancost.errors import ConfigError, SinkUnavailableError
from spancost.plugin import Events, ExportTraceServiceRequest

__all__ = [
    "ConfigError",
    "Events",
    "ExportTraceServiceRequest",
    "Sink",
    "SinkUnavailableError",
]


class Sink(abc.ABC):
    """Base class of every spancost sink (see the module docstring)."""

    needs_owner: tuple[str, ...] = ()
    """Attributes the sink books as facts: only a processor that owns them may set them."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        """Validate `config` (the sink's ``config`` map) and set up; the base accepts no keys."""
        parse(NoSettings, config)
        self.warnings: list[str] = []

    @abc.abstractmethod
    def export(self, batch: ExportTraceServiceRequest, events: Events) -> None:
        """Store `batch` durably, or raise `SinkUnavailableError`; count in `events`."""

    def gauges(self) -> Mapping[str, float]:
        """Current values the collector exposes as gauges (name → value)."""
        return {}

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release what ``__init__`` acquired (threads, connections); called exactly once."""
