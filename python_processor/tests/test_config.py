"""The typed configuration layer: the one mapping from validation errors to the key the
user wrote, with spancost's wording, and the shared field types."""

from __future__ import annotations

from typing import Annotated, Any

import pytest

from spancost.config import (
    ConfigModel,
    Duration,
    Integer,
    Number,
    StrList,
    default,
    describe_type,
    join_index,
    join_key,
    parse,
)
from spancost.errors import ConfigError


def error_of(call: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        call()
    return caught.value


class Tags(ConfigModel):
    team: str = ""


class Section(ConfigModel):
    drop: StrList = ()
    tag: dict[str, Tags] = default({})
    name: str = "x"
    flag: bool = False


class Required(ConfigModel):
    name: str


def test_config_error_str_names_the_key() -> None:
    assert str(ConfigError("drop[1]", "must be a string")) == "config.drop[1]: must be a string"
    assert str(ConfigError("", "is not valid JSON")) == "config: is not valid JSON"
    error = ConfigError("tag.staging", "bad")
    assert (error.key, error.message) == ("tag.staging", "bad")


def test_join_helpers() -> None:
    assert join_key("", "drop") == "drop"
    assert join_key("tag", "ci") == "tag.ci"
    assert join_index("drop", 2) == "drop[2]"


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "boolean"),
        (1, "integer"),
        (1.5, "number"),
        ("x", "string"),
        ({}, "mapping"),
        ([], "list"),
        (object(), "object"),
    ],
)
def test_describe_type(value: object, name: str) -> None:
    assert describe_type(value) == name


def test_section_must_be_a_mapping_with_string_keys() -> None:
    assert error_of(lambda: parse(Section, [1])).key == ""
    error = error_of(lambda: parse(Section, {"tag": 3}))
    assert str(error) == "config.tag: must be a mapping, got integer"
    assert "keys must be strings" in str(error_of(lambda: parse(Section, {1: "x"})))


def test_unknown_keys_list_the_allowed_keys() -> None:
    error = error_of(lambda: parse(Section, {"drop": [], "dorp": []}))
    assert str(error) == "config.dorp: unknown key; allowed keys: drop, flag, name, tag"

    class Empty(ConfigModel):
        pass

    assert "allowed keys: none" in str(error_of(lambda: parse(Empty, {"a": 1})))


def test_nested_sections_carry_their_path() -> None:
    error = error_of(lambda: parse(Section, {"tag": {"staging": {"team": 1}}}))
    assert str(error) == "config.tag.staging.team: must be a string, got integer"
    error = error_of(lambda: parse(Section, {"tag": {"staging": {"taem": 1}}}, "x"))
    assert str(error) == "config.x.tag.staging.taem: unknown key; allowed keys: team"


def test_required_and_defaults() -> None:
    assert str(error_of(lambda: parse(Required, {}))) == "config.name: is required"
    section = parse(Section, {})
    assert (section.name, section.flag, section.drop, section.tag) == ("x", False, (), {})


def test_typed_fields_refuse_the_wrong_type() -> None:
    def message(config: dict[str, Any]) -> str:
        return str(error_of(lambda: parse(Section, config)))

    assert message({"name": 1}) == "config.name: must be a string, got integer"
    assert message({"flag": 1}) == "config.flag: must be a boolean, got integer"
    assert "must be a list of strings, got string" in message({"drop": "ci"})
    assert message({"drop": ["a", None]}) == "config.drop[1]: must be a string, got null"


def test_typed_fields_return_values() -> None:
    section = parse(Section, {"name": "y", "flag": True, "drop": ["a", "b"]})
    assert (section.name, section.flag, section.drop) == ("y", True, ("a", "b"))


class Numbers(ConfigModel):
    a: Annotated[float, Number()] = 0.0
    c: Annotated[float, Number(le=1.0)] = 0.0
    d: Annotated[float, Number(lt=1.0)] = 0.0
    missing: Annotated[float, Number()]
    count: Annotated[int, Integer(ge=1, le=20)] = 1
    every: Duration = default("15m")


def test_numbers() -> None:
    assert parse(Numbers, {"a": 1, "missing": 0.25}).a == 1.0
    with pytest.raises(ConfigError, match=r"config\.x\.c: must be <= 1"):
        parse(Numbers, {"c": 2.0, "missing": 0}, "x")
    with pytest.raises(ConfigError, match=r"config\.x\.d: must be < 1"):
        parse(Numbers, {"d": 1.0, "missing": 0}, "x")
    with pytest.raises(ConfigError, match=r"config\.x\.missing: is required"):
        parse(Numbers, {}, "x")
    with pytest.raises(ConfigError, match=r"config\.a: must be a number, got boolean"):
        parse(Numbers, {"a": True, "missing": 0})
    with pytest.raises(ConfigError, match=r"config\.count: must be between 1 and 20, got 0"):
        parse(Numbers, {"count": 0, "missing": 0})
    with pytest.raises(ConfigError, match=r"config\.count: must be an integer, got number"):
        parse(Numbers, {"count": 1.0, "missing": 0})


def test_durations_read_as_seconds() -> None:
    assert parse(Numbers, {"missing": 0}).every == 900.0
    assert parse(Numbers, {"missing": 0, "every": "1h30m"}).every == 5400.0
    with pytest.raises(ConfigError, match=r"config\.every: must be a duration such as '15m'"):
        parse(Numbers, {"missing": 0, "every": 900})
    with pytest.raises(ConfigError, match=r"config\.every: must be longer than zero"):
        parse(Numbers, {"missing": 0, "every": "0s"})
