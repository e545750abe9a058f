"""The example plugin users copy (examples/spancost-example-plugin)."""

from __future__ import annotations

import importlib
import tomllib
from pathlib import Path
from typing import Any

import pytest

from spancost.errors import ConfigError
from spancost.plugin import Event, Events, Plugin
from tests.builders import all_spans, attribute_map, batch, resource_spans, span


@pytest.fixture
def plugin_class(example_plugin_path: Path) -> type[Plugin]:
    module = importlib.import_module("spancost_example_plugin.service_tag")
    cls: type[Plugin] = module.ServiceTagPlugin
    return cls


CONFIG = {"services": ["checkout", "payment"], "attribute": "team", "value": "payments"}


def test_entry_point_names_the_plugin_class(example_plugin_path: Path) -> None:
    pyproject = tomllib.loads((example_plugin_path.parent / "pyproject.toml").read_text())
    target = pyproject["project"]["entry-points"]["spancost.processors"]["example.service_tag"]
    module, _, name = target.partition(":")
    assert issubclass(getattr(importlib.import_module(module), name), Plugin)


def test_tags_every_span_of_the_configured_services(plugin_class: type[Plugin]) -> None:
    request = batch(
        resource_spans({"service.name": "checkout"}, [span("a", {"team": "old"})], [span("b")]),
        resource_spans({"service.name": "cart"}, [span("c")]),
        resource_spans({}, [span("d")]),
        resource_spans({"service.name": 42}, [span("e")]),
    )
    events = Events()
    plugin_class(CONFIG).process(request, events)
    teams = {s.name: attribute_map(s.attributes).get("team") for s in all_spans(request)}
    assert teams == {"a": "payments", "b": "payments", "c": None, "d": None, "e": None}
    assert list(events) == [
        Event("tagged", "service=checkout", 2),
        Event("skipped", "service_name_not_a_string", 1),
    ]


@pytest.mark.parametrize(
    ("config", "key"),
    [
        ({**CONFIG, "extra": 1}, "extra"),
        ({"attribute": "team", "value": "x"}, "services"),
        ({**CONFIG, "services": []}, "services"),
        ({**CONFIG, "services": ["a", 1]}, "services[1]"),
        ({**CONFIG, "attribute": ""}, "attribute"),
        ({**CONFIG, "value": ["x"]}, "value"),
        ({**CONFIG, "value": 2**70}, "value"),
    ],
)
def test_bad_config_names_the_key(plugin_class: type[Plugin], config: Any, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        plugin_class(config)
    assert caught.value.key == key
