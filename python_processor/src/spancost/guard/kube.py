"""The guard's Kubernetes adapter: Deployments, their scale subresource, and Events.

Every write carries the ``resourceVersion`` it was decided on, so a Deployment
that changed since it was read is never overwritten: the API server answers
409 and `ConflictError` tells the caller to re-read and decide again.

Writes, in the order `spancost.guard.policy` relies on:

- scale down: merge-patch the Deployment's annotations (the claim), then patch
  the scale subresource with the resourceVersion that answer carries;
- restore: patch the scale subresource, then merge-patch the annotations away;
- release: merge-patch the annotations away.

The scale subresource does not carry annotations (the API server keeps only
``spec.replicas`` of a Scale), hence the separate patch of the Deployment.

Events go on the Deployments the guard changes, and (`record_pod_event`) on the
guard's own Pod for what concerns the guard itself (a bad budgets file).
"""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import urllib3.exceptions
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from spancost.guard.policy import (
    SCALED_GENERATION_ANNOTATION,
    Action,
    ActionKind,
    DeploymentState,
    format_time,
)
from spancost.kubeapi import KubeError, load_api_client

__all__ = [
    "ConflictError",
    "KubeCluster",
    "KubeError",
    "KubeUnavailableError",
    "PodRef",
    "load_api_client",
]

logger = logging.getLogger(__name__)

MERGE_PATCH: Final = "application/merge-patch+json"
EVENT_COMPONENT: Final = "spancost-guard"
DEFAULT_TIMEOUT: Final = 10.0
_EVENT_REASONS: Final = {
    ActionKind.SCALE_DOWN: ("BudgetScaledDown", "Warning"),
    ActionKind.RESTORE: ("BudgetRestored", "Normal"),
    ActionKind.RELEASE: ("BudgetReleased", "Normal"),
}


@dataclass(frozen=True, slots=True)
class PodRef:
    """The guard's own Pod (from the downward API: POD_NAME, POD_NAMESPACE, POD_UID)."""

    namespace: str
    name: str
    uid: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> PodRef | None:
        """The Pod the environment names, or None outside a Pod (or without the variables)."""
        name, namespace = environ.get("POD_NAME", ""), environ.get("POD_NAMESPACE", "")
        if not name or not namespace:
            return None
        return cls(namespace, name, environ.get("POD_UID", ""))


class KubeUnavailableError(KubeError):
    """The Kubernetes API cannot be reached (connection, TLS, timeout) or answers 5xx."""


class ConflictError(KubeError):
    """409: the object changed since it was read; re-read and decide again."""


class KubeCluster:
    """The cluster, as the guard sees it."""

    def __init__(self, api_client: client.ApiClient, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self._apps = client.AppsV1Api(api_client)
        self._core = client.CoreV1Api(api_client)
        self._host = api_client.configuration.host
        self._timeout = timeout
        self._instance = socket.gethostname()

    # -- reads -------------------------------------------------------------------------

    def list_deployments(self, namespace: str, selector: str | None) -> list[DeploymentState]:
        """The Deployments of `namespace` the label `selector` matches (None: all of them)."""
        kwargs: dict[str, Any] = {"_request_timeout": self._timeout}
        if selector is not None:
            kwargs["label_selector"] = selector
        answer = self._call(
            f"list deployments in {namespace}",
            self._apps.list_namespaced_deployment,
            namespace,
            **kwargs,
        )
        return [_state(item, selected=selector is not None) for item in answer.items]

    def read_deployment(
        self, namespace: str, name: str, *, selected: bool
    ) -> DeploymentState | None:
        """The Deployment now, or None if it is gone."""
        try:
            item = self._call(
                f"get deployment {namespace}/{name}",
                self._apps.read_namespaced_deployment,
                name,
                namespace,
                _request_timeout=self._timeout,
            )
        except KubeError as exc:
            if exc.status == 404:
                return None
            raise
        return _state(item, selected=selected)

    # -- writes ------------------------------------------------------------------------

    def apply(self, action: Action, resource_version: str) -> None:
        """Carry out `action` on a Deployment last read at `resource_version`.

        Raises `ConflictError` when it changed since (some of the action may be done:
        the policy recognizes that state when it decides again).
        """
        if action.kind is ActionKind.SCALE_DOWN:
            assert action.target is not None
            version = self._annotate(action, resource_version)
            self._scale(action, action.target, version)
        elif action.kind is ActionKind.RESTORE:
            version = resource_version
            if action.target is not None:
                version = self._scale(action, action.target, version)
            self._annotate(action, version)
        elif action.kind is ActionKind.RELEASE:
            self._annotate(action, resource_version)

    def record_event(self, action: Action, deployment: DeploymentState, now: datetime) -> None:
        """A Kubernetes Event on the Deployment about `action` (best effort: logged if refused)."""
        reason, kind = _EVENT_REASONS[action.kind]
        involved = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": action.name,
            "namespace": action.namespace,
            "uid": deployment.uid,
        }
        message = f"spancost budget guard (domain {action.domain}): {action.reason}"
        self._event(involved, reason, kind, message, now)

    def record_pod_event(self, pod: PodRef, reason: str, message: str, now: datetime) -> None:
        """A Warning Event on the guard's own Pod (best effort: logged if refused)."""
        involved = {"apiVersion": "v1", "kind": "Pod", "name": pod.name, "namespace": pod.namespace}
        if pod.uid:
            involved["uid"] = pod.uid
        self._event(involved, reason, "Warning", f"spancost budget guard: {message}", now)

    def _event(
        self, involved: Mapping[str, str], reason: str, kind: str, message: str, now: datetime
    ) -> None:
        name, namespace = involved["name"], involved["namespace"]
        stamp = format_time(now)
        body = {
            "metadata": {"generateName": f"{name}.", "namespace": namespace},
            "involvedObject": dict(involved),
            "reason": reason,
            "message": message[:1024],
            "type": kind,
            "source": {"component": EVENT_COMPONENT},
            "reportingComponent": "spancost.io/guard",
            "reportingInstance": self._instance[:128],
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
        }
        where = f"{involved['kind']} {namespace}/{name}"
        try:
            self._call(
                f"create event for {where}",
                self._core.create_namespaced_event,
                namespace,
                body,
                _request_timeout=self._timeout,
            )
        except KubeUnavailableError:
            raise
        except KubeError as exc:
            logger.warning("event for %s not recorded: %s", where, exc)

    def _annotate(self, action: Action, resource_version: str) -> str:
        body = {
            "metadata": {
                "resourceVersion": resource_version,
                "annotations": dict(action.annotations),
            }
        }
        answer = self._call(
            f"patch deployment {action.ref} (annotations)",
            self._apps.patch_namespaced_deployment,
            action.name,
            action.namespace,
            body,
            _content_type=MERGE_PATCH,
            _request_timeout=self._timeout,
        )
        recorded = action.annotations.get(SCALED_GENERATION_ANNOTATION)
        if recorded is not None and str(answer.metadata.generation) != recorded:
            # Harmless (an interrupted scale-down would be released, not completed),
            # but it means the API server counts generations differently than the
            # policy assumes.
            logger.warning(
                "deployment %s: generation %s after the claim, not the %s it records",
                action.ref,
                answer.metadata.generation,
                recorded,
            )
        return str(answer.metadata.resource_version)

    def _scale(self, action: Action, replicas: int, resource_version: str) -> str:
        body = {"metadata": {"resourceVersion": resource_version}, "spec": {"replicas": replicas}}
        answer = self._call(
            f"patch deployments/scale {action.ref} to {replicas}",
            self._apps.patch_namespaced_deployment_scale,
            action.name,
            action.namespace,
            body,
            _content_type=MERGE_PATCH,
            _request_timeout=self._timeout,
        )
        return str(answer.metadata.resource_version)

    def _call(self, what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        """`method(*args, **kwargs)`, its failures as `KubeError`s naming `what`."""
        try:
            return method(*args, **kwargs)
        except ApiException as exc:
            status = int(exc.status) if exc.status else None
            message = f"Kubernetes API at {self._host}: {what}: {status} {_reason(exc)}"
            if status == 409:
                raise ConflictError(message, status) from exc
            if status is None or status >= 500:
                raise KubeUnavailableError(message, status) from exc
            raise KubeError(message, status) from exc
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise KubeUnavailableError(
                f"Kubernetes API at {self._host} is unavailable: {what}: {exc}"
            ) from exc


def _reason(exc: ApiException) -> str:
    """The Status message of an error answer, else its HTTP reason."""
    try:
        status = json.loads(exc.body) if exc.body else {}
    except ValueError:
        status = {}
    message = status.get("message") if isinstance(status, Mapping) else None
    return str(message or exc.reason or "")


def _state(item: Any, *, selected: bool) -> DeploymentState:
    metadata = item.metadata
    replicas = item.spec.replicas
    return DeploymentState(
        namespace=metadata.namespace,
        name=metadata.name,
        replicas=1 if replicas is None else int(replicas),  # the API's default
        labels=dict(metadata.labels or {}),
        annotations=dict(metadata.annotations or {}),
        resource_version=str(metadata.resource_version),
        uid=str(metadata.uid or ""),
        generation=int(metadata.generation or 0),
        selected=selected,
    )
