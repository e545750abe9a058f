"""The harness itself: a real API server, with RBAC, TokenRequest and the scale subresource."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from tests.kube.harness import KubeCluster, KubeClusterError


def deployment(name: str, replicas: int) -> client.V1Deployment:
    labels = {"app": name}
    return client.V1Deployment(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1DeploymentSpec(
            replicas=replicas,
            selector=client.V1LabelSelector(match_labels=labels),
            template=client.V1PodTemplateSpec(
                metadata=client.V1ObjectMeta(labels=labels),
                spec=client.V1PodSpec(
                    containers=[client.V1Container(name="app", image="registry.invalid/app:1")]
                ),
            ),
        ),
    )


def test_it_is_a_real_api_server(kube_cluster: KubeCluster) -> None:
    assert kube_cluster.url.startswith("https://127.0.0.1:")
    with kube_cluster.api_client() as api:
        assert client.VersionApi(api).get_code().git_version.startswith("v1.")
        listed = client.CoreV1Api(api).list_namespace().items
    namespaces = {ns.metadata.name for ns in listed if ns.metadata}
    assert {"default", "kube-system"} <= namespaces


def test_rbac_forbids_a_service_account_without_bindings(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    token = kube_cluster.service_account_token(kube_namespace, "nobody", expiration_seconds=600)
    with kube_cluster.api_client(token) as api, pytest.raises(ApiException) as refused:
        client.AppsV1Api(api).list_namespaced_deployment(kube_namespace)
    assert refused.value.status == 403
    assert f"system:serviceaccount:{kube_namespace}:nobody" in str(refused.value.body)
    with kube_cluster.api_client() as admin:
        client.AppsV1Api(admin).list_namespaced_deployment(kube_namespace)


def test_a_role_binding_grants_exactly_its_rules(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    with kube_cluster.api_client() as admin:
        rbac = client.RbacAuthorizationV1Api(admin)
        rbac.create_namespaced_role(
            kube_namespace,
            client.V1Role(
                metadata=client.V1ObjectMeta(name="read-deployments"),
                rules=[
                    client.V1PolicyRule(
                        api_groups=["apps"], resources=["deployments"], verbs=["get", "list"]
                    )
                ],
            ),
        )
        rbac.create_namespaced_role_binding(
            kube_namespace,
            client.V1RoleBinding(
                metadata=client.V1ObjectMeta(name="reader"),
                role_ref=client.V1RoleRef(
                    api_group="rbac.authorization.k8s.io", kind="Role", name="read-deployments"
                ),
                subjects=[
                    client.RbacV1Subject(
                        kind="ServiceAccount", name="reader", namespace=kube_namespace
                    )
                ],
            ),
        )
    token = kube_cluster.service_account_token(kube_namespace, "reader")
    with kube_cluster.api_client(token) as api:
        apps = client.AppsV1Api(api)
        assert apps.list_namespaced_deployment(kube_namespace).items == []
        with pytest.raises(ApiException) as refused:
            apps.create_namespaced_deployment(kube_namespace, deployment("web", 1))
        assert refused.value.status == 403


def test_token_review_names_the_service_account(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    token = kube_cluster.service_account_token(kube_namespace, "robot")
    with kube_cluster.api_client() as admin:
        review = client.AuthenticationV1Api(admin).create_token_review(
            client.V1TokenReview(spec=client.V1TokenReviewSpec(token=token))
        )
    assert review.status and review.status.authenticated and review.status.user
    assert review.status.user.username == f"system:serviceaccount:{kube_namespace}:robot"


def test_deployments_scale_through_the_scale_subresource(
    kube_cluster: KubeCluster, kube_namespace: str
) -> None:
    with kube_cluster.api_client() as admin:
        apps = client.AppsV1Api(admin)
        apps.create_namespaced_deployment(kube_namespace, deployment("web", 4))
        scale = apps.read_namespaced_deployment_scale("web", kube_namespace)
        assert scale.spec and scale.spec.replicas == 4
        apps.patch_namespaced_deployment_scale("web", kube_namespace, {"spec": {"replicas": 1}})
        spec = apps.read_namespaced_deployment("web", kube_namespace).spec
        assert spec and spec.replicas == 1


def test_kubeconfig_works_with_the_official_loader(
    kube_cluster: KubeCluster, kube_namespace: str, tmp_path: Path
) -> None:
    token = kube_cluster.service_account_token(kube_namespace, "viewer")
    path = kube_cluster.kubeconfig(token, tmp_path / "kubeconfig")
    assert kube_cluster.url in path.read_text()
    api = config.new_client_from_config(config_file=str(path))  # type: ignore[no-untyped-call]
    with api, pytest.raises(ApiException) as refused:
        client.AppsV1Api(api).list_namespaced_deployment(kube_namespace)
    assert refused.value.status == 403
    # Authenticated as the ServiceAccount (not anonymous), and refused by RBAC.
    assert f"system:serviceaccount:{kube_namespace}:viewer" in str(refused.value.body)


def test_missing_binaries_fail_with_a_clear_message(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KUBE_APISERVER", str(tmp_path / "no-such-kube-apiserver"))
    with pytest.raises(KubeClusterError, match=r"kube-apiserver .*scripts/kube\.sh"):
        KubeCluster(tmp_path)
