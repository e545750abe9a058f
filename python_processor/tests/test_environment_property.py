"""Property test: on any batch, the environment plugin never raises and loses no count."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from spancost.plugin import Events, ExportTraceServiceRequest
from spancost.plugins.environment import EnvironmentPlugin
from tests.builders import any_value, count_spans

ENV_KEYS = ("deployment.environment.name", "deployment.environment")
NAMES = ("ci", "CI ", " staging", "prod", "Dev", "", "  ", "qa")

scalar_values = st.one_of(
    st.sampled_from(NAMES),
    st.text(max_size=5),
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True),
    st.booleans(),
    st.binary(max_size=4),
    st.none(),
)


@st.composite
def any_values(draw: st.DrawFn) -> AnyValue:
    value = draw(scalar_values)
    if draw(st.integers(0, 9)) == 0:
        return any_value([value])  # an array
    if draw(st.integers(0, 19)) == 0:
        result = AnyValue()
        result.kvlist_value.values.add(key="k", value=any_value(value))
        return result
    return any_value(value)


@st.composite
def attribute_lists(draw: st.DrawFn) -> list[KeyValue]:
    keys = draw(st.lists(st.sampled_from((*ENV_KEYS, "service.name", "other")), max_size=4))
    return [KeyValue(key=key, value=draw(any_values())) for key in keys]


@st.composite
def batches(draw: st.DrawFn) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 4))):
        rs = ResourceSpans()
        rs.resource.attributes.extend(draw(attribute_lists()))
        for _ in range(draw(st.integers(0, 3))):
            scope = ScopeSpans()
            for n in range(draw(st.integers(0, 5))):
                scope.spans.append(Span(name=f"s{n}", attributes=draw(attribute_lists())))
            rs.scope_spans.append(scope)
        request.resource_spans.append(rs)
    return request


configs = st.fixed_dictionaries(
    {},
    optional={
        "drop": st.lists(st.sampled_from(("ci", "Staging", "1", "true")), max_size=3),
        "tag": st.dictionaries(
            st.sampled_from(("prod", "dev", "QA")),
            st.dictionaries(
                st.sampled_from(("team", "tier", "deployment.environment.name")),
                st.one_of(st.text(max_size=3), st.booleans(), st.integers(-5, 5), st.floats(0, 1)),
                min_size=1,
                max_size=2,
            ),
            max_size=2,
        ),
        "missing": st.sampled_from(("keep", "drop", "dev", "ci", "unknown")),
    },
)


def _label_containers(request: ExportTraceServiceRequest) -> set[str]:
    """Label every container (in schema_url, which the plugin ignores); return those with spans."""
    had_spans: set[str] = set()
    for i, rs in enumerate(request.resource_spans):
        rs.schema_url = f"rs{i}"
        for j, ss in enumerate(rs.scope_spans):
            ss.schema_url = f"rs{i}/ss{j}"
            if ss.spans:
                had_spans.update((rs.schema_url, ss.schema_url))
    return had_spans


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(config=configs, request=batches())
def test_never_raises_and_accounts_for_every_span(
    config: dict[str, Any], request: ExportTraceServiceRequest
) -> None:
    drop = {d.strip().casefold() for d in config.get("drop", [])}
    config["tag"] = {k: v for k, v in config.get("tag", {}).items() if k.casefold() not in drop}
    plugin = EnvironmentPlugin(config)
    had_spans = _label_containers(request)
    spans_in = count_spans(request)
    events = Events()

    plugin.process(request, events)

    assert count_spans(request) + events.count("dropped") == spans_in
    assert events.count("tagged") + events.count("skipped") <= count_spans(request)
    # A container that held spans either still holds some or is gone: none is left empty.
    for rs in request.resource_spans:
        if rs.schema_url in had_spans:
            assert any(ss.spans for ss in rs.scope_spans)
        for ss in rs.scope_spans:
            if ss.schema_url in had_spans:
                assert ss.spans
    # The result still serializes and parses.
    reparsed = ExportTraceServiceRequest.FromString(request.SerializeToString())
    assert count_spans(reparsed) == count_spans(request)
