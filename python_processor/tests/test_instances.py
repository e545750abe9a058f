from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from spancost.errors import (
    ConfigError,
    InvalidRequestError,
    PluginFailedError,
    PluginNotFoundError,
    UnknownInstanceError,
)
from spancost.plugin import Event, Events, ExportTraceServiceRequest, Plugin
from spancost.registry import PluginSpec, load_plugin
from spancost.sidecar.instances import PluginInstances
from tests.builders import batch, resource_spans, span


class GatedPlugin(Plugin):
    """Blocks in process until the test opens the gate; records close()."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        self.config = dict(config)
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.closed = 0

    def process(self, batch: ExportTraceServiceRequest, events: Events) -> None:
        self.entered.set()
        assert self.gate.wait(5)
        assert not self.closed, "closed while a batch was in flight"
        events.add("seen", spans=1)

    def close(self) -> None:
        self.closed += 1


class FailingClosePlugin(GatedPlugin):
    def close(self) -> None:
        raise RuntimeError("cannot close")


def loader(created: list[Plugin]) -> Any:
    def load(name: str) -> PluginSpec:
        if name not in {"gated", "failing-close"}:
            return load_plugin(name)
        factory = GatedPlugin if name == "gated" else FailingClosePlugin

        class Recording(factory):  # type: ignore[valid-type,misc]
            def __init__(self, config: Mapping[str, Any]) -> None:
                super().__init__(config)
                created.append(self)

        return PluginSpec(name=name, factory=Recording, version="test 1")

    return load


def payload() -> bytes:
    return batch(resource_spans({}, [span()])).SerializeToString()


def test_configure_and_process() -> None:
    instances = PluginInstances()
    version = instances.configure("python/env", "spancost.environment", '{"drop": ["ci"]}')
    assert version.startswith("spancost ")
    request = batch(resource_spans({"deployment.environment.name": "ci"}, [span()]))
    result = instances.process("python/env", request.SerializeToString())
    assert result.traces is None
    assert result.changes is not None
    assert [(r.start, r.end) for r in result.changes.drop] == [(0, 1)]
    assert result.events == [Event("dropped", "environment=ci", 1)]


@pytest.mark.parametrize(
    ("instance", "plugin", "config", "error", "message"),
    [
        ("", "spancost.environment", "{}", InvalidRequestError, "instance must not be empty"),
        ("i", "", "{}", InvalidRequestError, "plugin must not be empty"),
        ("i", "spancost.environment", "{", ConfigError, "config: is not valid JSON"),
        ("i", "spancost.environment", "[]", ConfigError, "config: must be a mapping, got list"),
        ("i", "spancost.environment", '{"x": 1}', ConfigError, "config.x: unknown key"),
        ("i", "nope", "{}", PluginNotFoundError, "no plugin named 'nope'"),
    ],
)
def test_configure_errors(
    instance: str, plugin: str, config: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        PluginInstances().configure(instance, plugin, config)


def test_empty_config_json_means_no_keys() -> None:
    PluginInstances().configure("i", "spancost.environment", "")


def test_process_errors() -> None:
    instances = PluginInstances()
    with pytest.raises(UnknownInstanceError, match="unknown plugin instance 'i'"):
        instances.process("i", b"")
    instances.configure("i", "spancost.environment", "{}")
    with pytest.raises(InvalidRequestError, match="not a serialized ExportTraceServiceRequest"):
        instances.process("i", b"\xff\xff\xff")


def test_replaced_instance_closes_after_its_in_flight_batch() -> None:
    created: list[Plugin] = []
    instances = PluginInstances(load=loader(created))
    instances.configure("i", "gated", "{}")
    first = created[0]
    assert isinstance(first, GatedPlugin)
    results: list[object] = []
    worker = threading.Thread(target=lambda: results.append(instances.process("i", payload())))
    worker.start()
    assert first.entered.wait(5)

    instances.configure("i", "gated", '{"v": 2}')
    assert first.closed == 0  # still busy
    first.gate.set()
    worker.join(5)
    assert first.closed == 1
    assert len(results) == 1

    second = created[1]
    assert isinstance(second, GatedPlugin)
    second.gate.set()
    instances.process("i", payload())
    instances.close()
    assert second.closed == 1
    with pytest.raises(UnknownInstanceError):
        instances.process("i", payload())


def test_a_plugin_that_fails_to_close_does_not_stop_the_others() -> None:
    created: list[Plugin] = []
    instances = PluginInstances(load=loader(created))
    instances.configure("a", "failing-close", "{}")
    instances.configure("b", "gated", "{}")
    instances.close()
    assert isinstance(created[1], GatedPlugin)
    assert created[1].closed == 1


def test_plugin_exceptions_become_plugin_failed(test_plugin_site: object) -> None:
    instances = PluginInstances()
    with pytest.raises(PluginFailedError, match="failed to start: ZeroDivisionError: broken"):
        instances.configure("i", "test.broken_init", "{}")
    instances.configure("i", "test.failing", "{}")
    with pytest.raises(PluginFailedError, match="raised RuntimeError: boom"):
        instances.process("i", payload())


def test_answer_form_full_sends_the_whole_batch_even_for_annotating_plugins() -> None:
    instances = PluginInstances(answer_form="full")
    instances.configure("python/env", "spancost.environment", '{"drop": ["ci"]}')
    request = batch(
        resource_spans({"deployment.environment.name": "ci"}, [span()]),
        resource_spans({"deployment.environment.name": "prod"}, [span("kept")]),
    )
    result = instances.process("python/env", request.SerializeToString())
    assert result.changes is None
    assert result.traces is not None
    kept = ExportTraceServiceRequest.FromString(result.traces)
    assert [s.name for rs in kept.resource_spans for ss in rs.scope_spans for s in ss.spans] == [
        "kept"
    ]
    assert result.events == [Event("dropped", "environment=ci", 1)]
