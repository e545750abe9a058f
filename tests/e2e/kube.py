"""One Kubernetes node for the end-to-end tests: pods on a real API server, the shipped
agent config pointed at it, and OTLP/HTTP sent from a pod's own address.

No kubelet runs (tests/kube/harness.py), so a pod's ``status.podIP`` is whatever the test
writes through the ``pods/status`` subresource: a loopback address of its own
(127.0.0.2, 127.0.0.3, ...; Linux routes all of 127.0.0.0/8 to ``lo``), from which the
test then connects. The collector sees that address as the connection's, as it would
see a pod's on a node.

The agent reads the API as the shipped ServiceAccount with the shipped RBAC
(configs/k8s/serviceaccount.yaml, rbac.yaml, applied for real): without ``pods`` the
collector does not start (``wait_for_metadata``); without ``namespaces`` it starts
5 s late and without ``k8s.cluster.uid``, which a test then misses.
"""

from __future__ import annotations

import copy
import http.client
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, utils
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from tests.e2e.harness import ROOT
from tests.e2e.totals import totals_config
from tests.kube.harness import KubeCluster, create_unless_exists

__all__ = [
    "AGENT_ACCOUNT",
    "AGENT_CONFIG",
    "AGENT_MANIFESTS",
    "AGENT_NAMESPACE",
    "Pod",
    "agent_config",
    "agent_kubeconfig",
    "create_node",
    "node_facts",
    "run_pod",
    "send_from",
]

AGENT_CONFIG = ROOT / "configs" / "daemonset.yaml"
AGENT_MANIFESTS = [ROOT / "configs" / "k8s" / name for name in ("serviceaccount.yaml", "rbac.yaml")]
AGENT_NAMESPACE = "spancost"
AGENT_ACCOUNT = "spancost-agent"
MERGE_PATCH = "application/merge-patch+json"


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    ip: str
    uid: str


def agent_kubeconfig(cluster: KubeCluster, path: Path) -> Path:
    """A kubeconfig of the agent's own ServiceAccount, after applying its shipped RBAC."""
    cluster.ensure_namespace(AGENT_NAMESPACE)
    with cluster.api_client() as api:
        for manifest in AGENT_MANIFESTS:
            for document in yaml.safe_load_all(manifest.read_text()):
                utils.create_from_dict(api, document)  # type: ignore[no-untyped-call]
    return cluster.kubeconfig(cluster.service_account_token(AGENT_NAMESPACE, AGENT_ACCOUNT), path)


def run_pod(
    cluster: KubeCluster,
    namespace: str,
    name: str,
    *,
    ip: str,
    node: str,
    annotations: dict[str, str] | None = None,
    requests: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
) -> Pod:
    """Pod ``namespace/name`` bound to ``node``, running with ``status.podIP`` ``ip``:
    what a scheduler and a kubelet would have made of it."""
    cluster.ensure_namespace(namespace)
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        # No controller-manager makes a namespace's "default" ServiceAccount, and the
        # ServiceAccount admission plugin refuses a pod whose account is missing.
        create_unless_exists(
            lambda: core.create_namespaced_service_account(
                namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name="default"))
            )
        )
        pod = core.create_namespaced_pod(
            namespace,
            client.V1Pod(
                metadata=client.V1ObjectMeta(name=name, annotations=annotations, labels=labels),
                spec=client.V1PodSpec(
                    node_name=node,
                    automount_service_account_token=False,
                    containers=[
                        client.V1Container(
                            name="app",
                            image="registry.invalid/app:1",
                            resources=client.V1ResourceRequirements(requests=requests),
                        )
                    ],
                ),
            ),
        )
        status = {
            "status": {
                "phase": "Running",
                "podIP": ip,
                "podIPs": [{"ip": ip}],
                "startTime": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            }
        }
        core.patch_namespaced_pod_status(name, namespace, status, _content_type=MERGE_PATCH)
    assert pod.metadata is not None
    return Pod(namespace, name, ip, str(pod.metadata.uid))


def create_node(
    cluster: KubeCluster,
    name: str,
    *,
    instance_type: str,
    zone: str = "us-east-1a",
    arch: str = "amd64",
    labels: dict[str, str] | None = None,
    cpu: str = "4",
    memory: str = "16Gi",
    instance_id: str = "i-0123456789abcdef0",
) -> None:
    """Node `name` labelled as EKS labels its nodes (us-east-1), with the capacity and
    allocatable a kubelet would report: what a cloud provider and a kubelet make of it."""
    all_labels = {
        "node.kubernetes.io/instance-type": instance_type,
        "topology.kubernetes.io/region": "us-east-1",
        "topology.kubernetes.io/zone": zone,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": arch,
        "kubernetes.io/hostname": name,
        **(labels or {}),
    }
    with cluster.api_client() as api:
        core = client.CoreV1Api(api)
        core.create_node(
            client.V1Node(
                metadata=client.V1ObjectMeta(name=name, labels=all_labels),
                spec=client.V1NodeSpec(provider_id=f"aws:///{zone}/{instance_id}"),
            )
        )
        core.patch_node_status(
            name,
            {
                "status": {
                    "capacity": {"cpu": cpu, "memory": memory, "pods": "58"},
                    "allocatable": {"cpu": cpu, "memory": memory, "pods": "58"},
                }
            },
        )


def agent_config(
    sink_port: int,
    socket: Path,
    database_url: str,
    *,
    by_transaction: dict[str, str],
    owner_domains: dict[str, str],
) -> dict[str, Any]:
    """The shipped agent's processors, in the shipped order, with the totals sink's
    shipped naming config, around the test's endpoints (`totals.totals_config`: the
    sidecar spawned on `socket`, a test OTLP sink, the totals exporter into
    `database_url`). The test's domains fill the shipped ``domains.by_transaction`` and
    ``domains.owner.domains`` (the latter only where the shipped config has an owner:
    without one, the test shows whose budget pays then).

    Changed for the test, and nothing that decides who pays or what it costs:
    ``k8s_attributes`` and the cost plugin's node facts read ``$KUBECONFIG`` (the
    shipped ``serviceAccount`` reads the pod's mounted token), and
    the python processor waits 2 s instead of 250 ms, so that a first call on two busy
    shared cores is priced rather than passed unpriced (``on_error: pass``).
    """
    shipped = yaml.safe_load(AGENT_CONFIG.read_text())
    config = totals_config(sink_port, socket, database_url)
    processors = copy.deepcopy(shipped["processors"])
    processors["k8s_attributes"]["auth_type"] = "kubeConfig"
    node_facts(processors)["kubernetes"]["auth_type"] = "kubeConfig"
    processors["python/spancost"]["timeout"] = "2s"
    config["processors"] = processors
    config["service"]["pipelines"]["traces"]["processors"] = list(
        shipped["service"]["pipelines"]["traces"]["processors"]
    )
    naming = {
        key: value
        for key, value in shipped["extensions"]["python"]["sinks"]["totals"]["config"].items()
        if key != "database_url"
    }
    domains = naming.setdefault("domains", {})
    domains["by_transaction"] = by_transaction
    if "owner" in domains:
        domains["owner"]["domains"] = owner_domains
    allocation = naming.get("allocation")
    if allocation is not None:
        allocation["node_facts"]["kubernetes"]["auth_type"] = "kubeConfig"
    config["extensions"]["python"]["sinks"]["totals"]["config"].update(naming)
    return config


def node_facts(processors: dict[str, Any]) -> dict[str, Any]:
    """The ``node_facts`` section of the shipped ``spancost.cost`` step in `processors`."""
    steps = processors["python/spancost"]["config"]["steps"]
    (cost,) = [step for step in steps if step["plugin"] == "spancost.cost"]
    section: dict[str, Any] = cost["config"]["node_facts"]
    return section


def send_from(
    address: str, endpoint: str, request: trace_service_pb2.ExportTraceServiceRequest
) -> None:
    """POST `request` to the collector's OTLP/HTTP `endpoint` (host:port) over a
    connection whose source address is `address`; raise unless it is accepted."""
    host, port = endpoint.rsplit(":", 1)
    connection = http.client.HTTPConnection(
        host, int(port), timeout=30, source_address=(address, 0)
    )
    try:
        connection.request(
            "POST",
            "/v1/traces",
            body=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
        )
        response = connection.getresponse()
        body = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise AssertionError(f"OTLP/HTTP from {address}: {response.status} {body[:500]!r}")
