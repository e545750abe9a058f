"""The sidecar's node facts (spancost.facts.kube) against a real kube-apiserver, read as the
agent's own ServiceAccount with the shipped RBAC (configs/k8s/rbac.yaml): what it can
read, what it cannot, and the facts a Node and its Pods give."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import yaml
from kubernetes import client, utils
from kubernetes.client.exceptions import ApiException
from spancost.facts.kube import KubeFacts
from spancost.facts.model import Resources

from tests.e2e.kube import AGENT_ACCOUNT, AGENT_MANIFESTS, AGENT_NAMESPACE
from tests.kube.harness import KubeCluster, create_unless_exists
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def agent_token(kube_cluster: KubeCluster, admin: client.ApiClient) -> str:
    """A token of the agent's ServiceAccount, after applying the shipped RBAC."""
    kube_cluster.ensure_namespace(AGENT_NAMESPACE)
    for manifest in AGENT_MANIFESTS:
        for document in yaml.safe_load_all(manifest.read_text()):
            try:
                utils.create_from_dict(admin, document)  # type: ignore[no-untyped-call]
            except utils.FailToCreateError as exc:
                if any(e.status != 409 for e in exc.api_exceptions):
                    raise
    return kube_cluster.service_account_token(AGENT_NAMESPACE, AGENT_ACCOUNT)


@pytest.fixture
def node_name(admin: client.ApiClient) -> str:
    """A new Node labelled as EKS labels a spot m6g.large, with a kubelet's status."""
    name = f"ip-{uuid.uuid4().hex[:8]}.ec2.internal"
    core = client.CoreV1Api(admin)
    core.create_node(
        client.V1Node(
            metadata=client.V1ObjectMeta(
                name=name,
                labels={
                    "node.kubernetes.io/instance-type": "m6g.large",
                    "topology.kubernetes.io/region": "eu-west-1",
                    "topology.kubernetes.io/zone": "eu-west-1b",
                    "kubernetes.io/os": "linux",
                    "kubernetes.io/arch": "arm64",
                    "eks.amazonaws.com/capacityType": "SPOT",
                },
            ),
            spec=client.V1NodeSpec(provider_id="aws:///eu-west-1b/i-0123456789abcdef0"),
        )
    )
    core.patch_node_status(
        name,
        {
            "status": {
                "capacity": {"cpu": "2", "memory": "8Gi"},
                "allocatable": {"cpu": "1930m", "memory": "7Gi"},
            }
        },
    )
    return name


@pytest.fixture
def facts(kube_cluster: KubeCluster, agent_token: str, node_name: str) -> Iterator[KubeFacts]:
    watcher = KubeFacts(kube_cluster.api_client(agent_token), node_name, watch_timeout_s=30)
    watcher.start()
    assert watcher.wait_synced(30), watcher.stats
    yield watcher
    watcher.close()


def create_pod(admin: client.ApiClient, namespace: str, name: str, node: str) -> client.V1Pod:
    core = client.CoreV1Api(admin)
    create_unless_exists(
        lambda: core.create_namespaced_service_account(
            namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
        )
    )
    return core.create_namespaced_pod(
        namespace,
        client.V1Pod(
            metadata=client.V1ObjectMeta(
                name=name,
                labels={"app": "web", "pod-template-hash": "5d8f7c9b6"},
                owner_references=[
                    client.V1OwnerReference(
                        api_version="apps/v1",
                        kind="ReplicaSet",
                        name="web-5d8f7c9b6",
                        uid=str(uuid.uuid4()),
                        controller=True,
                    )
                ],
            ),
            spec=client.V1PodSpec(
                node_name=node,
                automount_service_account_token=False,
                containers=[
                    client.V1Container(
                        name="app",
                        image="registry.invalid/app:1",
                        resources=client.V1ResourceRequirements(
                            requests={"cpu": "250m", "memory": "256Mi"},
                            limits={"cpu": "1", "memory": "512Mi"},
                        ),
                    )
                ],
            ),
        ),
    )


def test_the_node_facts(facts: KubeFacts, node_name: str) -> None:
    node = facts.node()
    assert node is not None
    assert node.name == node_name
    assert (node.provider, node.instance_type) == ("aws", "m6g.large")
    assert (node.region, node.zone, node.os, node.arch) == (
        "eu-west-1",
        "eu-west-1b",
        "linux",
        "arm64",
    )
    assert (node.capacity, node.capacity_from) == ("spot", "eks.amazonaws.com/capacityType")
    assert node.allocatable == Resources(cpu=1.93, memory=7 * 2**30)
    assert node.capacity_total == Resources(cpu=2.0, memory=8 * 2**30)


def test_pods_of_the_node_only_kept_current(
    facts: KubeFacts, admin: client.ApiClient, kube_namespace: str, node_name: str
) -> None:
    mine = create_pod(admin, kube_namespace, "web-5d8f7c9b6-abcde", node_name)
    create_pod(admin, kube_namespace, "elsewhere", "another-node")
    uid = str(mine.metadata.uid)
    wait_for(lambda: uid in facts.pods(), 10, "the pod in the node facts")
    pod = facts.pods()[uid]
    assert (pod.namespace, pod.name, pod.node) == (kube_namespace, mine.metadata.name, node_name)
    assert (pod.workload_kind, pod.workload_name) == ("Deployment", "web")
    assert pod.requests == Resources(cpu=0.25, memory=256 * 2**20)
    assert pod.limits == Resources(cpu=1.0, memory=512 * 2**20)
    assert pod.end is None
    assert [p.name for p in facts.pods().values()] == [mine.metadata.name]

    started = datetime.now(UTC).replace(microsecond=0)
    core = client.CoreV1Api(admin)
    core.patch_namespaced_pod_status(
        mine.metadata.name,
        kube_namespace,
        {"status": {"phase": "Running", "startTime": started.strftime("%Y-%m-%dT%H:%M:%SZ")}},
    )
    wait_for(lambda: facts.pods()[uid].started == started, 10, "the pod's start time")

    core.delete_namespaced_pod(mine.metadata.name, kube_namespace, grace_period_seconds=0)
    wait_for(lambda: facts.pods()[uid].end is not None, 10, "the pod's end time")
    assert facts.pods()[uid].end >= started  # type: ignore[operator]


def test_a_relabelled_node_changes_the_facts(
    facts: KubeFacts, admin: client.ApiClient, node_name: str
) -> None:
    version = facts.version
    client.CoreV1Api(admin).patch_node(
        node_name, {"metadata": {"labels": {"eks.amazonaws.com/capacityType": "ON_DEMAND"}}}
    )
    wait_for(lambda: facts.version > version, 10, "the relabelled node")
    assert facts.node().capacity == "on_demand"  # type: ignore[union-attr]
    # A status heartbeat changes nothing that prices: no new version.
    version = facts.version
    client.CoreV1Api(admin).patch_node_status(
        node_name, {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
    )
    wait_for(
        lambda: facts.node().resource_version != "" and facts.stats["node"].events >= 2,  # type: ignore[union-attr]
        10,
        "the status update",
    )
    assert facts.version == version


@pytest.mark.parametrize(
    ("verb", "resource", "allowed"),
    [
        ("list", "nodes", True),
        ("watch", "nodes", True),
        ("list", "pods", True),
        ("watch", "pods", True),
        ("get", "nodes", False),
        ("patch", "nodes", False),
        ("create", "pods", False),
        ("delete", "pods", False),
        ("list", "secrets", False),
        ("get", "configmaps", False),
        ("list", "services", False),
    ],
)
def test_the_agent_can_read_nodes_and_pods_and_nothing_else(
    kube_cluster: KubeCluster, agent_token: str, verb: str, resource: str, allowed: bool
) -> None:
    with kube_cluster.api_client(agent_token) as api:
        review = client.AuthorizationV1Api(api).create_self_subject_access_review(
            client.V1SelfSubjectAccessReview(
                spec=client.V1SelfSubjectAccessReviewSpec(
                    resource_attributes=client.V1ResourceAttributes(verb=verb, resource=resource)
                )
            )
        )
    assert review.status.allowed is allowed


def test_a_forbidden_watch_says_so_and_keeps_trying(
    kube_cluster: KubeCluster, admin: client.ApiClient, node_name: str
) -> None:
    """Without the RBAC (a ServiceAccount bound to nothing) the facts stay unknown, the
    watcher says the API refuses, and it never stops asking."""
    token = kube_cluster.service_account_token("default", f"nobody-{uuid.uuid4().hex[:6]}")
    watcher = KubeFacts(kube_cluster.api_client(token), node_name, pods=False)
    watcher.start()
    try:
        wait_for(lambda: watcher.stats["node"].failures >= 2, 15, "two refused lists")
        assert watcher.node() is None
        assert watcher.stale_since is not None
    finally:
        watcher.close()
    with pytest.raises(ApiException) as refused:
        client.CoreV1Api(kube_cluster.api_client(token)).list_node()
    assert refused.value.status == 403
