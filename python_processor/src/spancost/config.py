"""Helpers that read a plugin's configuration and name the offending key on error.

A plugin receives its configuration as plain JSON-shaped data (the processor's
`config` map). `ConfigSection` wraps one mapping together with its dotted path
so that every error it raises is a `ConfigError` naming the exact key::

    section = ConfigSection(config)
    section.allow_only("drop", "tag")
    drop = section.get_str_list("drop", default=[])     # ConfigError("drop[1]", ...)
    tag = section.get_section("tag", default={})          # nested: ConfigError("tag.x", ...)
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, TypeVar

from spancost.errors import ConfigError

__all__ = ["MISSING", "ConfigSection", "describe_type", "join_index", "join_key", "parse_duration"]

_T = TypeVar("_T")


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Final[Any] = _Missing()
"""Default for getters: the key is required."""


def join_key(path: str, name: str) -> str:
    """The dotted path of `name` inside the section at `path` (``tag`` + ``ci`` → ``tag.ci``)."""
    return f"{path}.{name}" if path else name


def join_index(path: str, index: int) -> str:
    """The path of item `index` of the list at `path` (``drop`` + 1 → ``drop[1]``)."""
    return f"{path}[{index}]"


_TYPE_NAMES: Final = (
    # bool before int: bool is an int subclass.
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (Mapping, "mapping"),
    (list, "list"),
    (tuple, "list"),
)


def describe_type(value: object) -> str:
    """The JSON/YAML name of a value's type, for error messages."""
    if value is None:
        return "null"
    for kind, name in _TYPE_NAMES:
        if isinstance(value, kind):
            return name
    return type(value).__name__


class ConfigSection:
    """One mapping of a configuration, with the dotted path it was found at."""

    def __init__(self, data: object, path: str = "") -> None:
        if not isinstance(data, Mapping):
            raise ConfigError(path, f"must be a mapping, got {describe_type(data)}")
        for name in data:
            if not isinstance(name, str):
                raise ConfigError(path, f"keys must be strings, got {describe_type(name)} {name!r}")
        self._data: Mapping[str, Any] = data
        self.path = path

    def key(self, name: str) -> str:
        """The dotted path of `name` in this section."""
        return join_key(self.path, name)

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __len__(self) -> int:
        return len(self._data)

    def items(self) -> Iterator[tuple[str, Any]]:
        """The raw (name, value) pairs, in the order the user wrote them."""
        return iter(self._data.items())

    def allow_only(self, *names: str) -> None:
        """Raise `ConfigError` for the first key that is not one of `names`."""
        for name in self._data:
            if name not in names:
                allowed = ", ".join(sorted(names)) if names else "none"
                raise ConfigError(self.key(name), f"unknown key; allowed keys: {allowed}")

    def get_raw(self, name: str, default: Any = MISSING) -> Any:
        """The value of `name` unchecked; `ConfigError` if it is required and absent."""
        if name in self._data:
            return self._data[name]
        if default is MISSING:
            raise ConfigError(self.key(name), "is required")
        return default

    def _get_typed(self, name: str, kind: type[_T], what: str, default: Any) -> _T:
        if name not in self._data:
            return self.get_raw(name, default)  # type: ignore[no-any-return]
        value = self._data[name]
        # bool is an int subclass: never let True pass for a number or vice versa.
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
            raise ConfigError(self.key(name), f"must be {what}, got {describe_type(value)}")
        return value

    def get_str(self, name: str, default: Any = MISSING) -> str:
        """A string value."""
        return self._get_typed(name, str, "a string", default)

    def get_bool(self, name: str, default: Any = MISSING) -> bool:
        """A boolean value (``true``/``false``; strings and numbers are refused)."""
        return self._get_typed(name, bool, "a boolean", default)

    def get_str_list(self, name: str, default: Any = MISSING) -> list[str]:
        """A list of strings; the error names the bad item, e.g. ``drop[1]``."""
        if name not in self._data:
            return list(self.get_raw(name, default))
        value = self._data[name]
        if not isinstance(value, list | tuple):
            raise ConfigError(
                self.key(name), f"must be a list of strings, got {describe_type(value)}"
            )
        for index, item in enumerate(value):
            if not isinstance(item, str):
                raise ConfigError(
                    join_index(self.key(name), index),
                    f"must be a string, got {describe_type(item)}",
                )
        return list(value)

    def get_section(self, name: str, default: Any = MISSING) -> ConfigSection:
        """A nested mapping, as a section whose errors carry the nested path."""
        return ConfigSection(self.get_raw(name, default), self.key(name))

    def sections(self) -> Iterable[tuple[str, ConfigSection]]:
        """Every value of this section as a nested section (for maps of maps)."""
        return [(name, ConfigSection(value, self.key(name))) for name, value in self._data.items()]


_DURATION_RE: Final = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)")
_DURATION_UNITS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(value: object, key: str) -> float:
    """Seconds in a duration such as ``30s``, ``15m``, ``1h``, ``1h30m`` or ``250ms``.

    The collector's own notation (Go's), so a config reads the same on both
    sides. Zero and negative durations are refused.
    """
    if not isinstance(value, str):
        raise ConfigError(key, f"must be a duration such as '15m', got {describe_type(value)}")
    text = value.strip()
    position, seconds = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != position:
            break
        seconds += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        position = match.end()
    if not text or position != len(text):
        raise ConfigError(key, f"must be a duration such as '30s', '15m' or '1h', got {value!r}")
    if not seconds > 0 or not math.isfinite(seconds):
        raise ConfigError(key, f"must be longer than zero, got {value!r}")
    return seconds
