"""Finds plugins through the entry-point groups ``spancost.processors`` and ``spancost.sinks``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata
from typing import Any

from spancost.errors import PluginLoadError, PluginNotFoundError
from spancost.plugin import Plugin
from spancost.sink import Sink

__all__ = [
    "ENTRY_POINT_GROUP",
    "SINK_ENTRY_POINT_GROUP",
    "PluginSpec",
    "SinkSpec",
    "installed_plugin_names",
    "load_plugin",
    "load_sink",
]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "spancost.processors"
SINK_ENTRY_POINT_GROUP = "spancost.sinks"


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """An installed plugin: its entry-point name, its class and who provides it."""

    name: str
    factory: type[Plugin]
    version: str
    """``"<distribution name> <version>"``, e.g. ``"spancost 0.1.0"``."""


@dataclass(frozen=True, slots=True)
class SinkSpec:
    """An installed sink: its entry-point name, its class and who provides it."""

    name: str
    factory: type[Sink]
    version: str


def installed_plugin_names(group: str = ENTRY_POINT_GROUP) -> list[str]:
    """The names of every installed plugin of `group`, sorted."""
    return sorted({ep.name for ep in metadata.entry_points(group=group)})


def _describe_distribution(entry_point: metadata.EntryPoint) -> str:
    dist = entry_point.dist
    if dist is None:
        logger.warning(
            "plugin %s: cannot tell which distribution provides it; reporting version 'unknown'",
            entry_point.name,
        )
        return "unknown"
    return f"{dist.name} {dist.version}"


def load_plugin(name: str) -> PluginSpec:
    """Import the processor plugin `name` and check that it is a `Plugin` subclass.

    Raises `PluginNotFoundError` (listing the installed names) when no
    distribution provides `name`, `PluginLoadError` when importing it fails or
    it is not a concrete `Plugin` subclass.
    """
    factory: type[Plugin]
    factory, version = _load(name, ENTRY_POINT_GROUP, Plugin)
    return PluginSpec(name=name, factory=factory, version=version)


def load_sink(name: str) -> SinkSpec:
    """Import the sink `name` (group ``spancost.sinks``); errors as `load_plugin`."""
    factory: type[Sink]
    factory, version = _load(name, SINK_ENTRY_POINT_GROUP, Sink)
    return SinkSpec(name=name, factory=factory, version=version)


def _load(name: str, group: str, base: type) -> tuple[Any, str]:
    candidates = list(metadata.entry_points(group=group, name=name))
    if not candidates:
        raise PluginNotFoundError(name, installed_plugin_names(group), group)
    entry_point = candidates[0]
    if len({ep.value for ep in candidates}) > 1:
        logger.warning(
            "plugin %s is provided %d times (%s); using %s",
            name,
            len(candidates),
            ", ".join(ep.value for ep in candidates),
            entry_point.value,
        )
    try:
        factory = entry_point.load()
    except Exception as exc:
        raise PluginLoadError(f"plugin {name!r}: cannot import {entry_point.value}: {exc}") from exc
    if not (isinstance(factory, type) and issubclass(factory, base)):
        raise PluginLoadError(
            f"plugin {name!r}: {entry_point.value} is not a subclass of"
            f" {base.__module__}.{base.__qualname__}"
        )
    abstract = getattr(factory, "__abstractmethods__", None)
    if abstract:
        missing = ", ".join(sorted(abstract))
        raise PluginLoadError(f"plugin {name!r}: {entry_point.value} does not implement {missing}")
    return factory, _describe_distribution(entry_point)
