"""`spancost guard` as a loop (configs/guard/deployment.yaml) against a real API server.

The guard runs as a process, with its own ServiceAccount token, on a budgets file
mounted the way a ConfigMap volume is (``budgets.yaml`` -> ``..data/budgets.yaml``,
``..data`` a symlink swapped to a new directory at each update). It is told which Pod
it is through POD_NAME, POD_NAMESPACE and POD_UID, as the downward API does, and
posts its Events there with configs/guard/rbac-guard-namespace.yaml.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from prometheus_client.parser import text_string_to_metric_families
from spancost.guard.policy import ORIGINAL_ANNOTATION

from tests.kube.guard_env import (
    GUARD_NAMESPACE,
    bind_guard_namespace_role,
    bind_guard_role,
    deployment_body,
    store_with,
)
from tests.kube.harness import KubeCluster
from tests.waiting import wait_for

WAIT_S = 60.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Mount:
    """A directory laid out like a ConfigMap volume."""

    root: Path
    versions: int = 0

    @property
    def path(self) -> Path:
        return self.root / "budgets.yaml"

    def publish(self, document: object) -> None:
        """A new version: a new directory, then ``..data`` swapped to it (atomically)."""
        self.versions += 1
        version = self.root / f"..v{self.versions}"
        version.mkdir()
        text = document if isinstance(document, str) else yaml.safe_dump(document)
        (version / "budgets.yaml").write_text(text)
        (self.root / "..data_tmp").symlink_to(version.name)
        os.replace(self.root / "..data_tmp", self.root / "..data")
        if not self.path.is_symlink():
            self.path.symlink_to("..data/budgets.yaml")


@dataclass
class Loop:
    namespace: str
    third: str
    pod: Any
    admin: client.ApiClient
    mount: Mount
    process: subprocess.Popen[bytes]
    log: Path
    metrics_port: int

    @property
    def apps(self) -> client.AppsV1Api:
        return client.AppsV1Api(self.admin)

    def replicas(self, name: str) -> int:
        return int(self.apps.read_namespaced_deployment(name, self.namespace).spec.replicas)

    def annotations(self, name: str) -> dict[str, str]:
        deployment = self.apps.read_namespaced_deployment(name, self.namespace)
        return dict(deployment.metadata.annotations or {})

    def wait_replicas(self, name: str, replicas: int) -> None:
        wait_for(
            lambda: self.replicas(name) == replicas,
            WAIT_S,
            f"{self.namespace}/{name} at {replicas} replicas; guard log:\n{self.tail()}",
            interval=0.2,
        )

    def pod_events(self) -> list[tuple[str, str, str]]:
        """(type, reason, message) of the Events on the guard's Pod."""
        answer = client.CoreV1Api(self.admin).list_namespaced_event(
            GUARD_NAMESPACE, field_selector=f"involvedObject.name={self.pod.metadata.name}"
        )
        return [(event.type, event.reason, event.message) for event in answer.items]

    def events(self, name: str) -> list[str]:
        answer = client.CoreV1Api(self.admin).list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        return sorted(event.reason for event in answer.items)

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-6000:]

    def metrics(self) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        """The guard's /metrics, by (sample name, sorted labels)."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as response:
            text = response.read().decode()
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        }


def guard_pod(name: str) -> dict[str, Any]:
    """A Pod to stand for the guard's (the namespace may enforce Pod Security "restricted")."""
    return {
        "metadata": {"name": name, "labels": {"app.kubernetes.io/name": "spancost-guard"}},
        "spec": {
            "serviceAccountName": "spancost-guard",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 10001,
                                "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [{
                "name": "guard",
                "image": "registry.invalid/spancost:1",
                "securityContext": {"allowPrivilegeEscalation": False,
                                    "capabilities": {"drop": ["ALL"]}},
            }],
        },
    }  # fmt: skip


@pytest.fixture
def loop(
    kube_cluster: KubeCluster, admin: client.ApiClient, guard_token: str, tmp_path: Path
) -> Iterator[Loop]:
    """A namespace with a Deployment the checkout budget covers, and the guard looping on it."""
    suffix = uuid.uuid4().hex[:8]
    namespace, third = f"loop-{suffix}", f"loop-third-{suffix}"
    core = client.CoreV1Api(admin)
    for name in (namespace, third):
        core.create_namespace({"metadata": {"name": name}})
        bind_guard_role(admin, name)
    bind_guard_namespace_role(admin)
    pod = core.create_namespaced_pod(GUARD_NAMESPACE, guard_pod(f"spancost-guard-{suffix}"))
    client.AppsV1Api(admin).create_namespaced_deployment(namespace, deployment_body("web", 10))
    store_with(tmp_path / "totals.db", datetime.now(UTC), checkout=120.0).close()
    mount = Mount(tmp_path / "budgets")
    mount.root.mkdir()
    mount.publish({"budgets": {"checkout": {"limit": 100, "namespaces": [namespace]}}})
    kubeconfig = kube_cluster.kubeconfig(guard_token, tmp_path / "kubeconfig")
    environment = {
        **os.environ,
        "POD_NAME": pod.metadata.name,
        "POD_NAMESPACE": GUARD_NAMESPACE,
        "POD_UID": pod.metadata.uid,
    }
    log = tmp_path / "guard.log"
    metrics_port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(  # noqa: S603 - our own CLI
            [sys.executable, "-m", "spancost", "guard", "--interval", "500ms",
             "--budgets", str(mount.path), "--kubeconfig", str(kubeconfig),
             "--database-url", f"sqlite:///{tmp_path / 'totals.db'}",
             "--metrics-listen", f"127.0.0.1:{metrics_port}"],
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=environment,
        )  # fmt: skip
    state = Loop(namespace, third, pod, admin, mount, process, log, metrics_port)
    try:
        yield state
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


def test_the_loop_serves_what_it_read_and_decided_as_metrics(loop: Loop) -> None:
    loop.wait_replicas("web", 7)  # checkout breached: 120 USD of 100
    checkout = (("domain", "checkout"),)
    wait_for(
        lambda: loop.metrics().get(("spancost_guard_actions_total",
                                    (("domain", "checkout"), ("kind", "scale_down")))) == 1,
        WAIT_S,
        f"the scale-down counted; guard log:\n{loop.tail()}",
        interval=0.2,
    )  # fmt: skip
    metrics = loop.metrics()
    assert metrics[("spancost_budget_level", checkout)] == 2
    usd = (("currency", "USD"), *checkout)
    assert metrics[("spancost_budget_spend", usd)] == 120.0
    assert metrics[("spancost_budget_limit", usd)] == 100.0
    assert metrics[("spancost_budget_ratio", checkout)] == pytest.approx(1.2)
    assert metrics[("spancost_guard_spend_basis", (("basis", "estimated"),))] == 1
    assert metrics[("spancost_guard_store_up", ())] == 1
    assert metrics[("spancost_guard_last_run_ok", ())] == 1
    assert metrics[("spancost_guard_runs_total", (("outcome", "ok"),))] >= 1
    assert metrics[("spancost_guard_last_run_timestamp_seconds", ())] > 1.7e9


def test_a_bad_budgets_file_keeps_the_last_good_one_and_a_good_one_takes_effect(
    loop: Loop,
) -> None:
    loop.wait_replicas("web", 7)  # the first budgets: checkout breached

    # A bad version: reported on the guard's Pod; the loop goes on with the last good one.
    loop.mount.publish({"budgets": {"checkout": {"limit": -1, "namespaces": [loop.namespace]}}})
    wait_for(
        lambda: any(reason == "BudgetsFileInvalid" for _, reason, _ in loop.pod_events()),
        WAIT_S,
        f"the BudgetsFileInvalid Event; guard log:\n{loop.tail()}",
        interval=0.2,
    )
    [(kind, _, message)] = loop.pod_events()
    assert kind == "Warning"
    assert "config.budgets.checkout.limit: must be above 0, got -1.0" in message
    assert "keeping the budgets read at" in message
    loop.apps.create_namespaced_deployment(loop.namespace, deployment_body("api", 4))
    loop.wait_replicas("api", 2)  # still acting, on the last good budgets
    assert loop.process.poll() is None, loop.tail()

    # A good version: in force at the next run. The checkout budget is gone and nothing
    # names its namespace any more: the loop remembers it, and gives back what it held.
    loop.mount.publish({"budgets": {"search": {"limit": 100, "namespaces": [loop.third]}}})
    loop.wait_replicas("web", 10)
    loop.wait_replicas("api", 4)
    for name in ("web", "api"):
        assert ORIGINAL_ANNOTATION not in loop.annotations(name)
        assert loop.events(name) == ["BudgetRestored", "BudgetScaledDown"]
    assert len(loop.pod_events()) == 1  # reported once
    assert "changed and is invalid" in loop.tail()

    loop.process.send_signal(signal.SIGTERM)
    assert loop.process.wait(30) == 0, loop.tail()
