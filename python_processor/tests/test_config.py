from __future__ import annotations

from typing import Any

import pytest

from spancost.config import ConfigSection, describe_type, join_index, join_key
from spancost.errors import ConfigError


def error_of(call: Any) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        call()
    return caught.value


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
    assert error_of(lambda: ConfigSection([1])).key == ""
    error = error_of(lambda: ConfigSection({"tag": 3}).get_section("tag"))
    assert str(error) == "config.tag: must be a mapping, got integer"
    assert "keys must be strings" in str(error_of(lambda: ConfigSection({1: "x"})))


def test_allow_only_lists_the_allowed_keys() -> None:
    section = ConfigSection({"drop": [], "dorp": []})
    error = error_of(lambda: section.allow_only("drop", "tag"))
    assert str(error) == "config.dorp: unknown key; allowed keys: drop, tag"
    assert "allowed keys: none" in str(error_of(section.allow_only))


def test_nested_sections_carry_their_path() -> None:
    section = ConfigSection({"tag": {"staging": {"team": 1}}})
    nested = dict(section.get_section("tag").sections())["staging"]
    assert nested.path == "tag.staging"
    assert nested.key("team") == "tag.staging.team"
    error = error_of(lambda: nested.get_str("team"))
    assert str(error) == "config.tag.staging.team: must be a string, got integer"


def test_required_and_defaults() -> None:
    section = ConfigSection({})
    assert str(error_of(lambda: section.get_str("name"))) == "config.name: is required"
    assert section.get_str("name", default="x") == "x"
    assert section.get_bool("flag", default=False) is False
    assert section.get_str_list("names", default=["a"]) == ["a"]
    assert section.get_section("sub", default={}).path == "sub"
    assert section.get_raw("raw", default=None) is None


def test_typed_getters_refuse_the_wrong_type() -> None:
    section = ConfigSection({"s": 1, "b": 1, "i": True, "l": "ci", "items": ["a", None]})
    assert str(error_of(lambda: section.get_str("s"))) == "config.s: must be a string, got integer"
    assert (
        str(error_of(lambda: section.get_bool("b"))) == "config.b: must be a boolean, got integer"
    )
    assert "must be a list of strings, got string" in str(
        error_of(lambda: section.get_str_list("l"))
    )
    error = error_of(lambda: section.get_str_list("items"))
    assert str(error) == "config.items[1]: must be a string, got null"


def test_typed_getters_return_values() -> None:
    section = ConfigSection({"s": "x", "b": True, "l": ["a", "b"]})
    assert section.get_str("s") == "x"
    assert section.get_bool("b") is True
    assert section.get_str_list("l") == ["a", "b"]
    assert "s" in section
    assert len(section) == 3
    assert dict(section.items())["s"] == "x"
