"""The guard's opt-in ValidatingAdmissionPolicy, against a real kube-apiserver.

configs/guard/admission-policy.yaml (policy and binding, applied as shipped) holds the
guard's ServiceAccount to its own ``spancost.io/*`` annotations on Deployments, and
leaves the scale subresource, other users and other resources alone. The guard
patches with its own token (configs/guard/serviceaccount.yaml), bound by
configs/guard/rbac.yaml in this module's namespace; "admin" is the harness's
``system:masters`` token.

Admission policies take effect asynchronously (the API server's policy informer), so
the module waits, bounded, until a known-forbidden patch is denied before it tests
anything, and on teardown removes the policy and binding and waits until that patch
passes again, so the other kube tests sharing the cluster never see the policy.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from spancost.guard.alerts import AlertSender
from spancost.guard.budgets import Budget, GuardConfig
from spancost.guard.kube import KubeCluster as GuardCluster
from spancost.guard.policy import ORIGINAL_ANNOTATION, SCALED_AT_ANNOTATION
from spancost.guard.run import RunReport, run_once
from spancost.store import SQLiteStore

from tests.kube.guard_env import (
    GUARD_ACCOUNT,
    GUARD_CONFIGS,
    GUARD_NAMESPACE,
    bind_guard_role,
    deployment_body,
    store_with,
)
from tests.kube.harness import KubeCluster, create_unless_exists, delete_unless_missing

POLICY_FILE = GUARD_CONFIGS / "admission-policy.yaml"
MESSAGE = "spancost-guard may only change spancost.io/* annotations on Deployments"
MERGE_PATCH = "application/merge-patch+json"
# How long the API server may take to start or stop enforcing a policy or binding.
ENFORCEMENT_TIMEOUT_S = 30.0
Patch = dict[str, Any]


def _documents(path: Path) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in yaml.safe_load_all(path.read_text()) if doc}


POLICY = _documents(POLICY_FILE)["ValidatingAdmissionPolicy"]
BINDING = _documents(POLICY_FILE)["ValidatingAdmissionPolicyBinding"]

# Patches the guard must not make (each on a fresh Deployment made by `deployment`).
FORBIDDEN: dict[str, Patch] = {
    "replicas": {"spec": {"replicas": 1}},
    "image": {
        "spec": {
            "template": {"spec": {"containers": [{"name": "app", "image": "registry.invalid/x:2"}]}}
        }
    },
    "replicas-with-own-annotation": {
        "metadata": {"annotations": {"spancost.io/original-replicas": "4"}},
        "spec": {"replicas": 2},
    },
    "label-change": {"metadata": {"labels": {"domain": "search"}}},
    "label-add": {"metadata": {"labels": {"criticality": "low"}}},
    "label-remove": {"metadata": {"labels": {"team": None}}},
    "annotation-change": {"metadata": {"annotations": {"example.com/owner": "mallory"}}},
    "annotation-add": {"metadata": {"annotations": {"spancost.io.evil/x": "1"}}},
    "annotation-remove": {"metadata": {"annotations": {"example.com/owner": None}}},
    "exclude-flag-lookalike": {"metadata": {"annotations": {"spancost.io-exclude": "true"}}},
    "finalizer-add": {"metadata": {"finalizers": ["example.com/hold"]}},
}


# -- fixtures ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def guard_client(kube_cluster: KubeCluster, guard_token: str) -> client.ApiClient:
    """An API client with a token of the guard's own ServiceAccount."""
    return kube_cluster.api_client(guard_token)


@pytest.fixture(scope="module")
def namespace(admin: client.ApiClient) -> str:
    """This module's namespace, with the guard's Role and RoleBinding (rbac.yaml) in it."""
    name = f"admission-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(admin).create_namespace({"metadata": {"name": name}})
    bind_guard_role(admin, name)
    return name


@dataclass
class Cluster:
    """The module's namespace, admin and guard clients, and the policy's on/off switch."""

    namespace: str
    admin: client.ApiClient
    guard: client.ApiClient

    @property
    def admission(self) -> client.AdmissionregistrationV1Api:
        return client.AdmissionregistrationV1Api(self.admin)

    def deployment(self, replicas: int = 4, *, bare: bool = False) -> str:
        """A new Deployment with labels and an annotation of someone else's; its name.

        ``bare``: with neither labels nor annotations (the maps absent, not empty).
        """
        name = f"app-{uuid.uuid4().hex[:8]}"
        body = deployment_body(
            name,
            replicas,
            {"team": "payments"},
            {"example.com/owner": "payments"},
            bare=bare,
        )
        client.AppsV1Api(self.admin).create_namespaced_deployment(self.namespace, body)
        return name

    def get(self, name: str) -> Any:
        return client.AppsV1Api(self.admin).read_namespaced_deployment(name, self.namespace)

    def patch(self, api: client.ApiClient, name: str, body: Patch) -> Any:
        """A merge patch of Deployment ``name``, as the guard sends them."""
        return client.AppsV1Api(api).patch_namespaced_deployment(
            name, self.namespace, body, _content_type=MERGE_PATCH
        )

    def scale(self, api: client.ApiClient, name: str, replicas: int) -> Any:
        return client.AppsV1Api(api).patch_namespaced_deployment_scale(
            name, self.namespace, {"spec": {"replicas": replicas}}, _content_type=MERGE_PATCH
        )

    def enforced(self) -> bool:
        """Whether the policy denies the guard a known-forbidden patch now.

        The probe changes a label of its own Deployment: while the policy is not in
        force, the patch goes through (and changes only the probe).
        """
        probe = f"probe-{self.namespace}"
        try:
            self.patch(self.guard, probe, {"metadata": {"labels": {"probe": uuid.uuid4().hex}}})
        except ApiException as exc:
            if exc.status == 403 and MESSAGE in message_of(exc):
                return True
            raise
        return False

    def wait_until(self, enforced: bool) -> None:
        """Bounded: until the policy is (or is no longer) in force for the guard."""
        deadline = time.monotonic() + ENFORCEMENT_TIMEOUT_S
        while self.enforced() is not enforced:
            if time.monotonic() > deadline:
                state = "enforced" if enforced else "lifted"
                pytest.fail(f"the admission policy was not {state} after {ENFORCEMENT_TIMEOUT_S}s")
            time.sleep(0.2)

    def create_probe(self) -> None:
        body = deployment_body(f"probe-{self.namespace}", 1, bare=True)
        client.AppsV1Api(self.admin).create_namespaced_deployment(self.namespace, body)


@pytest.fixture(scope="module")
def cluster(
    admin: client.ApiClient, guard_client: client.ApiClient, namespace: str
) -> Iterator[Cluster]:
    """The policy and binding of configs/guard/admission-policy.yaml, in force.

    Removed afterwards, and waited for until lifted: the other kube tests share the
    API server and run the guard with the same ServiceAccount.
    """
    state = Cluster(namespace, admin, guard_client)
    state.create_probe()
    admission = state.admission
    admission.create_validating_admission_policy(POLICY)
    admission.create_validating_admission_policy_binding(BINDING)
    try:
        state.wait_until(enforced=True)
        yield state
    finally:
        delete_unless_missing(
            lambda: admission.delete_validating_admission_policy_binding(_name(BINDING))
        )
        delete_unless_missing(lambda: admission.delete_validating_admission_policy(_name(POLICY)))
        state.wait_until(enforced=False)


def _name(document: dict[str, Any]) -> str:
    return str(document["metadata"]["name"])


def message_of(exc: ApiException) -> str:
    """The Status message of an error answer (else its body)."""
    try:
        status = json.loads(exc.body or "{}")
    except ValueError:
        return str(exc.body)
    return str(status.get("message") or exc.body) if isinstance(status, dict) else str(exc.body)


def denied(call: Callable[[], object]) -> str:
    """``call`` is refused by the policy (403 with its message); the message."""
    with pytest.raises(ApiException) as caught:
        call()
    message = message_of(caught.value)
    assert caught.value.status == 403, (caught.value.status, message)
    assert MESSAGE in message, message
    assert _name(POLICY) in message, message
    return message


# -- the manifest itself -------------------------------------------------------------


def test_policy_matches_the_guards_service_account_and_deployments_only() -> None:
    username = f"system:serviceaccount:{GUARD_NAMESPACE}:{GUARD_ACCOUNT}"
    conditions = POLICY["spec"]["matchConditions"]
    assert [c["expression"] for c in conditions] == [f"request.userInfo.username == '{username}'"]
    rules = POLICY["spec"]["matchConstraints"]["resourceRules"]
    assert [(r["apiGroups"], r["resources"], r["operations"]) for r in rules] == [
        (["apps"], ["deployments"], ["UPDATE"])  # no subresource: deployments/scale passes
    ]
    assert POLICY["spec"]["failurePolicy"] == "Fail"
    assert all(MESSAGE in v["message"] for v in POLICY["spec"]["validations"])
    assert BINDING["spec"]["policyName"] == _name(POLICY)
    assert BINDING["spec"]["validationActions"] == ["Deny"]


# -- the guard's token ---------------------------------------------------------------


def test_guard_may_add_change_and_remove_its_annotations(cluster: Cluster) -> None:
    name = cluster.deployment()
    key = "spancost.io/original-replicas"
    cluster.patch(cluster.guard, name, {"metadata": {"annotations": {key: "4"}}})
    assert cluster.get(name).metadata.annotations[key] == "4"
    cluster.patch(
        cluster.guard,
        name,
        {"metadata": {"annotations": {key: "5", "spancost.io/scaled-at": "2025-01-01T00:00:00Z"}}},
    )
    assert cluster.get(name).metadata.annotations[key] == "5"
    cluster.patch(cluster.guard, name, {"metadata": {"annotations": {key: None}}})
    deployment = cluster.get(name)
    assert key not in deployment.metadata.annotations
    assert deployment.metadata.annotations["example.com/owner"] == "payments"
    assert deployment.spec.replicas == 4


def test_guard_may_annotate_a_deployment_without_labels_or_annotations(cluster: Cluster) -> None:
    name = cluster.deployment(bare=True)
    before = cluster.get(name).metadata
    assert (before.labels, before.annotations) == (None, None)
    cluster.patch(cluster.guard, name, {"metadata": {"annotations": {"spancost.io/x": "1"}}})
    cluster.patch(cluster.guard, name, {"metadata": {"annotations": {"spancost.io/x": None}}})
    assert not cluster.get(name).metadata.annotations
    denied(lambda: cluster.patch(cluster.guard, name, {"metadata": {"labels": {"a": "b"}}}))
    denied(lambda: cluster.patch(cluster.guard, name, {"metadata": {"annotations": {"a": "b"}}}))


def test_guard_may_patch_its_annotations_with_the_resource_version_precondition(
    cluster: Cluster,
) -> None:
    """As the guard's adapter does: the patch carries the resourceVersion it read."""
    name = cluster.deployment()
    version = cluster.get(name).metadata.resource_version
    body = {"metadata": {"resourceVersion": version, "annotations": {"spancost.io/x": "1"}}}
    cluster.patch(cluster.guard, name, body)
    assert cluster.get(name).metadata.annotations["spancost.io/x"] == "1"


@pytest.mark.parametrize("change", FORBIDDEN, ids=list(FORBIDDEN))
def test_guard_may_not_change_anything_else(cluster: Cluster, change: str) -> None:
    name = cluster.deployment()
    before = cluster.get(name)
    denied(lambda: cluster.patch(cluster.guard, name, FORBIDDEN[change]))
    after = cluster.get(name)
    assert after.metadata.resource_version == before.metadata.resource_version


def test_guard_may_still_scale_through_the_scale_subresource(cluster: Cluster) -> None:
    name = cluster.deployment()
    cluster.scale(cluster.guard, name, 2)
    assert cluster.get(name).spec.replicas == 2
    cluster.scale(cluster.guard, name, 4)
    assert cluster.get(name).spec.replicas == 4


# -- everybody else ------------------------------------------------------------------


@pytest.mark.parametrize("change", FORBIDDEN, ids=list(FORBIDDEN))
def test_admin_is_not_affected(cluster: Cluster, change: str) -> None:
    name = cluster.deployment()
    before = cluster.get(name)
    cluster.patch(cluster.admin, name, FORBIDDEN[change])
    assert cluster.get(name).metadata.resource_version != before.metadata.resource_version


def test_another_service_account_with_the_same_role_is_not_affected(
    cluster: Cluster, kube_cluster: KubeCluster
) -> None:
    """The policy matches the guard's username, not the Role: a lookalike is let through."""
    other = "spancost-guard-lookalike"
    token = kube_cluster.service_account_token(cluster.namespace, other)
    binding = {
        "metadata": {"name": other},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "spancost-guard",
        },
        "subjects": [{"kind": "ServiceAccount", "name": other, "namespace": cluster.namespace}],
    }
    client.RbacAuthorizationV1Api(cluster.admin).create_namespaced_role_binding(
        cluster.namespace, binding
    )
    name = cluster.deployment()
    with kube_cluster.api_client(token) as lookalike:
        cluster.patch(lookalike, name, FORBIDDEN["replicas"])
    assert cluster.get(name).spec.replicas == 1


# -- the guard itself, end to end ----------------------------------------------------


def run_guard(cluster: Cluster, tmp_path: Path, spend: float, now: datetime) -> RunReport:
    """One run of the guard with its own token, ``spend`` USD of checkout at ``now``."""
    path = tmp_path / f"totals-{uuid.uuid4().hex[:6]}.db"
    store_with(path, now, checkout=spend).close()
    budget = Budget(
        domain="checkout",
        limit=100.0,
        currency="USD",
        namespaces=(cluster.namespace,),
        selector="domain=checkout",
    )
    return run_once(
        GuardConfig((budget,)),
        lambda: SQLiteStore(path),
        lambda: GuardCluster(cluster.guard, timeout=5.0),
        AlertSender(()),
        now,
    )


def test_guard_scales_down_and_restores_with_the_policy_in_force(
    cluster: Cluster, tmp_path: Path, admin: client.ApiClient, kube_cluster: KubeCluster
) -> None:
    # A namespace of its own, so that only this test's Deployment matches the budget.
    own = Cluster(f"admission-run-{uuid.uuid4().hex[:8]}", admin, cluster.guard)
    kube_cluster.ensure_namespace(own.namespace)
    bind_guard_role(admin, own.namespace)
    name = own.deployment(replicas=10)
    now = datetime.now(UTC).replace(microsecond=0)

    breached = run_guard(own, tmp_path, 120.0, now)
    assert breached.ok, breached.to_json()
    scaled = own.get(name)
    assert scaled.spec.replicas == 7  # floor(10 x 0.7), through deployments/scale
    assert scaled.metadata.annotations[ORIGINAL_ANNOTATION] == "10"
    assert scaled.metadata.annotations["example.com/owner"] == "payments"

    recovered = run_guard(own, tmp_path, 50.0, now + timedelta(minutes=10))
    assert recovered.ok, recovered.to_json()
    restored = own.get(name)
    assert restored.spec.replicas == 10
    assert ORIGINAL_ANNOTATION not in restored.metadata.annotations
    assert SCALED_AT_ANNOTATION in restored.metadata.annotations
    assert restored.metadata.labels == {"domain": "checkout", "team": "payments"}
    assert cluster.enforced()  # it was the policy's world all along


# -- the policy can fail -------------------------------------------------------------


def test_without_the_binding_the_forbidden_patch_goes_through(cluster: Cluster) -> None:
    """The denials above are the policy's doing: unbound, the same patch is allowed."""
    name = cluster.deployment()
    denied(lambda: cluster.patch(cluster.guard, name, FORBIDDEN["replicas"]))
    admission = cluster.admission
    admission.delete_validating_admission_policy_binding(_name(BINDING))
    try:
        cluster.wait_until(enforced=False)
        cluster.patch(cluster.guard, name, FORBIDDEN["replicas"])
        assert cluster.get(name).spec.replicas == 1
    finally:
        create_unless_exists(lambda: admission.create_validating_admission_policy_binding(BINDING))
        cluster.wait_until(enforced=True)
    denied(lambda: cluster.patch(cluster.guard, name, {"spec": {"replicas": 3}}))
