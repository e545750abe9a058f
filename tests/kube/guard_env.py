"""What the guard's kube tests share: its ServiceAccount and Roles from configs/guard/,
a Deployment body, and a totals store holding a given spend."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client
from spancost.guard.budgets import Budget
from spancost.guard.kube import KubeCluster as GuardKube
from spancost.store import SQLiteStore
from spancost.totals import split
from spancost.totals.aggregate import SpanContribution, ns_from_utc

from tests.kube.harness import KubeCluster, create_unless_exists

GUARD_CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "guard"
SERVICE_ACCOUNT: dict[str, Any] = yaml.safe_load(
    (GUARD_CONFIGS / "serviceaccount.yaml").read_text()
)
GUARD_NAMESPACE: str = SERVICE_ACCOUNT["metadata"]["namespace"]
GUARD_ACCOUNT: str = SERVICE_ACCOUNT["metadata"]["name"]


def guard_account_token(cluster: KubeCluster, admin: client.ApiClient) -> str:
    """A token of the guard's own ServiceAccount, created from its manifest if missing."""
    core = client.CoreV1Api(admin)
    create_unless_exists(lambda: core.create_namespace({"metadata": {"name": GUARD_NAMESPACE}}))
    create_unless_exists(
        lambda: core.create_namespaced_service_account(GUARD_NAMESPACE, SERVICE_ACCOUNT)
    )
    return cluster.service_account_token(GUARD_NAMESPACE, GUARD_ACCOUNT)


def bind_guard_role(admin: client.ApiClient, namespace: str) -> None:
    """The Role and RoleBinding of configs/guard/rbac.yaml, in `namespace`."""
    _apply_roles(admin, "rbac.yaml", namespace)


def bind_guard_namespace_role(admin: client.ApiClient) -> None:
    """configs/guard/rbac-guard-namespace.yaml, as shipped (the guard's own namespace)."""
    _apply_roles(admin, "rbac-guard-namespace.yaml", None)


def _apply_roles(admin: client.ApiClient, file: str, namespace: str | None) -> None:
    """The Roles and RoleBindings of configs/guard/`file`, in `namespace` (None: the
    file's own; objects that exist already are left as they are)."""
    rbac = client.RbacAuthorizationV1Api(admin)
    for document in yaml.safe_load_all((GUARD_CONFIGS / file).read_text()):
        if namespace is not None:
            document["metadata"]["namespace"] = namespace
        create = (
            rbac.create_namespaced_role
            if document["kind"] == "Role"
            else rbac.create_namespaced_role_binding
        )
        create_unless_exists(partial(create, document["metadata"]["namespace"], document))


def deployment_body(
    name: str,
    replicas: int,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    *,
    bare: bool = False,
) -> dict[str, Any]:
    """A Deployment labelled ``domain: checkout`` (plus `labels`); `bare`: with neither
    labels nor annotations (the maps absent, not empty)."""
    metadata: dict[str, Any] = {"name": name}
    if not bare:
        metadata["labels"] = {"domain": "checkout", **(labels or {})}
        metadata["annotations"] = annotations or {}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": metadata,
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "registry.invalid/app:1"}]},
            },
        },
    }


def store_with(path: Path, now: datetime, **spend: float) -> SQLiteStore:
    """A SQLite totals store where each domain spent `spend[domain]` USD in production."""
    store = SQLiteStore(path)
    store.migrate()
    spans = [
        SpanContribution(
            trace_id=uuid.uuid4().hex,
            span_id=f"{index + 1:016x}",
            start_ns=ns_from_utc(now) - 10**9,
            end_ns=ns_from_utc(now),
            cost_usd=cost,
            is_root=True,
            name=domain,
            service="web",
            environment="production",
        )
        for index, (domain, cost) in enumerate(spend.items())
    ]
    accepted, quarantined = split(spans, now, timedelta(hours=2))
    store.write(accepted, quarantined, now)
    return store


@dataclass
class Env:
    """A namespace with the guard's Role bound in it, and one without."""

    namespace: str
    other: str
    admin: client.ApiClient
    guard_client: client.ApiClient
    now: datetime

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.admin)

    def deployment(
        self,
        name: str,
        replicas: int,
        labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None,
        namespace: str | None = None,
    ) -> None:
        body = deployment_body(name, replicas, labels, annotations)
        self.apps.create_namespaced_deployment(namespace or self.namespace, body)

    def get(self, name: str, namespace: str | None = None) -> Any:
        return self.apps.read_namespaced_deployment(name, namespace or self.namespace)

    def replicas(self, name: str, namespace: str | None = None) -> int:
        return int(self.get(name, namespace).spec.replicas)

    def annotations(self, name: str) -> dict[str, str]:
        return dict(self.get(name).metadata.annotations or {})

    def set_replicas(self, name: str, replicas: int) -> None:
        """A person's ``kubectl scale`` (the scale subresource, as the admin)."""
        self.apps.patch_namespaced_deployment_scale(
            name, self.namespace, {"spec": {"replicas": replicas}}
        )

    def patch_metadata(self, name: str, **metadata: dict[str, str | None]) -> None:
        """A person's ``kubectl label`` / ``kubectl annotate`` (as the admin)."""
        self.apps.patch_namespaced_deployment(name, self.namespace, {"metadata": metadata})

    def events(self, name: str) -> list[str]:
        answer = client.CoreV1Api(self.admin).list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return sorted(event.reason for event in answer.items)

    def event_message(self, name: str, reason: str) -> str:
        """The message of the one Event `reason` on Deployment `name`."""
        answer = client.CoreV1Api(self.admin).list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name},reason={reason}"
        )
        [event] = answer.items
        return str(event.message)

    def budget(self, **changes: Any) -> Budget:
        values: dict[str, Any] = {
            "domain": "checkout",
            "limit": 100.0,
            "currency": "USD",
            "namespaces": (self.namespace,),
            "selector": "domain=checkout",
            **changes,
        }
        return Budget(**values)

    def cluster(self) -> GuardKube:
        return GuardKube(self.guard_client, timeout=5.0)
