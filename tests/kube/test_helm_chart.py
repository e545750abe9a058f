"""The spancost Helm chart (configs/helm/spancost), rendered by real Helm and judged by
a real API server.

Helm is built from its Go module (``helm.sh/helm/v4``, pinned in scripts/lib.sh and
installed by scripts/test.sh); ``$HELM`` names another binary. For the default values
and each documented variant (``configs/helm/spancost/ci/*-values.yaml``): ``helm lint
--strict`` passes; ``helm template`` renders; every rendered document is accepted by a
server-side dry run with strict field validation (tests/kube/manifests.py), in a
namespace that enforces Pod Security ``restricted`` as configs/k8s/namespace.yaml does;
and what the chart puts together holds together: the collector configs are the shipped
files, every Secret and ConfigMap a pod mounts or reads is rendered or named in the
values, the agents find the gateways' Service under the name their certificate carries,
the guard's budgets are a file the guard accepts. Values that cannot work fail the
render with the key named.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import dynamic
from kubernetes.dynamic.exceptions import DynamicApiError
from spancost.guard.budgets import parse_budgets

from tests.kube.harness import KubeCluster
from tests.kube.manifests import (
    CONFIGS,
    DryRun,
    Manifest,
    install_crds,
    manifests_of,
    server_message,
)
from tests.pki import openssl

CHART = CONFIGS / "helm" / "spancost"
VARIANTS = sorted((CHART / "ci").glob("*-values.yaml"))
NAMESPACE = "spancost"
RELEASE = "spancost"


def helm_binary() -> str:
    """``$HELM``, else ``helm`` on PATH or in Go's bin directory (scripts/test.sh puts it
    there); missing, the test fails naming the install step."""
    named = os.environ.get("HELM")
    gopath_bin = Path(os.environ.get("GOPATH", Path.home() / "go")) / "bin" / "helm"
    found = named or shutil.which("helm") or (str(gopath_bin) if gopath_bin.exists() else None)
    if not found:
        raise AssertionError(
            "no helm binary: scripts/test.sh installs it (go install helm.sh/helm/v4/cmd/helm)"
            ", or set HELM"
        )
    return found


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own arguments
        [helm_binary(), *args], capture_output=True, text=True, timeout=120, check=False
    )


def render(values: Path | None, *settings: str) -> list[Manifest]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    if values is not None:
        args += ["-f", str(values)]
    for setting in settings:
        args += ["--set", setting]
    result = helm(*args)
    assert result.returncode == 0, result.stderr
    return manifests_of(CHART / f"rendered-{values.stem if values else 'bare'}", result.stdout)


def by_kind(manifests: list[Manifest]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(m.kind, m.name): m.body for m in manifests}


def test_the_documented_variants_are_found() -> None:
    assert {v.name for v in VARIANTS} >= {
        "default-values.yaml",
        "one-tier-values.yaml",
        "full-values.yaml",
    }


@pytest.mark.parametrize("values", VARIANTS, ids=[v.stem for v in VARIANTS])
def test_the_chart_lints(values: Path) -> None:
    result = helm("lint", "--strict", str(CHART), "-f", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.fixture(scope="module")
def dry_run(kube_cluster: KubeCluster, tmp_path_factory: pytest.TempPathFactory) -> DryRun:
    install_crds(kube_cluster)
    cache = tmp_path_factory.mktemp("discovery") / "discovery.json"
    api = dynamic.DynamicClient(kube_cluster.api_client(), cache_file=str(cache))  # type: ignore[no-untyped-call]
    checker = DryRun(api)
    (namespace,) = manifests_of(
        CONFIGS / "k8s" / "namespace.yaml", (CONFIGS / "k8s" / "namespace.yaml").read_text()
    )
    assert namespace.name == NAMESPACE
    checker.apply_for_real(namespace)  # Pod Security "restricted", enforced
    for other in ("shop", "search"):  # the full variant's guard namespaces
        kube_cluster.ensure_namespace(other)
    return checker


@pytest.mark.parametrize("values", VARIANTS, ids=[v.stem for v in VARIANTS])
def test_every_rendered_document_is_accepted_by_the_api_server(
    dry_run: DryRun, values: Path
) -> None:
    manifests = render(values)
    assert manifests
    for manifest in manifests:
        body = manifest.body
        body.setdefault("metadata", {}).setdefault("namespace", NAMESPACE)
        try:
            warnings = dry_run.check(Manifest(manifest.path, manifest.index, body))
        except DynamicApiError as exc:
            pytest.fail(f"{manifest.id}: the API server refused it: {server_message(exc)}")
        assert not warnings, f"{manifest.id}: the API server warned: {warnings}"


def _pod_specs(objects: dict[tuple[str, str], dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    for (kind, name), body in objects.items():
        if kind in {"DaemonSet", "Deployment"}:
            yield name, body["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield name, body["spec"]["jobTemplate"]["spec"]["template"]["spec"]


def _referenced(spec: dict[str, Any]) -> set[tuple[str, str]]:
    """(kind, name) of every Secret and ConfigMap a pod spec mounts or reads."""
    found: set[tuple[str, str]] = set()
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            found.add(("Secret", volume["secret"]["secretName"]))
        if "configMap" in volume:
            found.add(("ConfigMap", volume["configMap"]["name"]))
    for container in spec["containers"]:
        for env in container.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref is not None and not ref.get("optional"):
                found.add(("Secret", ref["name"]))
    return found


EXISTING = {
    "default-values.yaml": {("Secret", "spancost-db")},
    "one-tier-values.yaml": set(),
    "full-values.yaml": {
        ("Secret", "spancost-db"),
        ("Secret", "spancost-gateway-tls"),
        ("Secret", "spancost-agents-token"),
        ("Secret", "spancost-guard-alerts"),
    },
}
"""What each variant's values say exists already; everything else a pod needs is rendered."""
CLUSTER_MADE = {("ConfigMap", "kube-root-ca.crt")}  # in every namespace, made by Kubernetes


@pytest.mark.parametrize("values", VARIANTS, ids=[v.stem for v in VARIANTS])
def test_every_secret_and_configmap_a_pod_needs_is_there(values: Path) -> None:
    objects = by_kind(render(values))
    rendered = {key for key in objects if key[0] in {"Secret", "ConfigMap"}}
    available = rendered | EXISTING[values.name] | CLUSTER_MADE
    for name, spec in _pod_specs(objects):
        missing = _referenced(spec) - available
        assert not missing, f"{name} needs {sorted(missing)}"


def _container(spec: dict[str, Any], name: str) -> dict[str, Any]:
    (found,) = [c for c in spec["containers"] if c["name"] == name]
    return found


def _env(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_two_tiers_by_default_with_the_shipped_configs() -> None:
    objects = by_kind(render(CHART / "ci" / "default-values.yaml"))
    agent = objects["DaemonSet", "spancost-agent"]["spec"]["template"]["spec"]
    collector = _container(agent, "otelcol-spancost")
    assert collector["args"] == ["--config=/conf/agent.yaml"]
    config = objects["ConfigMap", "spancost-agent-config"]["data"]
    assert config == {"agent.yaml": (CONFIGS / "agent.yaml").read_text()}
    gateway_config = objects["ConfigMap", "spancost-gateway-config"]["data"]
    assert gateway_config == {
        "gateway.yaml": (CONFIGS / "gateway.yaml").read_text(),
        "gateway-tls.yaml": (CONFIGS / "tiers" / "gateway-tls.yaml").read_text(),
    }
    gateway_args = _container(
        objects["Deployment", "spancost-gateway"]["spec"]["template"]["spec"], "otelcol-spancost"
    )["args"]
    assert gateway_args == ["--config=/conf/gateway.yaml", "--config=/conf/gateway-tls.yaml"]
    assert collector["image"] == "ghcr.io/spancost/otelcol-spancost:0.1.0"  # appVersion
    # The agents' resolver watches the headless Service by this name.
    env = _env(collector)
    service = objects["Service", "spancost-gateway"]
    assert env["SPANCOST_GATEWAY_SERVICE"] == f"{service['metadata']['name']}.{NAMESPACE}"
    assert service["spec"]["clusterIP"] == "None"
    assert [p["port"] for p in service["spec"]["ports"]] == [4319]
    assert "OTLP_ENDPOINT" not in env  # an agent of two tiers sends only to gateways
    gateway = objects["Deployment", "spancost-gateway"]
    assert gateway["spec"]["replicas"] == 2
    selector = objects["PodDisruptionBudget", "spancost-gateway"]["spec"]["selector"]
    assert selector["matchLabels"] == gateway["spec"]["selector"]["matchLabels"]
    assert not [key for key in objects if "guard" in key[1]], "no guard without budgets"
    assert ("CronJob", "spancost-db-maintain") in objects


def test_the_generated_certificate_is_for_the_name_agents_check(tmp_path: Path) -> None:
    """The chart's own CA signed the gateways' certificate for the server name the
    agents are told to check, and the agents mount that CA."""
    objects = by_kind(render(CHART / "ci" / "default-values.yaml"))
    secret = objects["Secret", "spancost-gateway-tls"]
    assert secret["type"] == "kubernetes.io/tls"
    import base64  # noqa: PLC0415

    for key in ("tls.crt", "tls.key", "ca.crt"):
        (tmp_path / key).write_bytes(base64.b64decode(secret["data"][key]))
    openssl("verify", "-CAfile", str(tmp_path / "ca.crt"), str(tmp_path / "tls.crt"))
    san = subprocess.run(  # noqa: S603 - fixed arguments
        ["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", str(tmp_path / "tls.crt")],  # noqa: S607
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    agent = objects["DaemonSet", "spancost-agent"]["spec"]["template"]["spec"]
    server_name = _env(_container(agent, "otelcol-spancost"))["SPANCOST_GATEWAY_SERVER_NAME"]
    assert server_name == f"spancost-gateway.{NAMESPACE}.svc"
    assert f"DNS:{server_name}" in san
    ca_volume = next(v for v in agent["volumes"] if v["name"] == "gateway-ca")
    assert ca_volume["secret"] == {
        "secretName": "spancost-gateway-tls",
        "items": [{"key": "ca.crt", "path": "ca.crt"}],
    }
    token = objects["Secret", "spancost-agents-token"]
    assert len(base64.b64decode(token["data"]["token"])) == 48


def test_one_tier_renders_no_gateway() -> None:
    objects = by_kind(render(CHART / "ci" / "one-tier-values.yaml"))
    assert not [key for key in objects if "gateway" in key[1]]
    agent = objects["DaemonSet", "spancost-agent"]["spec"]["template"]["spec"]
    collector = _container(agent, "otelcol-spancost")
    assert collector["args"] == ["--config=/conf/daemonset.yaml"]
    env = _env(collector)
    assert env["OTLP_ENDPOINT"] == "tempo.observability.svc:4317"
    assert env["OTLP_INSECURE"] == "true"
    database = objects["Secret", "spancost-db"]
    assert database["stringData"]["url"].startswith("postgresql://")
    guard = objects["CronJob", "spancost-guard"]["spec"]["jobTemplate"]["spec"]["template"]
    assert "--once" in _container(guard["spec"], "guard")["command"]
    budgets = objects["ConfigMap", "spancost-guard-budgets"]["data"]["budgets.yaml"]
    assert [b.domain for b in parse_budgets(yaml.safe_load(budgets)).budgets] == ["checkout"]


def test_everything_on() -> None:
    manifests = render(CHART / "ci" / "full-values.yaml")
    objects = by_kind(manifests)
    guard = objects["Deployment", "spancost-guard"]["spec"]["template"]["spec"]
    assert "--metrics-listen" in _container(guard, "guard")["command"]
    roles = {m.namespace for m in manifests if (m.kind, m.name) == ("Role", "spancost-guard")}
    assert roles == {"shop", "search"}
    budgets = yaml.safe_load(objects["ConfigMap", "spancost-guard-budgets"]["data"]["budgets.yaml"])
    config = parse_budgets(budgets)
    assert {budget.domain for budget in config.budgets} == {"checkout", "search"}
    rule = objects["PrometheusRule", "spancost"]
    shipped = yaml.safe_load((CONFIGS / "prometheus" / "spancost-rules.yaml").read_text())
    assert rule["spec"] == shipped
    assert rule["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    dashboard = objects["ConfigMap", "spancost-dashboard"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["spancost.json"]) == json.loads(
        (CONFIGS / "grafana" / "spancost.json").read_text()
    )
    assert ("Secret", "spancost-gateway-tls") not in objects  # the existing one is used
    assert objects["Deployment", "spancost-gateway"]["spec"]["replicas"] == 3


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (["mode=threeTier"], 'mode: "threeTier" is neither twoTier nor oneTier'),
        (["database.existingSecret="], "database: give existingSecret"),
        (
            ["guard.enabled=true", "guard.kind=daily"],
            'guard.kind: "daily" is neither cronjob nor loop',
        ),
        (["guard.enabled=true"], "guard.budgets.budgets: name at least one domain's budget"),
    ],
)
def test_values_that_cannot_work_fail_naming_the_key(settings: list[str], message: str) -> None:
    args = ["template", RELEASE, str(CHART), "-f", str(CHART / "ci" / "default-values.yaml")]
    for setting in settings:
        args += ["--set", setting]
    result = helm(*args)
    assert result.returncode != 0
    assert message in result.stderr
