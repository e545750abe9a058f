"""Finds plugins through the entry-point group ``spancost.processors``."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import metadata

from spancost.errors import PluginLoadError, PluginNotFoundError
from spancost.plugin import Plugin

__all__ = ["ENTRY_POINT_GROUP", "PluginSpec", "installed_plugin_names", "load_plugin"]

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "spancost.processors"


@dataclass(frozen=True, slots=True)
class PluginSpec:
    """An installed plugin: its entry-point name, its class and who provides it."""

    name: str
    factory: type[Plugin]
    version: str
    """``"<distribution name> <version>"``, e.g. ``"spancost 0.1.0"``."""


def installed_plugin_names() -> list[str]:
    """The names of every installed plugin, sorted."""
    return sorted({ep.name for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)})


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
    """Import the plugin `name` and check that it is a `Plugin` subclass.

    Raises `PluginNotFoundError` (listing the installed names) when no
    distribution provides `name`, `PluginLoadError` when importing it fails or
    it is not a concrete `Plugin` subclass.
    """
    candidates = list(metadata.entry_points(group=ENTRY_POINT_GROUP, name=name))
    if not candidates:
        raise PluginNotFoundError(name, installed_plugin_names())
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
    if not (isinstance(factory, type) and issubclass(factory, Plugin)):
        raise PluginLoadError(
            f"plugin {name!r}: {entry_point.value} is not a subclass of spancost.plugin.Plugin"
        )
    if getattr(factory, "__abstractmethods__", None):
        missing = ", ".join(sorted(factory.__abstractmethods__))
        raise PluginLoadError(f"plugin {name!r}: {entry_point.value} does not implement {missing}")
    return PluginSpec(name=name, factory=factory, version=_describe_distribution(entry_point))
