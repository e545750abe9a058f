from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from spancost.attributes import find_value, set_value, value_type
from spancost.errors import ConfigError, PluginLoadError, PluginNotFoundError
from spancost.plugin import Event, Events, ExportTraceServiceRequest, Plugin
from spancost.plugins.environment import EnvironmentPlugin
from spancost.registry import installed_plugin_names, load_plugin
from tests import builders


class NoopPlugin(Plugin):
    def process(self, batch: ExportTraceServiceRequest, events: Events) -> None:
        events.add("seen", spans=len(batch.resource_spans))


def test_events_sum_per_event_and_reason() -> None:
    events = Events()
    events.add("dropped", reason="environment=ci", spans=12)
    events.add("dropped", reason="environment=ci", spans=3)
    events.add("dropped", reason="environment=qa")
    events.add("tagged", spans=0)  # nothing happened: not reported
    assert list(events) == [
        Event("dropped", "environment=ci", 15),
        Event("dropped", "environment=qa", 1),
    ]
    assert events.count("dropped") == 16
    assert events.count("dropped", "environment=qa") == 1
    assert events.count("tagged") == 0
    assert len(events) == 2
    assert events
    assert "environment=ci" in repr(events)


def test_events_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        Events().add("")
    with pytest.raises(ValueError, match=">= 0"):
        Events().add("dropped", spans=-1)


def test_base_plugin_accepts_no_config_keys() -> None:
    NoopPlugin({}).close()
    with pytest.raises(ConfigError, match=r"config\.x: unknown key"):
        NoopPlugin({"x": 1})


def test_plugin_must_implement_process() -> None:
    class Incomplete(Plugin):
        pass

    with pytest.raises(TypeError):
        Incomplete({})  # type: ignore[abstract]


def test_load_builtin_plugin_reports_its_distribution() -> None:
    spec = load_plugin("spancost.environment")
    assert spec.factory is EnvironmentPlugin
    assert spec.version.startswith("spancost ")
    assert "spancost.environment" in installed_plugin_names()


def test_unknown_plugin_lists_installed_names() -> None:
    with pytest.raises(PluginNotFoundError) as caught:
        load_plugin("spancost.nope")
    assert caught.value.name == "spancost.nope"
    assert "spancost.environment" in str(caught.value)


@pytest.mark.usefixtures("test_plugin_site")
def test_plugins_of_other_distributions_are_found() -> None:
    spec = load_plugin("test.slow")
    assert spec.version == "spancost-test-plugins 0.0.1"
    assert issubclass(spec.factory, Plugin)


@pytest.mark.usefixtures("test_plugin_site")
@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("test.not_a_plugin", "is not a subclass of spancost.plugin.Plugin"),
        ("test.missing_module", "cannot import spancost_test_plugins_missing:Nothing"),
    ],
)
def test_broken_plugins_fail_to_load(name: str, message: str) -> None:
    with pytest.raises(PluginLoadError, match=message):
        load_plugin(name)


def test_attribute_helpers() -> None:
    attrs = builders.attributes({"a": "x", "n": 1})
    attrs.append(KeyValue(key="a"))  # a duplicate: the first one wins
    value = find_value(attrs, "a")
    assert value is not None
    assert value.string_value == "x"
    assert find_value(attrs, "missing") is None

    span = builders.span(attrs={"a": "x"})
    set_value(span.attributes, "a", True)
    set_value(span.attributes, "i", 7)
    set_value(span.attributes, "f", 0.5)
    set_value(span.attributes, "s", "y")
    assert builders.attribute_map(span.attributes) == {"a": True, "i": 7, "f": 0.5, "s": "y"}
    assert [value_type(kv.value) for kv in span.attributes] == ["bool", "int", "double", "string"]
    assert value_type(KeyValue().value) == "empty"
    with pytest.raises(ValueError, match="64 bits"):
        set_value(span.attributes, "big", 2**63)


class ConfiguredPlugin(Plugin):
    """The shape the README documents: validate in __init__, mutate in process."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)

    def process(self, batch: ExportTraceServiceRequest, events: Events) -> None:
        for span in builders.all_spans(batch):
            set_value(span.attributes, "seen", True)
        events.add("seen", spans=builders.count_spans(batch))


def test_a_plugin_mutates_the_batch_in_place() -> None:
    request = builders.batch(builders.resource_spans({}, [builders.span(), builders.span()]))
    events = Events()
    ConfiguredPlugin({}).process(request, events)
    assert all(
        builders.attribute_map(s.attributes)["seen"] is True for s in builders.all_spans(request)
    )
    assert events.count("seen") == 2
