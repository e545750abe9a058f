"""Kubernetes manifests as the tests read them, and a server-side dry run against the
test API server: what tests/kube/test_manifests.py (configs/) and test_helm_chart.py
(the chart's rendered documents) both judge."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, dynamic
from kubernetes.dynamic.exceptions import ConflictError, DynamicApiError

from tests.kube.harness import KubeCluster, create_unless_exists
from tests.waiting import wait_for

__all__ = [
    "CONFIGS",
    "CRDS",
    "DryRun",
    "Manifest",
    "find_manifests",
    "install_crds",
    "manifests_of",
    "server_message",
]

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
FIELD_MANAGER = "spancost-manifest-test"
HELM_CHARTS = CONFIGS / "helm"
"""Chart templates are Go templates, not YAML: test_helm_chart.py renders them."""


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
    """Every YAML document with ``apiVersion`` and ``kind`` under ``root`` (items of a List
    too), Helm charts left out."""
    found: list[Manifest] = []
    for path in sorted([*root.rglob("*.yaml"), *root.rglob("*.yml")]):
        if path.is_relative_to(HELM_CHARTS):
            continue
        found.extend(manifests_of(path, path.read_text()))
    return found


def manifests_of(path: Path, text: str) -> list[Manifest]:
    """The manifests among the YAML documents of `text` (read from `path`)."""
    return [
        Manifest(path, index, body)
        for index, document in enumerate(yaml.safe_load_all(text))
        for body in _objects(document)
    ]


def _objects(document: Any) -> Iterator[dict[str, Any]]:
    if not (isinstance(document, dict) and "apiVersion" in document and "kind" in document):
        return
    if document["kind"] == "List":
        for item in document.get("items") or []:
            yield from _objects(item)
    else:
        yield document


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
