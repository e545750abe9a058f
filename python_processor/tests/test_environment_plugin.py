from __future__ import annotations

import logging
from typing import Any

import pytest
from opentelemetry.proto.common.v1.common_pb2 import KeyValue

from spancost.errors import ConfigError
from spancost.plugin import Event, Events, ExportTraceServiceRequest
from spancost.plugins.environment import EnvironmentPlugin
from tests.builders import (
    all_spans,
    any_value,
    attribute_map,
    batch,
    count_spans,
    resource_spans,
    span,
    span_names,
)

ENV = "deployment.environment.name"
LEGACY = "deployment.environment"


def run(config: dict[str, Any], request: ExportTraceServiceRequest) -> list[Event]:
    events = Events()
    EnvironmentPlugin(config).process(request, events)
    return list(events)


def test_drops_by_resource_environment() -> None:
    request = batch(
        resource_spans({ENV: "ci"}, [span("a"), span("b")], [span("c")]),
        resource_spans({ENV: "prod"}, [span("d")]),
    )
    events = run({"drop": ["ci", "staging"]}, request)
    assert span_names(request) == ["d"]
    assert len(request.resource_spans) == 1
    assert events == [Event("dropped", "environment=ci", 3)]


def test_legacy_key_and_precedence() -> None:
    request = batch(
        resource_spans({LEGACY: "ci"}, [span("legacy")]),
        # The current key wins over the legacy one, whatever their order.
        resource_spans({LEGACY: "ci", ENV: "prod"}, [span("both")]),
    )
    events = run({"drop": ["ci"]}, request)
    assert span_names(request) == ["both"]
    assert events == [Event("dropped", "environment=ci", 1)]


def test_matching_ignores_case_and_whitespace() -> None:
    request = batch(
        resource_spans({ENV: " CI "}, [span("a")]),
        resource_spans({ENV: "Staging"}, [span("b")]),
        resource_spans({ENV: "prod"}, [span("c")]),
    )
    events = run({"drop": ["ci"], "tag": {" STAGING ": {"tier": "pre"}}}, request)
    assert span_names(request) == ["b", "c"]
    assert events == [
        Event("dropped", "environment=ci", 1),
        Event("tagged", "environment=staging", 1),
    ]


def test_tags_every_span_of_an_environment() -> None:
    request = batch(
        resource_spans(
            {ENV: "staging"},
            [span("a", {"team": "old", "x": 1})],
            [span("b"), span("c")],
        ),
        resource_spans({ENV: "prod"}, [span("d")]),
    )
    config = {"tag": {"staging": {"team": "platform", "sampled": True, "tier": 2, "weight": 0.5}}}
    events = run(config, request)
    spans = {s.name: attribute_map(s.attributes) for s in all_spans(request)}
    expected = {"team": "platform", "sampled": True, "tier": 2, "weight": 0.5}
    assert spans["a"] == {"x": 1, **expected}
    assert spans["b"] == expected
    assert spans["c"] == expected
    assert spans["d"] == {}
    assert events == [Event("tagged", "environment=staging", 3)]


def test_missing_keep_is_the_default_and_counts_nothing() -> None:
    request = batch(resource_spans({"service.name": "x"}, [span("a")]))
    before = request.SerializeToString()
    assert run({"drop": ["ci"]}, request) == []
    assert request.SerializeToString() == before


def test_missing_drop() -> None:
    request = batch(
        resource_spans({}, [span("none"), span("ci", {ENV: "ci"}), span("prod", {ENV: "prod"})]),
        resource_spans({}, [span("gone")]),
    )
    events = run({"drop": ["ci"], "missing": "drop"}, request)
    assert span_names(request) == ["prod"]
    assert sorted(events, key=lambda e: e.reason) == [
        Event("dropped", "environment=ci", 1),
        Event("dropped", "environment_missing", 2),
    ]


def test_missing_names_the_environment_to_assume() -> None:
    tagged = batch(resource_spans({}, [span("a")]))
    assert run({"tag": {"dev": {"t": "x"}}, "missing": " DEV "}, tagged) == [
        Event("tagged", "environment=dev", 1)
    ]
    assert attribute_map(next(iter(all_spans(tagged))).attributes) == {"t": "x"}

    dropped = batch(resource_spans({}, [span("a")]), resource_spans({ENV: "prod"}, [span("b")]))
    assert run({"drop": ["dev"], "missing": "dev"}, dropped) == [
        Event("dropped", "environment=dev", 1)
    ]
    assert span_names(dropped) == ["b"]


def test_span_level_fallback() -> None:
    request = batch(
        resource_spans(
            {"service.name": "checkout"},
            [
                span("ci", {ENV: "ci"}),
                span("legacy-ci", {LEGACY: "CI"}),
                span("staging", {ENV: "staging"}),
                span("prod", {ENV: "prod"}),
                span("none"),
            ],
            [span("ci-only", {ENV: "ci"})],
        )
    )
    events = run({"drop": ["ci"], "tag": {"staging": {"tier": "pre"}}}, request)
    assert span_names(request) == ["staging", "prod", "none"]
    assert len(request.resource_spans[0].scope_spans) == 1  # the emptied scope is gone
    assert sorted(events, key=lambda e: e.event) == [
        Event("dropped", "environment=ci", 3),
        Event("tagged", "environment=staging", 1),
    ]


def test_resource_environment_wins_over_span_attributes() -> None:
    request = batch(resource_spans({ENV: "prod"}, [span("a", {ENV: "ci"})]))
    assert run({"drop": ["ci"]}, request) == []
    assert span_names(request) == ["a"]


def test_blank_environment_counts_as_absent() -> None:
    request = batch(
        resource_spans({ENV: "  ", LEGACY: ""}, [span("span-ci", {ENV: "ci"}), span("none")]),
        resource_spans({ENV: None}, [span("unset")]),  # an AnyValue with nothing set
    )
    events = run({"drop": ["ci"], "missing": "drop"}, request)
    assert span_names(request) == []
    assert not request.resource_spans
    assert sorted(events, key=lambda e: e.reason) == [
        Event("dropped", "environment=ci", 1),
        Event("dropped", "environment_missing", 2),
    ]


@pytest.mark.parametrize(
    ("value", "type_name"),
    [(1, "int"), (1.5, "double"), (True, "bool"), (b"ci", "bytes"), (["ci"], "array")],
)
def test_non_string_environment_is_skipped_and_kept(value: object, type_name: str) -> None:
    request = batch(
        resource_spans({ENV: value}, [span("r1"), span("r2", {ENV: "ci"})]),  # type: ignore[dict-item]
        resource_spans({}, [span("s1", {ENV: value}), span("s2")]),  # type: ignore[dict-item]
    )
    # Even `missing: drop` never drops a span whose environment it cannot read.
    events = run({"drop": ["ci", "1", "true"], "missing": "drop"}, request)
    assert span_names(request) == ["r1", "r2", "s1"]
    reason = f"environment_type={type_name}"
    assert sorted(events, key=lambda e: e.event) == [
        Event("dropped", "environment_missing", 1),
        Event("skipped", reason, 3),
    ]


def test_first_duplicate_attribute_wins() -> None:
    resource = resource_spans({ENV: "prod"}, [span("a")])
    resource.resource.attributes.append(KeyValue(key=ENV, value=any_value("ci")))
    request = batch(resource)
    assert run({"drop": ["ci"]}, request) == []


def test_emptied_containers_are_removed_others_kept() -> None:
    request = batch(
        resource_spans({}, [span("ci", {ENV: "ci"})], [span("keep")], []),
        resource_spans({}, [span("ci2", {ENV: "ci"})], [span("ci3", {ENV: "ci"})]),
        resource_spans({ENV: "ci"}, [span("ci4")]),
        resource_spans({ENV: "prod"}),  # already empty: not ours to remove
    )
    events = run({"drop": ["ci"]}, request)
    assert events == [Event("dropped", "environment=ci", 4)]
    assert len(request.resource_spans) == 2
    first, untouched = request.resource_spans
    assert [s.scope.name for s in first.scope_spans] == ["scope1", "scope2"]
    assert span_names(request) == ["keep"]
    assert not untouched.scope_spans


def test_drops_non_contiguous_spans_in_one_scope() -> None:
    names = [f"s{i}" for i in range(10)]
    spans = [span(n, {ENV: "ci" if i % 3 == 0 else "prod"}) for i, n in enumerate(names)]
    request = batch(resource_spans({}, spans))
    events = run({"drop": ["ci"]}, request)
    assert span_names(request) == [n for i, n in enumerate(names) if i % 3]
    assert events == [Event("dropped", "environment=ci", 4)]


def test_kept_spans_keep_every_field() -> None:
    original = span("a", {ENV: "prod", "http.method": "GET"})
    original.parent_span_id = b"\x01" * 8
    original.events.add(name="exception", time_unix_nano=5)
    original.links.add(trace_id=b"\x02" * 16, span_id=b"\x03" * 8)
    request = batch(resource_spans({}, [original, span("b", {ENV: "ci"})]))
    run({"drop": ["ci"]}, request)
    assert list(all_spans(request)) == [original]


def test_passthrough_config_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        plugin = EnvironmentPlugin({})
    assert "drops and tags nothing" in caplog.text
    request = batch(resource_spans({ENV: 3}, [span()]))
    events = Events()
    plugin.process(request, events)
    assert count_spans(request) == 1
    assert not events


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ([], "", "must be a mapping, got list"),
        ({"dorp": []}, "dorp", "unknown key; allowed keys: drop, missing, tag"),
        ({"drop": "ci"}, "drop", "must be a list of strings, got string"),
        ({"drop": ["ci", 3]}, "drop[1]", "must be a string, got integer"),
        ({"drop": ["ci", " "]}, "drop[1]", "must not be empty"),
        ({"tag": ["ci"]}, "tag", "must be a mapping, got list"),
        ({"tag": {"staging": "x"}}, "tag.staging", "must be a mapping, got string"),
        ({"tag": {"staging": {}}}, "tag.staging", "must set at least one attribute"),
        ({"tag": {" ": {"a": 1}}}, "tag. ", "environment name must not be empty"),
        ({"tag": {"staging": {"team": None}}}, "tag.staging.team", "got null"),
        ({"tag": {"staging": {"team": ["a"]}}}, "tag.staging.team", "got list"),
        ({"tag": {"staging": {"team": {"a": 1}}}}, "tag.staging.team", "got mapping"),
        ({"tag": {"staging": {"n": 2**64}}}, "tag.staging.n", "does not fit in 64 bits"),
        ({"tag": {"staging": {"": "x"}}}, "tag.staging.", "attribute name must not be empty"),
        (
            {"drop": ["CI"], "tag": {"ci ": {"a": "b"}}},
            "tag.ci ",
            "environment 'ci' is also listed in drop",
        ),
        (
            {"tag": {"prod": {"a": "b"}, "PROD": {"a": "c"}}},
            "tag.PROD",
            "same environment as tag.prod",
        ),
        ({"missing": True}, "missing", "must be a string, got boolean"),
        ({"missing": " "}, "missing", "must be 'keep', 'drop' or the name"),
    ],
)
def test_bad_config_names_the_key(config: Any, key: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        EnvironmentPlugin(config)
    assert caught.value.key == key
    assert message in caught.value.message
    prefix = f"config.{key}: " if key else "config: "
    assert str(caught.value).startswith(prefix)
