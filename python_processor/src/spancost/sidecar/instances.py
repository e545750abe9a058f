"""The plugin instances a sidecar serves, keyed by the collector component's name.

This is the sidecar's core, free of gRPC: bytes and names in, bytes, events
and `spancost.errors` out. The servicers translate the errors into status codes.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from google.protobuf.message import DecodeError

from spancost.changes import Changes, span_count
from spancost.config import describe_type
from spancost.errors import (
    ConfigError,
    InvalidRequestError,
    PluginFailedError,
    SinkUnavailableError,
    SpancostError,
    UnknownInstanceError,
    UnknownSinkError,
)
from spancost.plugin import (
    AnnotatingPlugin,
    Event,
    Events,
    ExportTraceServiceRequest,
    Ownership,
    Plugin,
)
from spancost.registry import PluginSpec, SinkSpec, load_plugin, load_sink
from spancost.sink import Sink
from spancost.wire.v1 import sidecar_pb2

__all__ = ["ANSWER_FORMS", "AnswerForm", "PluginInstances", "ProcessResult", "SinkStats"]

AnswerForm = Literal["auto", "full"]
ANSWER_FORMS: tuple[AnswerForm, ...] = ("auto", "full")

logger = logging.getLogger(__name__)

_T = TypeVar("_T")


@dataclass(slots=True)
class _Slot:
    """One configured plugin instance (or sink) and the batches it is processing."""

    instance: str
    plugin_name: str
    plugin: Plugin | Sink
    in_flight: int = 0
    retired: bool = False
    closed: bool = False
    # Sinks only: running totals since the sink was configured (under the lock).
    counts: Counter[tuple[str, str]] = field(default_factory=Counter)
    unavailable: int = 0


@dataclass(frozen=True, slots=True)
class SinkStats:
    """What one sink counted since it was configured (see `PluginInstances.stats`)."""

    sink: str
    counts: list[Event]
    gauges: dict[str, float]
    unavailable: int


class SinkBackend(Protocol):
    """Where `PluginInstances` runs its sinks when not in its own process
    (`spancost.sidecar.sinkhost.SinkHost`: a child process)."""

    def configure_sink(
        self, sink: str, plugin_name: str, config_json: str
    ) -> tuple[str, list[str], tuple[str, ...]]: ...

    def export(self, sink: str, data: bytes) -> list[Event]: ...

    def stats(self) -> list[SinkStats]: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """A processed batch and what the plugin counted.

    Exactly one of `traces` (the full form: the batch, serialized) and
    `changes` (the fast form of an `AnnotatingPlugin`) is set.
    """

    events: list[Event]
    traces: bytes | None = None
    changes: sidecar_pb2.BatchChanges | None = None


class PluginInstances:
    """Creates, replaces, runs and closes plugin instances; safe for concurrent use.

    An instance replaced by `configure`, or retired by `close`, is closed once
    the batches it is processing have finished, never under their feet.
    """

    def __init__(
        self,
        load: Callable[[str], PluginSpec] = load_plugin,
        answer_form: AnswerForm = "auto",
        load_sink: Callable[[str], SinkSpec] = load_sink,
        sinks: SinkBackend | None = None,
    ) -> None:
        """`answer_form` "full" makes annotating plugins answer with the whole batch too;
        `sinks` runs the sinks elsewhere (None: here, in this process)."""
        self._load = load
        self._sink_backend = sinks
        self._load_sink = load_sink
        self._fast_form = answer_form == "auto"
        self._lock = threading.Lock()
        self._slots: dict[str, _Slot] = {}
        self._sinks: dict[str, _Slot] = {}

    def configure(self, instance: str, plugin_name: str, config_json: str) -> str:
        """Create (or replace) `instance` running `plugin_name`; return the plugin's version.

        Raises `InvalidRequestError` (empty names), `ConfigError`,
        `PluginNotFoundError`, `PluginLoadError` or `PluginFailedError`
        (the plugin raised something other than `ConfigError`).
        """
        if not instance:
            raise InvalidRequestError("instance must not be empty")
        if not plugin_name:
            raise InvalidRequestError("plugin must not be empty")
        config = _parse_config(config_json)
        spec = self._load(plugin_name)
        plugin = _create(plugin_name, lambda: spec.factory(config))
        self._install(self._slots, _Slot(instance, plugin_name, plugin), spec.version, "instance")
        return spec.version

    def ownership(self, instance: str) -> Ownership | None:
        """What the plugin of `instance` owns (`Plugin.ownership`); None if nothing,
        or if no such instance is configured."""
        with self._lock:
            slot = self._slots.get(instance)
        if slot is None or not isinstance(slot.plugin, Plugin):
            return None
        return slot.plugin.ownership

    def configure_sink(
        self, sink: str, plugin_name: str, config_json: str
    ) -> tuple[str, list[str], tuple[str, ...]]:
        """Create (or replace) the sink named `sink`; return the plugin's version, the
        warnings it reported and the attributes it needs an owner for
        (`Sink.needs_owner`). Raises as `configure`."""
        if not sink:
            raise InvalidRequestError("sink name (instance) must not be empty")
        if not plugin_name:
            raise InvalidRequestError("plugin must not be empty")
        if self._sink_backend is not None:
            return self._sink_backend.configure_sink(sink, plugin_name, config_json)
        config = _parse_config(config_json)
        spec = self._load_sink(plugin_name)
        created = _create(plugin_name, lambda: spec.factory(config))
        warnings = [str(warning) for warning in getattr(created, "warnings", [])]
        for warning in warnings:
            logger.warning("sink %s (plugin %s): %s", sink, plugin_name, warning)
        self._install(self._sinks, _Slot(sink, plugin_name, created), spec.version, "sink")
        return spec.version, warnings, tuple(getattr(created, "needs_owner", ()))

    def export(self, sink: str, data: bytes) -> list[Event]:
        """Hand the serialized `ExportTraceServiceRequest` `data` to the sink named
        `sink` (empty: the only sink); return its events.

        Returns once the sink stored the batch. Raises `UnknownSinkError`,
        `InvalidRequestError` (bytes that do not parse), `SinkUnavailableError`
        (not stored: retry) or `PluginFailedError`.
        """
        if self._sink_backend is not None:
            return self._sink_backend.export(sink, data)
        slot = self._acquire_sink(sink)
        events = Events()
        try:
            target = slot.plugin
            assert isinstance(target, Sink)
            batch = _parse_traces(data)
            try:
                target.export(batch, events)
            except SinkUnavailableError:
                with self._lock:
                    slot.unavailable += 1
                raise
            except Exception as exc:
                raise PluginFailedError(
                    f"sink {slot.instance!r} (plugin {slot.plugin_name!r}) raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            with self._lock:
                for event in events:
                    slot.counts[(event.event, event.reason)] += event.spans
            return list(events)
        finally:
            self._release(slot)

    def stats(self) -> list[SinkStats]:
        """Every sink's running totals and current gauges, by sink name."""
        if self._sink_backend is not None:
            return self._sink_backend.stats()
        with self._lock:
            slots = sorted(self._sinks.values(), key=lambda slot: slot.instance)
            taken = [
                (slot, [Event(e, r, n) for (e, r), n in sorted(slot.counts.items())])
                for slot in slots
            ]
            unavailable = {slot.instance: slot.unavailable for slot in slots}
        result = []
        for slot, counts in taken:
            target = slot.plugin
            assert isinstance(target, Sink)
            try:
                gauges = {name: float(value) for name, value in target.gauges().items()}
            except Exception:
                logger.exception("sink %s: gauges() failed", slot.instance)
                gauges = {}
            result.append(SinkStats(slot.instance, counts, gauges, unavailable[slot.instance]))
        return result

    def _install(self, table: dict[str, _Slot], slot: _Slot, version: str, what: str) -> None:
        with self._lock:
            previous = table.get(slot.instance)
            table[slot.instance] = slot
        if previous is None:
            logger.info(
                "configured %s %s: plugin %s (%s)", what, slot.instance, slot.plugin_name, version
            )
        else:
            logger.info(
                "reconfigured %s %s: plugin %s (%s) replaces %s",
                what,
                slot.instance,
                slot.plugin_name,
                version,
                previous.plugin_name,
            )
            self._retire(previous)

    def process(self, instance: str, traces: bytes) -> ProcessResult:
        """Run `instance`'s plugin over the serialized batch `traces`.

        Raises `UnknownInstanceError`, `InvalidRequestError` (bytes that do not
        parse) or `PluginFailedError` (the plugin raised).
        """
        slot = self._acquire(instance)
        plugin = slot.plugin
        assert isinstance(plugin, Plugin)
        try:
            batch = _parse_traces(traces)
            events = Events()
            try:
                if self._fast_form and isinstance(plugin, AnnotatingPlugin):
                    changes = Changes(span_count(batch))
                    plugin.annotate_wire(traces, batch, changes, events)
                    return ProcessResult(list(events), changes=changes.to_proto())
                plugin.process(batch, events)
            except Exception as exc:
                raise PluginFailedError(
                    f"plugin {slot.plugin_name!r} of instance {instance!r} raised "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            return ProcessResult(list(events), traces=batch.SerializeToString())
        finally:
            self._release(slot)

    def close(self) -> None:
        """Retire every instance: each is closed once its in-flight batches finish."""
        with self._lock:
            slots = [*self._slots.values(), *self._sinks.values()]
            self._slots.clear()
            self._sinks.clear()
        for slot in slots:
            self._retire(slot)
        if self._sink_backend is not None:
            self._sink_backend.close()

    def _acquire(self, instance: str) -> _Slot:
        with self._lock:
            slot = self._slots.get(instance)
            if slot is None:
                raise UnknownInstanceError(instance)
            slot.in_flight += 1
            return slot

    def _acquire_sink(self, sink: str) -> _Slot:
        with self._lock:
            slot = self._sinks.get(sink) if sink else None
            if slot is None and not sink and len(self._sinks) == 1:
                slot = next(iter(self._sinks.values()))
            if slot is None:
                raise UnknownSinkError(sink, sorted(self._sinks))
            slot.in_flight += 1
            return slot

    def _release(self, slot: _Slot) -> None:
        with self._lock:
            slot.in_flight -= 1
            close_now = slot.retired and not slot.in_flight and not slot.closed
            if close_now:
                slot.closed = True
        if close_now:
            _close(slot)

    def _retire(self, slot: _Slot) -> None:
        with self._lock:
            slot.retired = True
            in_flight = slot.in_flight
            close_now = not in_flight and not slot.closed
            if close_now:
                slot.closed = True
        if close_now:
            _close(slot)
        elif in_flight:
            logger.info(
                "instance %s (plugin %s) still has %d batch(es) in flight; "
                "closing it when they finish",
                slot.instance,
                slot.plugin_name,
                in_flight,
            )


def _parse_traces(data: bytes) -> ExportTraceServiceRequest:
    try:
        return ExportTraceServiceRequest.FromString(data)
    except DecodeError as exc:
        raise InvalidRequestError(
            f"traces are not a serialized ExportTraceServiceRequest: {exc}"
        ) from exc


def _parse_config(config_json: str) -> dict[str, Any]:
    try:
        config = json.loads(config_json) if config_json.strip() else {}
    except json.JSONDecodeError as exc:
        raise ConfigError("", f"is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ConfigError("", f"must be a mapping, got {describe_type(config)}")
    return config


def _create(plugin_name: str, factory: Callable[[], _T]) -> _T:
    try:
        return factory()
    except SpancostError:
        raise
    except Exception as exc:
        raise PluginFailedError(
            f"plugin {plugin_name!r} failed to start: {type(exc).__name__}: {exc}"
        ) from exc


def _close(slot: _Slot) -> None:
    try:
        slot.plugin.close()
    except Exception:
        # A failing close must not stop the sidecar from closing the others.
        logger.exception("instance %s: plugin %s failed to close", slot.instance, slot.plugin_name)
    else:
        logger.debug("instance %s: plugin %s closed", slot.instance, slot.plugin_name)
