"""``spancost.cost`` with ``node_facts``: spans that carry only ``service.name`` priced as
the node (or instance) they ran on, whatever the sender claims.

The node's facts come from a stand-in for the Kubernetes watch (tests/kube and
tests/e2e run the real one against a real API server)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from spancost.errors import ConfigError
from spancost.facts.host import HostFacts
from spancost.facts.model import NodeFacts, PodFacts, Resources
from spancost.facts.source import NodeFactsSource
from spancost.plugin import Events
from spancost.plugins.cost import CostPlugin
from tests.builders import Value, all_spans, attribute_map, attributes

T0 = 1_760_000_000_000_000_000
HOUR = 3600 * 1_000_000_000
NODE = "ip-10-0-1-5.ec2.internal"
M5_XLARGE = NodeFacts(
    name=NODE,
    provider="aws",
    instance_type="m5.xlarge",
    region="us-east-1",
    zone="us-east-1b",
    os="linux",
    arch="amd64",
    capacity="on_demand",
    capacity_from="eks.amazonaws.com/capacityType",
)
M5_XLARGE_HOURLY = 0.192  # the bundled us-east-1 Linux on-demand price
GIB = 1 << 30


@dataclass
class FakeNodeWatch:
    """Stands in for `spancost.facts.kube.KubeFacts`."""

    facts: NodeFacts | None
    node_name: str = NODE
    version: int = 1
    stale_since: float | None = None
    closed: bool = False
    pod_facts: dict[str, PodFacts] = field(default_factory=dict)

    def node(self) -> NodeFacts | None:
        return self.facts

    def pods(self) -> dict[str, PodFacts]:
        return self.pod_facts

    def set(self, facts: NodeFacts | None) -> None:
        self.facts = facts
        self.version += 1

    def close(self) -> None:
        self.closed = True


@dataclass
class FakeHost:
    facts: HostFacts | None
    version: int = 1
    closed: list[bool] = field(default_factory=list)

    def close(self) -> None:
        self.closed.append(True)


def resource(attrs: Mapping[str, Value], duration: int = HOUR) -> ResourceSpans:
    rs = ResourceSpans()
    rs.resource.attributes.extend(attributes(attrs))
    scope = ScopeSpans()
    scope.spans.append(
        Span(
            trace_id=b"\x02" * 16,
            span_id=b"\x03" * 8,
            name="GET /",
            kind=Span.SPAN_KIND_SERVER,
            start_time_unix_nano=T0,
            end_time_unix_nano=T0 + duration,
        )
    )
    rs.scope_spans.append(scope)
    return rs


def price(plugin: CostPlugin, *resources: ResourceSpans) -> tuple[list[dict[str, object]], Events]:
    batch = ExportTraceServiceRequest(resource_spans=list(resources))
    events = Events()
    plugin.process(batch, events)
    return [attribute_map(span.attributes) for span in all_spans(batch)], events


def plugin_with(
    watch: FakeNodeWatch | None, hosts: list[FakeHost] | None = None, **config: Any
) -> CostPlugin:
    return CostPlugin(config, node_facts=NodeFactsSource(watch, hosts or []))


def test_a_span_with_only_its_service_name_is_priced_as_its_node() -> None:
    plugin = plugin_with(FakeNodeWatch(M5_XLARGE))
    (on_node, no_node), events = price(
        plugin,
        resource({"service.name": "checkout", "k8s.node.name": NODE}),
        resource({"service.name": "checkout"}),  # a DaemonSet agent hears only its node
    )
    for span in (on_node, no_node):
        assert span["cost.usd"] == pytest.approx(M5_XLARGE_HOURLY)
        assert span["cost.instance_type"] == "m5.xlarge"
        assert span["cost.model"] == "ec2.on_demand.duration"
    assert events.count("priced") == 2
    assert events.count("node_facts") == 0


def test_the_node_overrules_what_the_sender_claims() -> None:
    plugin = plugin_with(FakeNodeWatch(M5_XLARGE))
    claims: dict[str, Value] = {
        "service.name": "checkout",
        "host.type": "t3.nano",
        "cloud.region": "ap-southeast-1",
        "cloud.platform": "aws_lambda",
        "faas.max_memory": 128,
        "aws.ec2.instance.lifecycle": "spot",
    }
    (span,), _ = price(plugin, resource(claims))
    assert span["cost.instance_type"] == "m5.xlarge"
    assert span["cost.model"] == "ec2.on_demand.duration"
    assert span["cost.usd"] == pytest.approx(M5_XLARGE_HOURLY)


def test_a_spot_node_is_priced_as_spot() -> None:
    plugin = plugin_with(FakeNodeWatch(replace(M5_XLARGE, capacity="spot")))
    (span,), _ = price(plugin, resource({"service.name": "checkout"}))
    assert str(span["cost.model"]).startswith("ec2.spot")
    assert 0 < span["cost.usd"] < M5_XLARGE_HOURLY  # type: ignore[operator]


def test_an_arm64_node_of_another_type() -> None:
    graviton = replace(M5_XLARGE, instance_type="m6g.large", arch="arm64")
    (span,), _ = price(plugin_with(FakeNodeWatch(graviton)), resource({"service.name": "x"}))
    assert span["cost.instance_type"] == "m6g.large"
    assert span["cost.usd"] == pytest.approx(0.077)


def test_a_relabelled_node_is_priced_anew_at_once() -> None:
    watch = FakeNodeWatch(M5_XLARGE)
    plugin = plugin_with(watch)
    (before,), _ = price(plugin, resource({"service.name": "checkout"}))
    watch.set(replace(M5_XLARGE, capacity="spot"))
    (after,), _ = price(plugin, resource({"service.name": "checkout"}))
    assert before["cost.model"] == "ec2.on_demand.duration"
    assert str(after["cost.model"]).startswith("ec2.spot")


def test_stale_facts_are_used_and_counted() -> None:
    watch = FakeNodeWatch(M5_XLARGE, stale_since=1.0)
    (span,), events = price(plugin_with(watch), resource({"service.name": "checkout"}))
    assert span["cost.usd"] == pytest.approx(M5_XLARGE_HOURLY)
    assert events.count("node_facts", "stale") == 1


def test_no_facts_yet_falls_back_to_the_sender_and_is_counted() -> None:
    plugin = plugin_with(FakeNodeWatch(None))
    bare, claimed = (
        resource({"service.name": "a"}),
        resource(
            {
                "service.name": "b",
                "cloud.provider": "aws",
                "cloud.region": "us-east-1",
                "host.type": "m5.large",
            }
        ),
    )
    (unpriced, priced), events = price(plugin, bare, claimed)
    assert unpriced["cost.unpriced_reason"] == "no_resource_info"
    assert priced["cost.instance_type"] == "m5.large"
    assert events.count("node_facts", "missing") == 2


def test_a_span_from_another_node_is_not_priced_as_this_one() -> None:
    plugin = plugin_with(FakeNodeWatch(M5_XLARGE))
    (span,), events = price(plugin, resource({"service.name": "x", "k8s.node.name": "other"}))
    assert span["cost.unpriced_reason"] == "no_resource_info"
    assert events.count("node_facts", "missing") == 1


def test_instance_metadata_outside_kubernetes() -> None:
    host = FakeHost(
        HostFacts(
            source="ec2_metadata",
            platform="aws_ec2",
            instance_type="c6g.large",
            region="us-east-1",
            zone="us-east-1a",
            arch="arm64",
            capacity="on_demand",
        )
    )
    plugin = plugin_with(None, [host])
    (span,), events = price(plugin, resource({"service.name": "batch"}))
    assert span["cost.instance_type"] == "c6g.large"
    assert span["cost.usd"] == pytest.approx(0.068)
    assert len(events) == 1  # priced; nothing about node facts
    plugin.close()
    assert host.closed == [True]


def test_a_pod_is_charged_its_share_of_the_node() -> None:
    """With the pod's requests known, a segment is charged the share of the node its pod
    reserves (an estimate: the store's allocation splits the node by busy time), and
    cost.model says so."""
    node = replace(M5_XLARGE, capacity_total=Resources(cpu=4.0, memory=16 * GIB))
    web = PodFacts(
        uid="web-uid", namespace="shop", name="web", node=NODE, workload_kind="Deployment",
        workload_name="web", requests=Resources(cpu=1.0, memory=2 * GIB),
    )  # fmt: skip
    watch = FakeNodeWatch(node, pod_facts={"web-uid": web})
    plugin = plugin_with(watch)
    (shared, unknown), _ = price(
        plugin,
        resource({"service.name": "web", "k8s.pod.uid": "web-uid"}),
        resource({"service.name": "job", "k8s.pod.uid": "not-known-yet"}),
    )
    # 9 per vCPU, 1 per GiB: the pod weighs 9 + 2 of the node's 36 + 16.
    assert shared["cost.usd"] == pytest.approx(M5_XLARGE_HOURLY * 11 / 52)
    assert shared["cost.model"] == "ec2.on_demand.pod_share.duration"
    assert unknown["cost.model"] == "ec2.on_demand.duration"  # the whole node
    # The pod asks for more: its next spans are priced anew.
    watch.pod_facts["web-uid"] = replace(web, requests=Resources(cpu=2.0, memory=4 * GIB))
    watch.version += 1
    (again,), _ = price(plugin, resource({"service.name": "web", "k8s.pod.uid": "web-uid"}))
    assert again["cost.usd"] == pytest.approx(M5_XLARGE_HOURLY * 22 / 52)


def test_the_plugin_closes_the_watch() -> None:
    watch = FakeNodeWatch(M5_XLARGE)
    plugin_with(watch).close()
    assert watch.closed


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"kubernetes": {"node_name": ""}}, "node_facts.kubernetes.node_name", "K8S_NODE_NAME"),
        ({"kubernetes": {}}, "node_facts.kubernetes.node_name", "required"),
        (
            {"kubernetes": {"node_name": "n", "auth_type": "token"}},
            "node_facts.kubernetes.auth_type",
            "serviceAccount or kubeConfig",
        ),
        (
            {"kubernetes": {"node_name": "n", "watch_timeout": "soon"}},
            "node_facts.kubernetes.watch_timeout",
            "duration",
        ),
        (
            {"kubernetes": {"node_name": "n", "capacity_label": {"key": "x"}}},
            "node_facts.kubernetes.capacity_label.spot_values",
            "required",
        ),
        (
            {"ec2_metadata": {"endpoint": "169.254.169.254"}},
            "node_facts.ec2_metadata.endpoint",
            "URL",
        ),
        ({"ecs_metadata": {"endpoint": "file:///x"}}, "node_facts.ecs_metadata.endpoint", "URL"),
        ({"gcp": {}}, "node_facts.gcp", ""),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError) as raised:
        CostPlugin({"node_facts": config})
    assert raised.value.key == key
    assert message in str(raised.value)


def test_kubeconfig_that_cannot_be_loaded_is_a_config_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as raised:
        CostPlugin({"node_facts": {"kubernetes": {"node_name": "n", "auth_type": "kubeConfig"}}})
    assert raised.value.key == "node_facts.kubernetes.auth_type"
    assert "cannot load the Kubernetes client configuration" in str(raised.value)
