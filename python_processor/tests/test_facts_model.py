"""Node and pod facts read from API objects (spancost.facts.model), and the overlays the
cost plugin puts over a sender's resource attributes (spancost.facts.source)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from spancost.facts.host import HostFacts, HostFactsError, parse_ecs_task, parse_identity_document
from spancost.facts.model import CapacityLabel, Resources, node_facts, pod_facts
from spancost.facts.source import overlay_from_hosts, overlay_from_node
from spancost.pricing.facts import ResourceFacts


def node(labels: dict[str, str], **extra: Any) -> dict[str, Any]:
    return {
        "metadata": {"name": "ip-10-0-1-5", "uid": "u-1", "labels": labels, "resourceVersion": "7"},
        "spec": extra.pop("spec", {}),
        "status": extra.pop("status", {}),
    }


EKS = {
    "node.kubernetes.io/instance-type": "m5.xlarge",
    "topology.kubernetes.io/region": "us-east-1",
    "topology.kubernetes.io/zone": "us-east-1b",
    "kubernetes.io/os": "linux",
    "kubernetes.io/arch": "amd64",
    "eks.amazonaws.com/capacityType": "ON_DEMAND",
}


def test_node_well_known_labels() -> None:
    facts = node_facts(
        node(
            EKS,
            spec={"providerID": "aws:///us-east-1b/i-0abc"},
            status={
                "allocatable": {"cpu": "3920m", "memory": "15076868Ki"},
                "capacity": {"cpu": "4", "memory": "16Gi"},
            },
        )
    )
    assert (facts.name, facts.uid, facts.resource_version) == ("ip-10-0-1-5", "u-1", "7")
    assert facts.provider == "aws"
    assert (facts.instance_type, facts.region, facts.zone) == (
        "m5.xlarge",
        "us-east-1",
        "us-east-1b",
    )
    assert (facts.os, facts.arch) == ("linux", "amd64")
    assert (facts.capacity, facts.capacity_from) == ("on_demand", "eks.amazonaws.com/capacityType")
    assert facts.allocatable == Resources(cpu=3.92, memory=15076868 * 1024)
    assert facts.capacity_total == Resources(cpu=4.0, memory=16 * 2**30)
    assert not facts.spot


def test_node_beta_labels_and_node_info_fall_back() -> None:
    facts = node_facts(
        node(
            {
                "beta.kubernetes.io/instance-type": "c6g.large",
                "failure-domain.beta.kubernetes.io/region": "eu-west-1",
                "failure-domain.beta.kubernetes.io/zone": "eu-west-1a",
            },
            status={"nodeInfo": {"operatingSystem": "Linux", "architecture": "ARM64"}},
        )
    )
    assert (facts.instance_type, facts.region, facts.zone) == (
        "c6g.large",
        "eu-west-1",
        "eu-west-1a",
    )
    assert (facts.os, facts.arch) == ("linux", "arm64")
    assert facts.capacity is None and facts.provider is None


@pytest.mark.parametrize(
    ("labels", "capacity", "decided_by"),
    [
        ({"eks.amazonaws.com/capacityType": "SPOT"}, "spot", "eks.amazonaws.com/capacityType"),
        ({"karpenter.sh/capacity-type": "spot"}, "spot", "karpenter.sh/capacity-type"),
        ({"karpenter.sh/capacity-type": "on-demand"}, "on_demand", "karpenter.sh/capacity-type"),
        ({"karpenter.sh/capacity-type": "reserved"}, "on_demand", "karpenter.sh/capacity-type"),
        ({"lifecycle": "Ec2Spot"}, "spot", "lifecycle"),
        ({"lifecycle": "OnDemand"}, "on_demand", "lifecycle"),
        ({"node.kubernetes.io/lifecycle": "spot"}, "spot", "node.kubernetes.io/lifecycle"),
        ({"cloud.google.com/gke-spot": "true"}, "spot", "cloud.google.com/gke-spot"),
        ({"kubernetes.azure.com/scalesetpriority": "spot"}, "spot", None),
        ({"lifecycle": "something-else"}, None, None),
        # The first label that decides wins: EKS's before Karpenter's.
        (
            {"eks.amazonaws.com/capacityType": "ON_DEMAND", "karpenter.sh/capacity-type": "spot"},
            "on_demand",
            "eks.amazonaws.com/capacityType",
        ),
    ],
)
def test_capacity_type_labels(
    labels: dict[str, str], capacity: str | None, decided_by: str | None
) -> None:
    facts = node_facts(node(labels))
    assert facts.capacity == capacity
    if decided_by is not None:
        assert facts.capacity_from == decided_by


def test_configured_capacity_label_comes_first() -> None:
    label = CapacityLabel("example.com/pool", frozenset({"cheap"}), frozenset({"steady"}))
    labels = {"example.com/pool": "Cheap", "karpenter.sh/capacity-type": "on-demand"}
    facts = node_facts(node(labels), label)
    assert (facts.capacity, facts.capacity_from) == ("spot", "example.com/pool")
    # A value it does not know leaves the decision to the well-known labels.
    facts = node_facts(node({**labels, "example.com/pool": "other"}), label)
    assert (facts.capacity, facts.capacity_from) == ("on_demand", "karpenter.sh/capacity-type")


def test_provider_from_provider_id_or_aws_labels() -> None:
    assert node_facts(node({}, spec={"providerID": "gce://p/us-central1-a/n"})).provider == "gcp"
    assert node_facts(node({}, spec={"providerID": "azure:///subs/x"})).provider == "azure"
    assert node_facts(node({}, spec={"providerID": "kind://docker/kind/n"})).provider is None
    assert node_facts(node({"karpenter.k8s.aws/instance-family": "m5"})).provider == "aws"


def test_node_with_unreadable_values() -> None:
    facts = node_facts(
        {
            "metadata": {"name": "n", "labels": {"node.kubernetes.io/instance-type": "  "}},
            "status": {"allocatable": {"cpu": "lots", "memory": True}},
        }
    )
    assert facts.instance_type is None
    assert facts.allocatable == Resources()
    assert node_facts({}).name == ""


def container(
    requests: dict[str, str] | None = None, limits: dict[str, str] | None = None, **extra: Any
) -> dict[str, Any]:
    resources: dict[str, Any] = {}
    if requests is not None:
        resources["requests"] = requests
    if limits is not None:
        resources["limits"] = limits
    return {"name": "c", "image": "x", "resources": resources, **extra}


def pod(spec: dict[str, Any], **metadata: Any) -> dict[str, Any]:
    return {
        "metadata": {"uid": "p-1", "namespace": "shop", "name": "web-7d4b9c-x2x", **metadata},
        "spec": {"nodeName": "n1", **spec},
        "status": {"phase": "Running", "startTime": "2026-12-05T10:00:00Z"},
    }


def test_pod_requests_sum_containers_and_default_to_limits() -> None:
    facts = pod_facts(
        pod(
            {
                "containers": [
                    container({"cpu": "250m", "memory": "256Mi"}, {"cpu": "1", "memory": "512Mi"}),
                    container(None, {"cpu": "500m", "memory": "1Gi"}),  # request = limit
                    container(),
                ]
            }
        )
    )
    assert facts.requests == Resources(cpu=0.75, memory=256 * 2**20 + 2**30)
    # One container without limits: the pod has none.
    assert facts.limits == Resources(cpu=None, memory=None)
    assert (facts.node, facts.phase) == ("n1", "Running")
    assert facts.started == dt.datetime(2026, 12, 5, 10, tzinfo=dt.UTC)
    assert facts.end is None


def test_pod_init_containers_sidecars_and_overhead() -> None:
    spec = {
        "initContainers": [
            container({"cpu": "2", "memory": "64Mi"}, {"cpu": "2", "memory": "64Mi"}),
            container(
                {"cpu": "100m", "memory": "128Mi"},
                {"cpu": "100m", "memory": "128Mi"},
                restartPolicy="Always",
            ),
            container({"cpu": "1", "memory": "1Gi"}, {"cpu": "1", "memory": "1Gi"}),
        ],
        "containers": [
            container({"cpu": "500m", "memory": "256Mi"}, {"cpu": "500m", "memory": "256Mi"})
        ],
        "overhead": {"cpu": "50m", "memory": "16Mi"},
    }
    facts = pod_facts(pod(spec))
    # CPU: the first init container alone (2) beats the sidecar + app (0.6) and the
    # third init container beside the sidecar (1.1). Memory: that one (1 Gi + 128 Mi)
    # beats sidecar + app (384 Mi). Plus the overhead.
    assert facts.requests.cpu == pytest.approx(2.05)
    assert facts.requests.memory == 2**30 + 128 * 2**20 + 16 * 2**20
    assert facts.limits.cpu == pytest.approx(2.05)
    assert facts.limits.memory == facts.requests.memory


def test_pod_workload_from_owner() -> None:
    owned = [{"kind": "ReplicaSet", "name": "web-7d4b9c", "controller": True}]
    facts = pod_facts(
        pod({}, ownerReferences=owned, labels={"pod-template-hash": "7d4b9c", "app": "web"})
    )
    assert (facts.workload_kind, facts.workload_name) == ("Deployment", "web")
    assert dict(facts.labels) == {"pod-template-hash": "7d4b9c", "app": "web"}
    facts = pod_facts(pod({}, ownerReferences=owned))  # a bare ReplicaSet
    assert (facts.workload_kind, facts.workload_name) == ("ReplicaSet", "web-7d4b9c")
    job = [
        {"kind": "Other", "name": "x"},  # not the controller
        {"kind": "Job", "name": "nightly-29912", "controller": True},
    ]
    facts = pod_facts(pod({}, ownerReferences=job))
    assert (facts.workload_kind, facts.workload_name) == ("Job", "nightly-29912")
    assert pod_facts(pod({})).workload_kind is None


def test_pod_end_time() -> None:
    finished = pod({})
    finished["status"] = {
        "phase": "Succeeded",
        "containerStatuses": [
            {"state": {"terminated": {"finishedAt": "2026-12-05T10:05:00Z"}}},
            {"state": {"terminated": {"finishedAt": "2026-12-05T10:06:30Z"}}},
        ],
    }
    assert pod_facts(finished).end == dt.datetime(2026, 12, 5, 10, 6, 30, tzinfo=dt.UTC)
    deleted_at = dt.datetime(2026, 12, 5, 11, tzinfo=dt.UTC)
    assert pod_facts(pod({}), deleted_at=deleted_at).end == deleted_at
    # A pod that finished before it was deleted keeps its own end.
    assert pod_facts(finished, deleted_at=deleted_at).end.minute == 6  # type: ignore[union-attr]


def test_node_overlay_prices_as_the_node() -> None:
    overlay = overlay_from_node(node_facts(node(EKS, spec={"providerID": "aws:///x/i-1"})))
    assert overlay.origin == "kubernetes"
    assert overlay.spot is False
    assert dict(overlay.values) == {
        "cloud.provider": "aws",
        "cloud.platform": "aws_eks",
        "host.type": "m5.xlarge",
        "cloud.region": "us-east-1",
        "cloud.availability_zone": "us-east-1b",
        "os.type": "linux",
        "host.arch": "amd64",
    }
    # Facts not known leave the sender's values alone: nothing to overlay.
    bare = overlay_from_node(node_facts(node({})))
    assert dict(bare.values) == {} and bare.spot is None


def test_identity_document() -> None:
    document = {
        "instanceType": "M6g.large",
        "region": "eu-west-1",
        "availabilityZone": "eu-west-1c",
        "architecture": "arm64",
    }
    facts = parse_identity_document(document, "spot")
    assert facts == HostFacts(
        source="ec2_metadata",
        platform="aws_ec2",
        instance_type="m6g.large",
        region="eu-west-1",
        zone="eu-west-1c",
        arch="arm64",
        capacity="spot",
    )
    assert parse_identity_document(document, "on-demand").capacity == "on_demand"
    assert parse_identity_document(document, None).capacity is None
    with pytest.raises(HostFactsError, match="instanceType or region"):
        parse_identity_document({"region": "eu-west-1"}, None)


def test_ecs_task_metadata() -> None:
    task = {
        "TaskARN": "arn:aws:ecs:us-east-2:012345678910:task/default/febee046097849ab",
        "Limits": {"CPU": 0.25, "Memory": 512},
        "AvailabilityZone": "us-east-2b",
        "LaunchType": "FARGATE",
    }
    facts = parse_ecs_task(task)
    assert (facts.platform, facts.region, facts.zone) == ("aws_ecs", "us-east-2", "us-east-2b")
    assert (facts.ecs_launch_type, facts.task_cpu, facts.task_memory_mib) == ("fargate", 0.25, 512)
    # No ARN: the region from the zone; no limits (EC2 launch type): none.
    facts = parse_ecs_task({"AvailabilityZone": "eu-west-1a", "LaunchType": "EC2"})
    assert (facts.region, facts.task_cpu, facts.task_memory_mib) == ("eu-west-1", None, None)


def test_host_overlays_merge_ecs_over_ec2() -> None:
    ecs = parse_ecs_task({"AvailabilityZone": "eu-west-1a", "LaunchType": "EC2"})
    ec2 = parse_identity_document(
        {"instanceType": "m5.large", "region": "eu-west-1", "availabilityZone": "eu-west-1a"},
        "on-demand",
    )
    overlay = overlay_from_hosts((ecs, ec2))
    assert overlay.origin == "ecs_metadata+ec2_metadata"
    assert overlay.values["cloud.platform"] == "aws_ecs"
    assert overlay.values["host.type"] == "m5.large"
    assert overlay.spot is False
    fargate = overlay_from_hosts(
        (
            parse_ecs_task(
                {
                    "AvailabilityZone": "us-east-2b",
                    "LaunchType": "FARGATE",
                    "Limits": {"CPU": 0.5, "Memory": 1024},
                }
            ),
        )
    )
    # What the pricing core reads back from them: a 0.5 vCPU, 1 GB Fargate task.
    facts = ResourceFacts.from_values(dict(fargate.values))
    assert (facts.platform, facts.ecs_launchtype, facts.region) == (
        "aws_ecs",
        "fargate",
        "us-east-2",
    )
    assert (facts.task_cpu, facts.task_memory) == ("0.5 vCPU", "1024 MiB")
