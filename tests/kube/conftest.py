from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from kubernetes import client

from tests.kube.guard_env import Env, bind_guard_role, guard_account_token
from tests.kube.harness import KubeCluster, started_or_fail


@pytest.fixture(scope="session")
def kube_cluster() -> Iterator[KubeCluster]:
    """One real etcd + kube-apiserver for the whole session (tests/kube/harness.py).

    Missing binaries or a server that does not start fail the tests (never skip them):
    CI counts a skipped test as a failure.
    """
    cluster = started_or_fail()
    yield cluster
    cluster.stop()


@pytest.fixture
def kube_namespace(kube_cluster: KubeCluster) -> str:
    """A new, empty namespace for one test (never deleted: no controller-manager finalizes it)."""
    name = f"test-{uuid.uuid4().hex[:10]}"
    kube_cluster.ensure_namespace(name)
    return name


@pytest.fixture(scope="session")
def admin(kube_cluster: KubeCluster) -> client.ApiClient:
    """An API client with the harness's admin (system:masters) credentials."""
    return kube_cluster.api_client()


@pytest.fixture(scope="session")
def guard_token(kube_cluster: KubeCluster, admin: client.ApiClient) -> str:
    """A token of the guard's own ServiceAccount (configs/guard/serviceaccount.yaml)."""
    return guard_account_token(kube_cluster, admin)


@pytest.fixture
def env(admin: client.ApiClient, kube_cluster: KubeCluster, guard_token: str) -> Env:
    """A namespace with the guard's Role bound in it (its own ServiceAccount's client), and
    one without."""
    suffix = uuid.uuid4().hex[:8]
    namespace, other = f"guard-{suffix}", f"other-{suffix}"
    core = client.CoreV1Api(admin)
    for name in (namespace, other):
        core.create_namespace({"metadata": {"name": name}})
    bind_guard_role(admin, namespace)
    now = datetime.now(UTC).replace(microsecond=0)
    return Env(namespace, other, admin, kube_cluster.api_client(guard_token), now)
