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

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic
from kubernetes.dynamic.exceptions import ConflictError, DynamicApiError

from tests.kube.harness import KubeCluster, create_unless_exists
from tests.waiting import wait_for

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FIELD_MANAGER = "spancost-manifest-test"
# configs/k8s alone has six manifests today; fewer means discovery broke.
MINIMUM_MANIFESTS = 6


@dataclass(frozen=True)
class Manifest:
    path: Path
    index: int  # the document's position in its file
    body: dict[str, Any]

    @property
    def kind(self) -> str:
        return str(self.body["kind"])

    @property
    def name(self) -> str:
        metadata = self.body.get("metadata") or {}
        return str(metadata.get("name") or metadata.get("generateName") or "?")

    @property
    def namespace(self) -> str | None:
        metadata = self.body.get("metadata") or {}
        namespace = metadata.get("namespace")
        return str(namespace) if namespace else None

    @property
    def id(self) -> str:
        return f"{self.path.relative_to(CONFIGS)}#{self.index}:{self.kind}/{self.name}"


def find_manifests(root: Path = CONFIGS) -> list[Manifest]:
    """Every YAML document with ``apiVersion`` and ``kind`` under ``root`` (items of a List too)."""
    found: list[Manifest] = []
    for path in sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")]):
        for index, document in enumerate(yaml.safe_load_all(path.read_text())):
            for body in _objects(document):
                found.append(Manifest(path, index, body))
    return found


def _objects(document: Any) -> Iterator[dict[str, Any]]:
    if not (isinstance(document, dict) and "apiVersion" in document and "kind" in document):
        return
    if document["kind"] == "List":
        for item in document.get("items") or []:
            yield from _objects(item)
    else:
        yield document


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


CRDS = Path(__file__).resolve().parent / "crds"
"""Custom resource definitions the manifests need (the Prometheus Operator's PrometheusRule)."""


def install_crds(kube_cluster: KubeCluster) -> None:
    """Create the CRDs under `CRDS` for real and wait until the API server serves them."""
    with kube_cluster.api_client() as api:
        extensions = client.ApiextensionsV1Api(api)
        names = []
        for path in sorted(CRDS.glob("*.yaml")):
            body = yaml.safe_load(path.read_text())
            create_unless_exists(
                lambda body=body: extensions.create_custom_resource_definition(body)
            )
            names.append(body["metadata"]["name"])

        def established() -> bool:
            for name in names:
                status = extensions.read_custom_resource_definition(name).status
                conditions = {c.type: c.status for c in (status.conditions or [])}
                if conditions.get("Established") != "True":
                    return False
            return True

        wait_for(established, 30, "the CRDs to be established", interval=0.2)


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


class DryRun:
    def __init__(self, api: dynamic.DynamicClient) -> None:
        self.api: Any = api  # the dynamic client has no type annotations

    def _resource(self, manifest: Manifest) -> Any:
        return self.api.resources.get(api_version=manifest.body["apiVersion"], kind=manifest.kind)

    def _namespace(self, manifest: Manifest, resource: Any) -> str | None:
        return (manifest.namespace or "default") if resource.namespaced else None

    def apply_for_real(self, manifest: Manifest) -> None:
        resource = self._resource(manifest)
        self.api.server_side_apply(
            resource,
            body=manifest.body,
            namespace=self._namespace(manifest, resource),
            field_manager=FIELD_MANAGER,
            force_conflicts=True,
            query_params=[("fieldValidation", "Strict")],
        )

    def check(self, manifest: Manifest) -> list[str]:
        """Dry-run ``manifest``; return the server's warnings (an error raises).

        A create, so that the manifest alone is judged; an object that exists already
        (a namespace made above, an object another test made for real) is dry-run
        applied instead, as ``kubectl apply --server-side --dry-run=server`` would.
        """
        resource = self._resource(manifest)
        namespace = self._namespace(manifest, resource)

        def options() -> dict[str, Any]:  # new each time: the client appends to query_params
            return {
                "body": manifest.body,
                "namespace": namespace,
                "dry_run": "All",
                "field_manager": FIELD_MANAGER,
                "query_params": [("fieldValidation", "Strict")],
                "serialize": False,  # the raw response, for its Warning headers
            }

        try:
            response = self.api.create(resource, **options())
        except ConflictError:
            if "name" not in (manifest.body.get("metadata") or {}):
                raise
            response = self.api.server_side_apply(resource, force_conflicts=True, **options())
        return list(response.headers.getlist("Warning"))


def server_message(exc: DynamicApiError) -> str:
    """The status code and the server's message (a Status object's ``message``)."""
    try:
        message = json.loads(exc.body or "{}").get("message")
    except ValueError:
        message = None
    return f"{exc.status} {message or exc.body}"


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
