"""`spancost guard` against a real Kubernetes API server (tests/kube/harness.py).

The guard runs with its own ServiceAccount token, bound by the Role and
RoleBinding of configs/guard/rbac.yaml (namespace rewritten to each test's), so
every test also proves that the RBAC it ships is enough, and the RBAC tests
prove it is not more. The API server has no controller-manager: Deployments
get no pods, but spec.replicas and deployments/scale behave as in a cluster.
Spend comes from a real SQLite totals store; webhooks go to a real HTTP server
on 127.0.0.1. The loop mode (a budgets file that changes) is in test_guard_loop.py.
"""

from __future__ import annotations

import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from fractions import Fraction
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from spancost.cli import cli
from spancost.guard.alerts import AlertSender
from spancost.guard.budgets import Budget, GuardConfig, WebhookConfig
from spancost.guard.kube import KubeCluster
from spancost.guard.policy import (
    DOMAIN_ANNOTATION,
    EXCLUDE_ANNOTATION,
    ORIGINAL_ANNOTATION,
    RELEASED_AT_ANNOTATION,
    SCALED_ANNOTATION,
    SCALED_AT_ANNOTATION,
    SCALED_GENERATION_ANNOTATION,
    Action,
    format_time,
)
from spancost.guard.run import RunReport, run_once
from spancost.store import SQLiteStore, TotalsStore

from tests.kube.guard_env import Env, bind_guard_role, deployment_body, store_with

# -- fixtures ------------------------------------------------------------------------


@dataclass
class Hook:
    url: str = ""
    statuses: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def hook() -> Iterator[Hook]:
    """A webhook receiver on 127.0.0.1: answers the queued statuses, then 202."""
    state = Hook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.bodies.append(json.loads(body))
            self.send_response(state.statuses.pop(0) if state.statuses else 202)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state
    server.shutdown()
    server.server_close()


def guard(
    env: Env,
    tmp_path: Path,
    spend: float,
    *,
    at: timedelta = timedelta(0),
    budget: Budget | None = None,
    webhooks: tuple[WebhookConfig, ...] = (),
    dry_run: bool = False,
    cluster: KubeCluster | None = None,
) -> RunReport:
    """One guard run with the guard's own token, `spend` USD of checkout, at now + `at`."""
    now = env.now + at
    path = tmp_path / f"totals-{uuid.uuid4().hex[:6]}.db"
    store_with(path, now, checkout=spend).close()
    config = GuardConfig((budget or env.budget(),), webhooks=webhooks)
    return run_once(
        config,
        lambda: SQLiteStore(path),
        lambda: cluster or env.cluster(),
        AlertSender(webhooks),
        now,
        dry_run=dry_run,
    )


# -- policy against the API server ---------------------------------------------------


def test_breach_scales_matching_deployments_only(env: Env, tmp_path: Path) -> None:
    env.deployment("web", 10)
    env.deployment("api", 3)
    env.deployment("tiny", 1)
    env.deployment("db", 5, labels={"criticality": "high"})
    env.deployment("batch", 6, annotations={EXCLUDE_ANNOTATION: "true"})
    env.deployment("search", 8, labels={"domain": "search"})
    env.deployment("web", 10, namespace=env.other)

    report = guard(env, tmp_path, 120.0)

    assert report.ok, report.to_json()
    assert env.replicas("web") == 7  # floor(10 x 0.7)
    assert env.replicas("api") == 2  # floor(2.1)
    assert env.replicas("tiny") == 1  # never below the minimum
    assert env.replicas("db") == 5  # criticality=high
    assert env.replicas("batch") == 6  # excluded
    assert env.replicas("search") == 8  # another domain
    assert env.replicas("web", env.other) == 10  # another namespace
    annotations = env.annotations("web")
    assert annotations[ORIGINAL_ANNOTATION] == "10"
    assert annotations[SCALED_ANNOTATION] == "7"
    assert annotations[DOMAIN_ANNOTATION] == "checkout"
    assert SCALED_AT_ANNOTATION in annotations
    assert ORIGINAL_ANNOTATION not in env.annotations("db")
    assert env.events("web") == ["BudgetScaledDown"]
    assert env.events("db") == []


def test_minimum_replicas_is_a_floor(env: Env, tmp_path: Path) -> None:
    env.deployment("web", 10)
    env.deployment("api", 3)
    guard(env, tmp_path, 150.0, budget=env.budget(min_replicas=4, scale_factor=Fraction(3, 10)))
    assert (env.replicas("web"), env.replicas("api")) == (4, 3)


def test_warning_only_at_80_percent(env: Env, tmp_path: Path, hook: Hook) -> None:
    env.deployment("web", 10)
    before = env.get("web").metadata.resource_version
    report = guard(env, tmp_path, 80.0, webhooks=(WebhookConfig(hook.url, backoff=0.01),))
    assert report.ok
    assert env.replicas("web") == 10
    assert env.get("web").metadata.resource_version == before
    assert [(b["severity"], b["priority"]) for b in hook.bodies] == [("warning", "P2")]


def test_cooldown_across_runs_and_restore(env: Env, tmp_path: Path) -> None:
    env.deployment("web", 10)
    guard(env, tmp_path, 120.0)
    assert env.replicas("web") == 7
    guard(env, tmp_path, 130.0, at=timedelta(minutes=5))  # held: never compounds
    assert env.replicas("web") == 7
    guard(env, tmp_path, 50.0, at=timedelta(minutes=10))  # recovered: restored
    assert env.replicas("web") == 10
    assert ORIGINAL_ANNOTATION not in env.annotations("web")
    assert env.events("web") == ["BudgetRestored", "BudgetScaledDown"]
    report = guard(env, tmp_path, 120.0, at=timedelta(minutes=20))  # within the cooldown
    assert env.replicas("web") == 10
    assert "cooldown" in report.domains[0].results[0].action.reason
    guard(env, tmp_path, 120.0, at=timedelta(minutes=31))  # after it
    assert env.replicas("web") == 7


def test_restore_after_recovery(env: Env, tmp_path: Path, hook: Hook) -> None:
    env.deployment("web", 10)
    env.deployment("api", 4)
    guard(env, tmp_path, 100.0)
    assert (env.replicas("web"), env.replicas("api")) == (7, 2)
    webhooks = (WebhookConfig(hook.url, "pagerduty", routing_key="key", backoff=0.01),)
    guard(env, tmp_path, 95.0, at=timedelta(minutes=5), webhooks=webhooks)  # not below 90 %
    assert (env.replicas("web"), env.replicas("api")) == (7, 2)
    guard(env, tmp_path, 89.0, at=timedelta(minutes=10), webhooks=webhooks)
    assert (env.replicas("web"), env.replicas("api")) == (10, 4)
    for name in ("web", "api"):
        left = set(env.annotations(name))
        assert left == {SCALED_AT_ANNOTATION}, left
    # 95 % and 89 % are warnings; at 89 % the restore is reported too (a trigger, not a
    # resolve, because spend is still above the warn ratio).
    assert [(b["event_action"], b["payload"]["severity"]) for b in hook.bodies] == [
        ("trigger", "warning"),
        ("trigger", "warning"),
        ("trigger", "info"),
    ]
    assert hook.bodies[-1]["payload"]["summary"].startswith("Budget recovered")


def test_someone_elses_change_while_scaled_down_stands(env: Env, tmp_path: Path) -> None:
    env.deployment("web", 10)
    guard(env, tmp_path, 120.0)
    env.set_replicas("web", 12)
    guard(env, tmp_path, 120.0, at=timedelta(minutes=5))
    assert env.replicas("web") == 12
    assert ORIGINAL_ANNOTATION not in env.annotations("web")
    assert env.events("web") == ["BudgetReleased", "BudgetScaledDown"]
    message = env.event_message("web", "BudgetReleased")
    assert "replicas changed to 12 by someone else" in message
    guard(env, tmp_path, 10.0, at=timedelta(minutes=10))  # never "restored" to 10
    assert env.replicas("web") == 12


def test_the_api_server_counts_generations_as_the_policy_assumes(env: Env) -> None:
    """A Deployment's generation moves by one at each write that changes its spec or its
    annotations, and not otherwise: the claim's own write (annotations) moves it to the
    generation the claim records, the guard's scale write and a person's move it on."""
    env.deployment("web", 10)
    apps = client.AppsV1Api(env.guard_client)
    created = env.get("web").metadata
    start = created.generation

    claim = {"metadata": {"resourceVersion": created.resource_version,
                          "annotations": {ORIGINAL_ANNOTATION: "10"}}}  # fmt: skip
    answer = apps.patch_namespaced_deployment("web", env.namespace, claim)
    assert answer.metadata.generation == env.get("web").metadata.generation == start + 1
    env.patch_metadata("web", labels={"team": "payments"})  # labels: not counted
    assert env.get("web").metadata.generation == start + 1
    same = {"metadata": {"annotations": {ORIGINAL_ANNOTATION: "10"}}}
    apps.patch_namespaced_deployment("web", env.namespace, same)
    assert env.get("web").metadata.generation == start + 1  # the same annotations: no change
    apps.patch_namespaced_deployment_scale("web", env.namespace, {"spec": {"replicas": 7}})
    assert env.get("web").metadata.generation == start + 2  # the scale subresource: counted
    env.set_replicas("web", 7)
    assert env.get("web").metadata.generation == start + 2  # the same count: no change
    env.set_replicas("web", 10)
    assert env.get("web").metadata.generation == start + 3  # a person's restore: counted
    env.patch_metadata("web", annotations={ORIGINAL_ANNOTATION: None})
    assert env.get("web").metadata.generation == start + 4


def test_a_manual_restore_to_the_original_count_stands(env: Env, tmp_path: Path) -> None:
    env.deployment("web", 10)
    guard(env, tmp_path, 120.0)
    assert env.replicas("web") == 7
    claimed = env.annotations("web")
    assert int(claimed[SCALED_GENERATION_ANNOTATION]) == env.get("web").metadata.generation - 1
    env.set_replicas("web", 10)  # kubectl scale --replicas=10, during the breach
    report = guard(env, tmp_path, 120.0, at=timedelta(minutes=5))
    assert report.ok, report.to_json()
    assert env.replicas("web") == 10
    annotations = env.annotations("web")
    assert not {ORIGINAL_ANNOTATION, SCALED_ANNOTATION, DOMAIN_ANNOTATION,
                SCALED_GENERATION_ANNOTATION} & set(annotations)  # fmt: skip
    assert annotations[RELEASED_AT_ANNOTATION] == format_time(env.now + timedelta(minutes=5))
    message = env.event_message("web", "BudgetReleased")
    assert "set back to the original 10 by someone else" in message
    # The breach goes on: the person's count stands, a full cooldown after the release.
    for minutes in (6, 20, 34):
        guard(env, tmp_path, 130.0, at=timedelta(minutes=minutes))
        assert env.replicas("web") == 10
    assert env.events("web") == ["BudgetReleased", "BudgetScaledDown"]


@pytest.mark.parametrize("how", ["label", "annotation"])
def test_opting_out_while_held_gives_back_what_the_guard_took(
    env: Env, tmp_path: Path, how: str
) -> None:
    env.deployment("web", 10)
    env.deployment("api", 4)
    guard(env, tmp_path, 120.0)
    assert (env.replicas("web"), env.replicas("api")) == (7, 2)
    opt_out = (
        {"labels": {"criticality": "high"}}
        if how == "label"
        else {"annotations": {EXCLUDE_ANNOTATION: "true"}}
    )
    env.patch_metadata("web", **opt_out)
    env.patch_metadata("api", **opt_out)
    env.set_replicas("api", 3)  # and someone set api's count: that value stands
    report = guard(env, tmp_path, 130.0, at=timedelta(minutes=5))  # the breach goes on
    assert report.ok, report.to_json()
    assert (env.replicas("web"), env.replicas("api")) == (10, 3)
    for name in ("web", "api"):
        assert ORIGINAL_ANNOTATION not in env.annotations(name)
    message = env.event_message("web", "BudgetRestored")
    what = "labelled criticality=high" if how == "label" else f"annotated {EXCLUDE_ANNOTATION}=true"
    assert f"{what} while held: 7 -> 10 (the original), claim dropped" in message
    assert env.events("api") == ["BudgetReleased", "BudgetScaledDown"]
    # Opted out: never taken again.
    guard(env, tmp_path, 130.0, at=timedelta(hours=2))
    assert (env.replicas("web"), env.replicas("api")) == (10, 3)


def test_a_removed_budget_gives_back_what_it_held(
    env: Env, tmp_path: Path, kube_cluster: Any, guard_token: str
) -> None:
    """With ``spancost guard --once``: the budgets file names where to look."""
    third = f"third-{uuid.uuid4().hex[:8]}"
    client.CoreV1Api(env.admin).create_namespace({"metadata": {"name": third}})
    bind_guard_role(env.admin, third)
    env.deployment("web", 10)
    env.deployment("api", 4)
    budgets = tmp_path / "budgets.yaml"
    store_with(tmp_path / "t.db", datetime.now(UTC), checkout=120.0).close()
    kubeconfig = kube_cluster.kubeconfig(guard_token, tmp_path / "kubeconfig")

    def once(document: dict[str, Any]) -> None:
        budgets.write_text(yaml.safe_dump(document))
        result = CliRunner().invoke(
            cli,
            ["guard", "--once", "--budgets", str(budgets), "--kubeconfig", str(kubeconfig),
             "--database-url", f"sqlite:///{tmp_path / 't.db'}"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output

    once({"budgets": {"checkout": {"limit": 100, "namespaces": [env.namespace]}}})
    assert (env.replicas("web"), env.replicas("api")) == (7, 2)
    env.set_replicas("api", 3)
    # The checkout budget is gone, and nothing names its namespace: not found.
    search = {"search": {"limit": 100, "namespaces": [third]}}
    once({"budgets": search})
    assert (env.replicas("web"), env.replicas("api")) == (7, 3)
    # managed_namespaces names it: what the guard held there is given back.
    once({"budgets": search, "managed_namespaces": [env.namespace]})
    assert (env.replicas("web"), env.replicas("api")) == (10, 3)
    for name in ("web", "api"):
        assert ORIGINAL_ANNOTATION not in env.annotations(name)
    message = env.event_message("web", "BudgetRestored")
    assert f"no budget of domain 'checkout' covers namespace {env.namespace} any more" in message
    assert env.events("api") == ["BudgetReleased", "BudgetScaledDown"]


def test_concurrent_change_between_read_and_write_is_reread(env: Env, tmp_path: Path) -> None:
    env.deployment("web", 10)
    apps = env.apps
    conflicts: list[int] = []

    class Racing(KubeCluster):
        def apply(self, action: Action, resource_version: str) -> None:
            if not conflicts:  # someone scales the Deployment after the guard read it
                apps.patch_namespaced_deployment_scale(
                    action.name, action.namespace, {"spec": {"replicas": 20}}
                )
                conflicts.append(1)
            super().apply(action, resource_version)

    report = guard(env, tmp_path, 120.0, cluster=Racing(env.guard_client))
    assert report.ok, report.to_json()
    assert conflicts == [1]
    assert env.replicas("web") == 14  # floor(20 x 0.7): decided again on what is there now
    assert env.annotations("web")[ORIGINAL_ANNOTATION] == "20"


def test_interrupted_scale_down_converges(env: Env, tmp_path: Path) -> None:
    env.deployment("web", 10)

    class Dying(KubeCluster):
        def _scale(self, action: Action, replicas: int, resource_version: str) -> str:
            raise SystemExit("killed between the annotation and the scale")

    with pytest.raises(SystemExit):
        guard(env, tmp_path, 120.0, cluster=Dying(env.guard_client))
    state = env.get("web")
    assert state.spec.replicas == 10
    assert state.metadata.annotations[ORIGINAL_ANNOTATION] == "10"
    # The claim records the generation its own write gave the Deployment.
    assert int(state.metadata.annotations[SCALED_GENERATION_ANNOTATION]) == (
        state.metadata.generation
    )
    report = guard(env, tmp_path, 120.0, at=timedelta(minutes=1))  # within the cooldown
    assert report.ok, report.to_json()
    assert env.replicas("web") == 7  # completed
    assert env.annotations("web")[ORIGINAL_ANNOTATION] == "10"
    assert env.events("web") == ["BudgetScaledDown"]
    assert "completing an interrupted scale-down" in env.event_message("web", "BudgetScaledDown")
    # Or recovered meanwhile: an interrupted claim is only removed.
    env.deployment("batch", 6)
    with pytest.raises(SystemExit):
        guard(env, tmp_path, 120.0, at=timedelta(minutes=2), cluster=Dying(env.guard_client))
    guard(env, tmp_path, 10.0, at=timedelta(minutes=3))
    assert env.replicas("batch") == 6
    assert ORIGINAL_ANNOTATION not in env.annotations("batch")


def test_dry_run_changes_nothing(env: Env, tmp_path: Path) -> None:
    env.deployment("web", 10)
    env.deployment("api", 3)
    before = {n: env.get(n).metadata.resource_version for n in ("web", "api")}
    report = guard(env, tmp_path, 150.0, dry_run=True)
    assert {n: env.get(n).metadata.resource_version for n in ("web", "api")} == before
    assert env.events("web") == []
    planned = {r.action.ref: (str(r.action.kind), r.action.target, r.applied)
               for r in report.domains[0].results}  # fmt: skip
    assert planned == {
        f"{env.namespace}/api": ("scale_down", 2, False),
        f"{env.namespace}/web": ("scale_down", 7, False),
    }
    assert report.alerts[0].summary.startswith("[dry-run] Budget breached")


def test_store_unavailable_means_no_scaling_and_an_alert(
    env: Env, tmp_path: Path, hook: Hook
) -> None:
    env.deployment("web", 10)
    webhooks = (WebhookConfig(hook.url, backoff=0.01),)

    def unreachable() -> TotalsStore:
        from spancost.store.open import open_store  # noqa: PLC0415

        return open_store(f"postgresql://guard@127.0.0.1:{free_port()}/totals?connect_timeout=2")

    report = run_once(
        GuardConfig((env.budget(),), webhooks=webhooks), unreachable, env.cluster,
        AlertSender(webhooks), env.now,
    )  # fmt: skip
    assert not report.ok
    assert env.replicas("web") == 10
    assert [b["severity"] for b in hook.bodies] == ["error"]
    assert "totals store" in hook.bodies[0]["summary"]


def test_api_unavailable_is_a_clear_error(env: Env, tmp_path: Path) -> None:
    dead = client.Configuration()
    dead.host = f"https://127.0.0.1:{free_port()}"
    dead.verify_ssl = False
    report = guard(env, tmp_path, 120.0, cluster=KubeCluster(client.ApiClient(dead), timeout=2))
    assert not report.ok
    assert "Kubernetes API" in report.errors[0]
    assert "unavailable" in report.errors[0]


def test_cli_once_exits_non_zero_when_the_api_is_unavailable(
    env: Env, tmp_path: Path, kube_cluster: Any, guard_token: str
) -> None:
    budgets = tmp_path / "budgets.yaml"
    budgets.write_text(
        yaml.safe_dump({"budgets": {"checkout": {"limit": 100, "namespaces": [env.namespace]}}})
    )
    store_with(tmp_path / "t.db", datetime.now(UTC), checkout=120.0).close()
    env.deployment("web", 10)
    base = ["guard", "--once", "--budgets", str(budgets),
            "--database-url", f"sqlite:///{tmp_path / 't.db'}"]  # fmt: skip
    kubeconfig = tmp_path / "kubeconfig"
    kube_cluster.kubeconfig(guard_token, kubeconfig)
    ok = CliRunner().invoke(cli, [*base, "--kubeconfig", str(kubeconfig)])
    assert ok.exit_code == 0, ok.output
    assert env.replicas("web") == 7
    text = kubeconfig.read_text()
    dead = text.replace(kube_cluster.url, f"https://127.0.0.1:{free_port()}")
    kubeconfig.write_text(dead)
    failed = CliRunner().invoke(cli, [*base, "--kubeconfig", str(kubeconfig)])
    assert failed.exit_code == 1
    assert "Kubernetes API" in failed.output
    assert "unavailable" in failed.output


# -- webhooks beside real scaling ----------------------------------------------------


def test_dead_webhook_does_not_block_scaling(env: Env, tmp_path: Path) -> None:
    env.deployment("web", 10)
    dead = WebhookConfig(f"http://127.0.0.1:{free_port()}/hook", retries=2, backoff=0.01)
    report = guard(env, tmp_path, 120.0, webhooks=(dead,))
    assert env.replicas("web") == 7
    assert report.ok  # the cluster work stands; the webhook failure is logged


def test_pagerduty_breach_event_after_scaling(env: Env, tmp_path: Path, hook: Hook) -> None:
    env.deployment("web", 10)
    hook.statuses = [500, 503]  # retried
    webhooks = (WebhookConfig(hook.url, "pagerduty", routing_key="R", retries=3, backoff=0.01),)
    guard(env, tmp_path, 120.0, webhooks=webhooks)
    assert env.replicas("web") == 7
    assert len(hook.bodies) == 3
    body = hook.bodies[-1]
    assert (body["routing_key"], body["event_action"]) == ("R", "trigger")
    assert body["dedup_key"] == "spancost-guard/checkout"
    assert body["payload"]["severity"] == "critical"
    assert body["payload"]["custom_details"]["priority"] == "P1"
    assert body["payload"]["custom_details"]["actions"][0]["target"] == 7


# -- RBAC: the guard's own token -----------------------------------------------------


def forbidden(call: Any) -> None:
    with pytest.raises(ApiException) as caught:
        call()
    assert caught.value.status == 403, caught.value


def test_rbac_allows_no_more_than_the_guard_needs(env: Env) -> None:
    env.deployment("web", 10)
    env.deployment("web", 10, namespace=env.other)
    apps = client.AppsV1Api(env.guard_client)
    core = client.CoreV1Api(env.guard_client)
    # What it needs works ...
    assert [d.metadata.name for d in apps.list_namespaced_deployment(env.namespace).items] == [
        "web"
    ]
    apps.patch_namespaced_deployment_scale("web", env.namespace, {"spec": {"replicas": 9}})
    # ... and nothing else.
    forbidden(lambda: apps.delete_namespaced_deployment("web", env.namespace))
    forbidden(lambda: apps.list_namespaced_deployment(env.other))
    forbidden(lambda: apps.read_namespaced_deployment("web", env.other))
    forbidden(
        lambda: apps.patch_namespaced_deployment_scale("web", env.other, {"spec": {"replicas": 1}})
    )
    forbidden(lambda: core.list_namespaced_secret(env.namespace))
    forbidden(lambda: core.read_namespaced_secret("anything", env.namespace))
    forbidden(lambda: core.list_namespaced_pod(env.namespace))
    forbidden(apps.list_deployment_for_all_namespaces)
    forbidden(lambda: apps.create_namespaced_deployment(env.namespace, deployment_body("x", 1)))
    assert env.replicas("web", env.other) == 10


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
