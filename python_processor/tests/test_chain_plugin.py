"""``spancost.chain``: environment and cost in one hop give what two processors give."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from spancost.changes import Changes, span_count
from spancost.errors import ConfigError
from spancost.plugin import Events
from spancost.plugins.chain import ChainPlugin
from spancost.plugins.cost import CostPlugin
from spancost.plugins.environment import EnvironmentPlugin
from spancost.sidecar.instances import PluginInstances
from tests.builders import batch, resource_spans, span

EC2 = {
    "service.name": "checkout",
    "cloud.provider": "aws",
    "cloud.platform": "aws_eks",
    "cloud.region": "us-east-1",
    "host.type": "m5.large",
}
ENV_CONFIG = {"drop": ["ci"], "tag": {"prod": {"team.checked": True}}}
CHAIN_CONFIG = {
    "steps": [
        {"plugin": "spancost.environment", "config": ENV_CONFIG},
        {"plugin": "spancost.cost", "config": {}},
    ]
}


def request() -> ExportTraceServiceRequest:
    def child(parent: Span, name: str) -> Span:
        item = span(name)
        item.trace_id = parent.trace_id
        item.parent_span_id = parent.span_id
        item.kind = Span.SPAN_KIND_INTERNAL
        return item

    prod_root, ci_root = span("GET /a"), span("GET /b")
    return batch(
        resource_spans(
            {**EC2, "deployment.environment.name": "prod"},
            [prod_root, child(prod_root, "db"), child(prod_root, "cache")],
        ),
        resource_spans({**EC2, "deployment.environment.name": "ci"}, [ci_root]),
        resource_spans({"service.name": "cron"}, [span("tick")]),
    )


def copy(original: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    result = ExportTraceServiceRequest()
    result.CopyFrom(original)
    return result


def test_a_chain_gives_what_two_processors_give() -> None:
    original = request()
    sequential = copy(original)
    env, cost = EnvironmentPlugin(ENV_CONFIG), CostPlugin({})
    sequential_events = Events()
    env.process(sequential, sequential_events)
    cost.process(sequential, sequential_events)

    chained = copy(original)
    chain = ChainPlugin(CHAIN_CONFIG)
    chain_events = Events()
    changes = Changes(span_count(chained))
    chain.annotate_wire(chained.SerializeToString(), chained, changes, chain_events)
    changes.apply(chained)

    assert chained == sequential
    # The same events, but for the ci span: the cost step sees the batch as it
    # came, so it prices (and counts) the span the environment step drops.
    assert chain_events.count("dropped") == sequential_events.count("dropped") == 1
    assert chain_events.count("priced") == sequential_events.count("priced") + 1
    assert chain_events.count("unpriced") == sequential_events.count("unpriced")
    for plugin in (env, cost, chain):
        plugin.close()


def test_a_chain_answers_in_one_fast_form_answer_through_the_sidecar() -> None:
    instances = PluginInstances()
    instances.configure("python/spancost", "spancost.chain", '{"steps": ['
                        '{"plugin": "spancost.environment", "config": {"drop": ["ci"]}},'
                        '{"plugin": "spancost.cost"}]}')  # fmt: skip
    result = instances.process("python/spancost", request().SerializeToString())
    assert result.changes is not None and result.traces is None
    assert [(r.start, r.end) for r in result.changes.drop] == [(3, 4)]
    assert any(column.key == "cost.usd" for column in result.changes.doubles)
    instances.close()


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({}, "config.steps", "is required"),
        ({"steps": []}, "config.steps", "non-empty list"),
        ({"steps": [{"plugin": "spancost.nope"}]}, "config.steps[0].plugin", "no plugin named"),
        (
            {"steps": [{"plugin": "spancost.environment", "config": {"drop": 3}}]},
            "config.steps[0].config.drop",
            "",
        ),
        (
            {"steps": [{"plugin": "spancost.chain", "config": {}}]},
            "config.steps[0].plugin",
            "chain",
        ),
        ({"steps": [{"plugin": "spancost.cost", "confg": {}}]}, "config.steps[0].confg", "unknown"),
        (
            {"steps": [{"plugin": "spancost.cost", "config": [1]}]},
            "config.steps[0].config",
            "mapping",
        ),
    ],
)
def test_config_errors_name_the_step_and_key(
    config: dict[str, Any], key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        ChainPlugin(config)
    assert str(caught.value).startswith(key + ":"), str(caught.value)
    assert message in str(caught.value)


@pytest.mark.usefixtures("test_plugin_site")
def test_a_full_form_plugin_cannot_be_chained(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match=r"steps\[1\]\.plugin: 'test.rename' answers with the whole"
    ):
        ChainPlugin({"steps": [{"plugin": "spancost.cost"}, {"plugin": "test.rename"}]})
