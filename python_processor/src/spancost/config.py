"""The typed configuration layer: models, the shared field types, and the errors.

Every plugin's, sink's and the budgets file's configuration is a `ConfigModel`
(pydantic), validated once at start-up with `parse`::

    class DropSettings(ConfigModel):
        drop: StrList = ()
        refresh: Duration = 900.0          # "15m" in the config, seconds here

    settings = parse(DropSettings, config, "prices")   # ConfigError("prices.drop[1]", ...)

One mapping (`config_error`) turns pydantic's first validation error into a
`ConfigError` naming the dotted key the user wrote (``tag.staging.team``,
``rules[2].match.service.name``) with spancost's wording (``must be a string, got
integer``, ``is required``, ``unknown key; allowed keys: ...``). A validator that
refuses a value raises `invalid(message)`; `invalid(message, "key")` names a key
below the one it validates (a check across fields). The models also give each
plugin's JSON Schema (`spancost.settings.schemas`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Final, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue, WithJsonSchema
from pydantic_core import PydanticCustomError, core_schema

from spancost.errors import ConfigError

__all__ = [
    "AttributeSetting",
    "Choice",
    "ConfigModel",
    "Duration",
    "HttpUrl",
    "Integer",
    "Name",
    "NameList",
    "NoSettings",
    "Number",
    "StrList",
    "attribute_map",
    "config_error",
    "default",
    "describe_type",
    "invalid",
    "join_index",
    "join_key",
    "list_of",
    "parse",
    "parse_duration",
]

_M = TypeVar("_M", bound=BaseModel)
_INVALID: Final = "spancost_invalid"


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


# -- errors ---------------------------------------------------------------------------


def invalid(message: str, *at: str | int) -> PydanticCustomError:
    """The error a validator raises: `message` at its value, or at the key path `at` below it."""
    return PydanticCustomError(_INVALID, "{message}", {"message": message, "at": at})


_EXPECTED: Final = {
    "string_type": "a string",
    "bool_type": "a boolean",
    "int_type": "an integer",
    "float_type": "a number",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
}


def config_error(exc: ValidationError, path: str = "") -> ConfigError:
    """The first error of `exc` as a `ConfigError` naming the key below `path`."""
    error = exc.errors(include_url=False)[0]
    location: list[str | int] = list(error["loc"])
    context = error.get("ctx") or {}
    kind = error["type"]
    if kind == _INVALID:
        location += context["at"]
        message = context["message"]
    elif kind == "missing":
        message = "is required"
    elif kind in _EXPECTED:
        message = f"must be {_EXPECTED[kind]}, got {describe_type(error['input'])}"
    elif kind == "too_short" and context.get("min_length") == 1:
        message = "must list at least one value"
    elif kind == "value_error":
        message = str(context.get("error", error["msg"]))
    else:
        message = error["msg"]
    key = path
    for part in location:
        key = join_index(key, part) if isinstance(part, int) else join_key(key, part)
    return ConfigError(key, message)


def parse(model: type[_M], data: object, path: str = "") -> _M:
    """`data` (JSON-shaped) validated as `model`; `ConfigError` names the key below `path`."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise config_error(exc, path) from exc


# -- models ---------------------------------------------------------------------------


class ConfigModel(BaseModel):
    """A section of a configuration: known keys only, exact JSON types, immutable.

    Strict: a string is never read as a number, nor a number as a boolean. Keys are
    the field names, or their aliases (``lambda``, ``service.name``).
    """

    model_config = ConfigDict(
        extra="forbid",
        frozen=True,
        strict=True,
        defer_build=True,
        # Defaults are written as a user would (``"15m"``) and read like their values.
        validate_default=True,
        use_attribute_docstrings=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: object) -> object:
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise invalid(f"must be a mapping, got {describe_type(data)}")
        for name in data:
            if not isinstance(name, str):
                raise invalid(f"keys must be strings, got {describe_type(name)} {name!r}")
        allowed = {field.alias or name for name, field in cls.model_fields.items()}
        for name in data:
            if name not in allowed:
                names = ", ".join(sorted(allowed)) if allowed else "none"
                raise invalid(f"unknown key; allowed keys: {names}", name)
        return dict(data)


def default(value: object, *, alias: str | None = None) -> Any:
    """A field's default as a user writes it (``"15m"``, ``{}``), validated like their value;
    `alias`: the key, when it cannot be the field's name (``lambda``)."""
    return Field(default=value, alias=alias)


class NoSettings(ConfigModel):
    """A configuration with no keys at all (the base plugin's and sink's)."""


# -- shared field types ---------------------------------------------------------------


def _list_of(what: str) -> Callable[[object], object]:
    def check(value: object) -> object:
        if not isinstance(value, list | tuple):
            raise invalid(f"must be {what}, got {describe_type(value)}")
        return tuple(value)

    return check


StrList = Annotated[tuple[str, ...], BeforeValidator(_list_of("a list of strings"))]
"""A list of strings; an error names the item (``drop[1]: must be a string, got integer``)."""


def list_of(what: str) -> BeforeValidator:
    """Refuses anything but a list, as ``must be <what>, got <type>``; a list becomes a tuple."""
    return BeforeValidator(_list_of(what))


def attribute_map(empty: str) -> AfterValidator:
    """Checks a map keyed by attribute names: at least one entry (else `empty`), none blank."""

    def check(attributes: dict[str, Any]) -> dict[str, Any]:
        if not attributes:
            raise invalid(empty)
        for key in attributes:
            if not key.strip():
                raise invalid("attribute name must not be empty", key)
        return attributes

    return AfterValidator(check)


def _name(value: object) -> object:
    if isinstance(value, str) and not value.strip():
        raise invalid("must not be empty")
    return value


Name = Annotated[str, BeforeValidator(_name)]
"""A string that is not blank (kept as written)."""

NameList = Annotated[tuple[Name, ...], BeforeValidator(_list_of("a list of strings"))]
"""A list of strings none of which is blank."""


def _http_url(value: object) -> object:
    if isinstance(value, str) and not re.match(r"https?://[^/\s:]", value):
        raise invalid(f"must be an http:// or https:// URL, got {value!r}")
    return value


HttpUrl = Annotated[
    str,
    BeforeValidator(_http_url),
    WithJsonSchema({"type": "string", "pattern": r"^https?://[^/\s:]"}),
]
"""An ``http://`` or ``https://`` URL with a host."""


def _attribute_value(value: object) -> object:
    if isinstance(value, bool | str | float):
        return value
    if isinstance(value, int):
        if not _INT64_MIN <= value <= _INT64_MAX:
            raise invalid(f"integer {value} does not fit in 64 bits")
        return value
    raise invalid(f"must be a string, boolean, integer or number, got {describe_type(value)}")


_INT64_MIN: Final = -(2**63)
_INT64_MAX: Final = 2**63 - 1

AttributeSetting = Annotated[
    str | bool | int | float,
    BeforeValidator(_attribute_value),
    WithJsonSchema({"type": ["string", "boolean", "integer", "number"]}),
]
"""A value to set on spans: a string, boolean, integer (64 bits) or number."""


class _Check:
    """A pydantic annotation whose `_check` validates the value (before the type's own
    validation when `_before`, else after it) and that gives its own JSON Schema."""

    __slots__ = ()
    _before: ClassVar[bool] = False

    def _check(self, value: Any) -> Any:
        raise NotImplementedError

    def _json_schema(self) -> JsonSchemaValue:
        raise NotImplementedError

    def __get_pydantic_core_schema__(
        self, source: Any, handler: Callable[[Any], core_schema.CoreSchema]
    ) -> core_schema.CoreSchema:
        if self._before:
            return core_schema.no_info_before_validator_function(self._check, handler(source))
        return core_schema.no_info_after_validator_function(self._check, handler(source))

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: Callable[[Any], JsonSchemaValue]
    ) -> JsonSchemaValue:
        return self._json_schema()


@dataclass(frozen=True, slots=True)
class Number(_Check):
    """A finite number (an integer or a float, never a boolean) within bounds, as a float.

    Each bound's error reads ``must be >= 0, got -1.0``; `message` replaces the
    wording of every bound (``must be above 0`` → ``must be above 0, got -1.0``).
    """

    _before: ClassVar[bool] = True
    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    message: str | None = None

    def _json_schema(self) -> JsonSchemaValue:
        json_schema: dict[str, Any] = {"type": "number"}
        for bound, name in (
            (self.ge, "minimum"),
            (self.gt, "exclusiveMinimum"),
            (self.le, "maximum"),
            (self.lt, "exclusiveMaximum"),
        ):
            if bound is not None:
                json_schema[name] = bound
        return json_schema

    def _check(self, value: object) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise invalid(f"must be a number, got {describe_type(value)}")
        number = float(value)
        if not math.isfinite(number):
            raise invalid(f"must be a finite number, got {value!r}")
        for bound, refused, wording in (
            (
                self.ge,
                self.ge is not None and number < self.ge,
                "must be >= {bound:g}, got {value!r}",
            ),
            (self.gt, self.gt is not None and number <= self.gt, "must be > {bound:g}"),
            (
                self.le,
                self.le is not None and number > self.le,
                "must be <= {bound:g}, got {value!r}",
            ),
            (
                self.lt,
                self.lt is not None and number >= self.lt,
                "must be < {bound:g}, got {value!r}",
            ),
        ):
            if refused:
                if self.message is not None:
                    raise invalid(f"{self.message}, got {number!r}")
                raise invalid(wording.format(bound=bound, value=value))
        return number


@dataclass(frozen=True, slots=True)
class Integer(_Check):
    """An integer (never a boolean) from `ge` to `le`.

    The range error reads ``must be between 1 and 20, got 0`` or ``must be at least 1,
    got 0``; `message` replaces its wording.
    """

    ge: int | None = None
    le: int | None = None
    message: str | None = None

    def _json_schema(self) -> JsonSchemaValue:
        json_schema: dict[str, Any] = {"type": "integer"}
        if self.ge is not None:
            json_schema["minimum"] = self.ge
        if self.le is not None:
            json_schema["maximum"] = self.le
        return json_schema

    def _check(self, value: int) -> int:
        if (self.ge is not None and value < self.ge) or (self.le is not None and value > self.le):
            if self.message is not None:
                wording = self.message
            elif self.le is not None:
                wording = f"must be between {self.ge} and {self.le}"
            else:
                wording = f"must be at least {self.ge}"
            raise invalid(f"{wording}, got {value}")
        return value


@dataclass(frozen=True, slots=True)
class Choice(_Check):
    """A string that must be one of `values` (``must be one of standard, adaptive, got 'x'``).

    `message` replaces ``must be one of standard, adaptive``; `fold` compares ignoring
    case and surrounding whitespace and gives the value as `values` spells it.
    """

    values: tuple[str, ...]
    message: str | None = None
    fold: bool = False

    def _json_schema(self) -> JsonSchemaValue:
        if self.fold:
            return {"type": "string"}
        return {"enum": list(self.values)}

    def _check(self, value: str) -> str:
        if self.fold:
            spelled = {choice.casefold(): choice for choice in self.values}
            found = spelled.get(value.strip().casefold())
            if found is not None:
                return found
        elif value in self.values:
            return value
        wording = self.message or f"must be one of {', '.join(self.values)}"
        raise invalid(f"{wording}, got {value!r}")


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


def _duration(value: object) -> float:
    try:
        return parse_duration(value, "")
    except ConfigError as exc:
        raise invalid(exc.message) from exc


DURATION_PATTERN: Final = r"^\s*((\d+(\.\d*)?|\.\d+)(ms|s|m|h))+\s*$"

Duration = Annotated[
    float,
    BeforeValidator(_duration),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "a duration in Go's notation: 250ms, 30s, 15m, 1h, 1h30m",
        }
    ),
]
"""A duration such as ``15m``, ``250ms`` or ``1h30m`` (as `parse_duration`), in seconds."""
