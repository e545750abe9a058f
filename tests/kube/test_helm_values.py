"""The Helm values in configs/README.md attribute, price and total like configs/daemonset.yaml.

The chart itself is not in the repository and CI cannot fetch it, so rendering it is a
manual check (configs/README.md, "Using the official Helm chart instead of `k8s/`").
What can drift without the chart is checked here: the values' own collector config
against the shipped one, and the values that give the sidecar its API access.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
SECTION = "## Using the official Helm chart instead of `k8s/`"
SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


def helm_values(readme: str) -> dict[str, Any]:
    """The section's values: its YAML block that sets ``mode``."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else None]
    for block in re.findall(r"```yaml\n(.*?)```", section, flags=re.DOTALL):
        values = yaml.safe_load(block)
        if isinstance(values, dict) and "mode" in values:
            return values
    raise AssertionError(f"no values block (with `mode:`) under {SECTION!r}")


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return helm_values((CONFIGS / "README.md").read_text())


@pytest.fixture(scope="module")
def shipped() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((CONFIGS / "daemonset.yaml").read_text())
    return config


def test_values_run_the_shipped_processors_in_the_shipped_order(
    values: dict[str, Any], shipped: dict[str, Any]
) -> None:
    config = values["config"]
    traces = config["service"]["pipelines"]["traces"]
    assert traces["processors"] == shipped["service"]["pipelines"]["traces"]["processors"]
    for name in ("resource/strip_sender_k8s", "resource", "python/spancost"):
        assert config["processors"][name] == shipped["processors"][name], name


def test_values_replace_what_the_preset_gets_wrong_about_who_pays(
    values: dict[str, Any], shipped: dict[str, Any]
) -> None:
    """The preset's k8s_attributes believes the sender and every annotation; ours may not.

    The chart merges the values over the preset, a list replacing the preset's and
    `false` its `true` (checked by rendering), so each of these must be set explicitly.
    """
    assert values["presets"]["kubernetesAttributes"]["enabled"] is True
    ours = values["config"]["processors"]["k8s_attributes"]
    theirs = shipped["processors"]["k8s_attributes"]
    for key in ("pod_association", "wait_for_metadata", "wait_for_metadata_timeout"):
        assert ours[key] == theirs[key], key
    assert ours["extract"]["otel_annotations"] is False
    assert theirs["extract"].get("otel_annotations", False) is False
    for key in ("metadata", "annotations"):
        assert ours["extract"][key] == theirs["extract"][key], key


def test_values_total_like_the_shipped_config(
    values: dict[str, Any], shipped: dict[str, Any]
) -> None:
    config = values["config"]
    python = config["extensions"]["python"]
    assert python["endpoint"] == shipped["extensions"]["python"]["endpoint"]
    assert python["sinks"] == shipped["extensions"]["python"]["sinks"]
    ours, theirs = config["exporters"]["otlp_grpc/totals"], shipped["exporters"]["otlp_grpc/totals"]
    for key in ("endpoint", "headers"):
        assert ours[key] == theirs[key], key
    assert ours["sending_queue"]["storage"] == "file_storage"
    for name in ("otlp_grpc", "otlp_grpc/totals"):  # batched after the queue, as shipped
        queue = config["exporters"][name]["sending_queue"]
        assert queue["batch"] == shipped["exporters"][name]["sending_queue"]["batch"], name
    exporters = config["service"]["pipelines"]["traces"]["exporters"]
    assert exporters == ["otlp_grpc", "otlp_grpc/totals"]
    database = [env for env in values["extraEnvs"] if env["name"] == "DATABASE_URL"]
    assert database and "secretKeyRef" in database[0]["valueFrom"]


def test_values_let_the_sidecar_read_its_node(values: dict[str, Any]) -> None:
    """Node facts: nodes list/watch beyond the preset's rules, and the pod's token.

    The chart puts the pod-level automount in the pod spec and the API server mounts
    the token into every container (checked by a dry run), unless the values turn it
    off or a container mounts something else over its path.
    """
    rules = values["clusterRole"]["rules"]
    assert any(
        "" in rule["apiGroups"]
        and "nodes" in rule["resources"]
        and {"list", "watch"} <= set(rule["verbs"])
        for rule in rules
    ), rules
    assert (values.get("serviceAccount") or {}).get("automountServiceAccountToken", True)
    (sidecar,) = [c for c in values["extraContainers"] if c["name"] == "spancost-sidecar"]
    assert all(m["mountPath"] != SERVICE_ACCOUNT_DIR for m in sidecar["volumeMounts"])
    socket_dir = values["config"]["extensions"]["python"]["endpoint"].removeprefix("unix://")
    assert any(socket_dir.startswith(m["mountPath"] + "/") for m in sidecar["volumeMounts"])


def test_values_block_is_found_only_when_it_is_there() -> None:
    with pytest.raises(AssertionError, match="no values block"):
        helm_values(f"{SECTION}\n\n```yaml\nports: {{}}\n```\n\n## Next\n\n```yaml\nmode: x\n```\n")
