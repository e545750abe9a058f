"""Every Kubernetes manifest under configs/ is accepted by a real API server.

A manifest is any YAML document under configs/ with ``apiVersion`` and ``kind``
(collector configs and budgets have neither). Each is sent as a server-side dry run
(``dryRun=All``) with strict field validation, so the server's own schema, defaulting,
validation and admission (Pod Security included) judge it and nothing is stored; a
warning (an unknown field, a deprecated API, a pod template the namespace's Pod
Security level would refuse) fails the test too. Namespace manifests are applied for
real first, so their labels (Pod Security) are in force for what goes into them, and
every other namespace a manifest names is created empty.
"""

from __future__ import annotations

import pytest
from kubernetes import dynamic
from kubernetes.dynamic.exceptions import DynamicApiError

from tests.kube.harness import KubeCluster
from tests.kube.manifests import (
    CONFIGS,
    DryRun,
    Manifest,
    find_manifests,
    install_crds,
    server_message,
)

# configs/k8s alone has six manifests today; fewer means discovery broke.
MINIMUM_MANIFESTS = 6


MANIFESTS = find_manifests()


def test_the_known_manifests_are_found() -> None:
    assert len(MANIFESTS) >= MINIMUM_MANIFESTS, [m.id for m in MANIFESTS]
    files = {m.path.relative_to(CONFIGS).as_posix() for m in MANIFESTS}
    for name in (
        "namespace",
        "serviceaccount",
        "rbac",
        "configmap",
        "daemonset",
        "service",
        "gateway",
        "gateway-configmap",
    ):
        assert f"k8s/{name}.yaml" in files, sorted(files)
    # Collector configs are YAML too, but not manifests.
    assert "daemonset.yaml" not in files and "local.yaml" not in files


@pytest.fixture(scope="module")
def dry_run(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> DryRun:
    install_crds(kube_cluster)
    cache = tmp_path_factory.mktemp("discovery") / "discovery.json"
    api = dynamic.DynamicClient(kube_cluster.api_client(), cache_file=str(cache))  # type: ignore[no-untyped-call]
    checker = DryRun(api)
    for manifest in MANIFESTS:
        if manifest.kind == "Namespace" and manifest.body["apiVersion"] == "v1":
            checker.apply_for_real(manifest)
    for namespace in sorted({m.namespace for m in MANIFESTS if m.namespace} | {"default"}):
        kube_cluster.ensure_namespace(namespace)
    return checker


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[m.id for m in MANIFESTS])
def test_manifest_is_accepted_by_the_api_server(dry_run: DryRun, manifest: Manifest) -> None:
    try:
        warnings = dry_run.check(manifest)
    except DynamicApiError as exc:
        pytest.fail(f"{manifest.id}: the API server refused it: {server_message(exc)}")
    assert not warnings, f"{manifest.id}: the API server warned: {warnings}"


def test_an_invalid_manifest_is_refused(dry_run: DryRun) -> None:
    """The dry run can fail: a server-side error, not only a client-side one."""
    broken = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "Not_A_DNS_Name", "namespace": "default"},
        "spec": {
            "replicas": -1,
            "selector": {"matchLabels": {"app": "a"}},
            "template": {"metadata": {"labels": {"app": "b"}}, "spec": {"containers": []}},
        },
    }
    with pytest.raises(DynamicApiError) as refused:
        dry_run.check(Manifest(CONFIGS / "broken.yaml", 0, broken))
    assert refused.value.status == 422
    message = server_message(refused.value)
    for field in ("metadata.name", "spec.replicas", "spec.template.metadata.labels"):
        assert field in message, message


def test_an_unknown_field_is_refused(dry_run: DryRun) -> None:
    """Strict field validation: a misspelt key is an error, not a silently dropped field."""
    typo = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "typo", "namespace": "default"},
        "dataa": {"key": "value"},
    }
    with pytest.raises(DynamicApiError) as refused:
        dry_run.check(Manifest(CONFIGS / "typo.yaml", 0, typo))
    assert 'unknown field "dataa"' in server_message(refused.value)


def test_a_pod_security_warning_is_seen(dry_run: DryRun, kube_cluster: KubeCluster) -> None:
    """Pod Security judges a workload's pod template only with a warning: it must reach us."""
    namespace = {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {
            "name": "restricted-check",
            "labels": {"pod-security.kubernetes.io/warn": "restricted"},
        },
    }
    dry_run.apply_for_real(Manifest(CONFIGS / "restricted.yaml", 0, namespace))
    privileged = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "privileged", "namespace": "restricted-check"},
        "spec": {
            "selector": {"matchLabels": {"app": "p"}},
            "template": {
                "metadata": {"labels": {"app": "p"}},
                "spec": {
                    "containers": [
                        {"name": "p", "image": "registry.invalid/p:1",
                         "securityContext": {"privileged": True}}
                    ]
                },
            },
        },
    }  # fmt: skip
    warnings = dry_run.check(Manifest(CONFIGS / "privileged.yaml", 0, privileged))
    assert any("PodSecurity" in w and "privileged" in w for w in warnings), warnings
