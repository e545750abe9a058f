"""The Kubernetes API client configuration every spancost component loads the same way.

The budget guard and the node-facts watcher of ``spancost.cost`` both talk to the
API with the official ``kubernetes`` client. In a pod that is the ServiceAccount's
mounted token (re-read as the kubelet rotates it); elsewhere a kubeconfig file.
"""

from __future__ import annotations

import os
from typing import Literal

from kubernetes import client, config
from kubernetes.config.config_exception import ConfigException

from spancost.errors import SpancostError

__all__ = ["AuthType", "KubeError", "load_api_client"]

AuthType = Literal["serviceAccount", "kubeConfig"]
"""As the collector's ``k8s_attributes`` names them: the pod's own ServiceAccount, or a
kubeconfig file (``$KUBECONFIG``, else ``~/.kube/config``)."""


class KubeError(SpancostError):
    """The Kubernetes API refused or failed a request, or its client cannot be configured."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def load_api_client(
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    auth_type: AuthType | None = None,
) -> client.ApiClient:
    """An API client.

    `auth_type` ``serviceAccount`` reads the pod's ServiceAccount; ``kubeConfig`` reads
    `kubeconfig` (or $KUBECONFIG, ~/.kube/config) and its `context`. None picks the
    ServiceAccount inside a pod unless `kubeconfig` is given, else the kubeconfig.
    """
    if auth_type is None:
        in_pod = kubeconfig is None and "KUBERNETES_SERVICE_HOST" in os.environ
        auth_type = "serviceAccount" if in_pod else "kubeConfig"
    configuration = client.Configuration()
    try:
        if auth_type == "serviceAccount":
            config.load_incluster_config(  # type: ignore[no-untyped-call,unused-ignore]
                client_configuration=configuration
            )
        else:
            config.load_kube_config(  # type: ignore[no-untyped-call,unused-ignore]
                config_file=kubeconfig, context=context, client_configuration=configuration
            )
    except (ConfigException, OSError) as exc:
        if auth_type == "serviceAccount":
            where = "the pod's ServiceAccount"
        else:
            where = kubeconfig or os.environ.get("KUBECONFIG") or "~/.kube/config"
        raise KubeError(
            f"cannot load the Kubernetes client configuration ({where}): {exc}"
        ) from exc
    return client.ApiClient(configuration)
