"""The built image (make image): its ENTRYPOINT validates the shipped configs and lists
the distribution's components, it runs as UID 10001, `spancost sidecar` serves in it,
and it stays within its size budget."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from tests.image.buildah import ROOT, Container, Image
from tests.waiting import wait_for

SHIPPED_CONFIGS = ("local.yaml", "daemonset.yaml", "gateway.yaml")
# The values scripts/validate-configs.sh gives the ${env:...} the deployment configs read.
CONFIG_ENV = {"K8S_NODE_NAME": "node-1", "OTLP_ENDPOINT": "tracing-backend:4317"}
DEFAULT_CONFIG = "/etc/otelcol-spancost/config.yaml"
RUNTIME_UID = "10001"
# The directories the shipped configs write to, owned by the runtime user so that a
# plain `docker run` works without volumes (Dockerfile).
WRITABLE_DIRS = ("/var/lib/otelcol/file_storage", "/var/lib/spancost", "/var/run/spancost")
SIDECAR_SOCKET = "unix:///var/run/spancost/sidecar.sock"
# 542 MB when measured (BENCHMARKS.md): the Debian base 153 MB, the collector 132 MB,
# the sidecar's virtualenv about 250 MB. A copied wheel directory, a pip cache or a
# build toolchain in a layer would break it.
SIZE_BUDGET_BYTES = 600_000_000


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )
    return result.stdout


@pytest.fixture(scope="module")
def entrypoint(image: Image) -> list[str]:
    entrypoint: list[str] = image.config()["Entrypoint"]
    assert entrypoint == ["/usr/local/bin/otelcol-spancost"]
    return entrypoint


@pytest.mark.parametrize("config", SHIPPED_CONFIGS)
def test_entrypoint_validates_each_shipped_config(
    container: Container, entrypoint: list[str], config: str
) -> None:
    ok(
        container.run(
            *entrypoint,
            "validate",
            f"--config=/configs/{config}",
            env=CONFIG_ENV,
            volumes=[f"{ROOT / 'configs'}:/configs:ro"],
        )
    )


def test_default_command_validates_and_needs_its_endpoint(
    image: Image, container: Container, entrypoint: list[str]
) -> None:
    """ENTRYPOINT + `validate` + CMD: the image's own config, as `docker run` would load it.
    Without OTLP_ENDPOINT it is refused, so validate really reads the config."""
    cmd: list[str] = image.config()["Cmd"]
    assert cmd == [f"--config={DEFAULT_CONFIG}"]
    ok(container.run(*entrypoint, "validate", *cmd, env=CONFIG_ENV))

    refused = container.run(*entrypoint, "validate", *cmd)
    assert refused.returncode != 0
    assert "endpoint" in refused.stderr


def test_default_config_is_the_gateway(container: Container) -> None:
    shipped = (ROOT / "configs" / "gateway.yaml").read_text()
    assert ok(container.run("cat", DEFAULT_CONFIG)) == shipped


def test_components_lists_the_python_components_and_signal_to_metrics(
    container: Container, entrypoint: list[str]
) -> None:
    components = yaml.safe_load(ok(container.run(*entrypoint, "components")))
    names = {
        kind: {component["name"] for component in components.get(kind) or []}
        for kind in ("receivers", "processors", "exporters", "connectors", "extensions")
    }
    assert "python" in names["extensions"]
    assert "python" in names["processors"]
    assert "signal_to_metrics" in names["connectors"]
    assert "otlp" in names["receivers"]
    assert components["buildinfo"]["command"] == "otelcol-spancost"


def test_the_helm_charts_command_path_runs_the_collector(container: Container) -> None:
    """The official chart runs `/<command.name>`: /otelcol-spancost must be the binary."""
    assert "otelcol-spancost" in ok(container.run("/otelcol-spancost", "--version"))


def test_runs_as_uid_10001_by_default(image: Image, container: Container) -> None:
    assert image.config().get("User") == RUNTIME_UID
    assert ok(container.run("id", "-u")).strip() == RUNTIME_UID
    assert ok(container.run("id", "-g")).strip() == RUNTIME_UID


def test_only_the_runtime_directories_are_writable(container: Container) -> None:
    for directory in WRITABLE_DIRS:
        ok(container.run("touch", f"{directory}/written-by-the-image-test"))
    # Not root: the image's own files are not the runtime user's to change.
    assert container.run("touch", "/etc/otelcol-spancost/written-by-the-image-test").returncode
    assert container.run("touch", "/opt/spancost/written-by-the-image-test").returncode


def test_python_is_the_dockerfiles_version(container: Container) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    wanted = re.search(r"^ARG PYTHON_VERSION=(\S+)$", dockerfile, re.MULTILINE)
    assert wanted is not None
    version = ok(container.run("python", "-c", "import sys; print(*sys.version_info[:2], sep='.')"))
    assert version.strip() == wanted.group(1)


def test_sidecar_starts_and_answers_its_health_check(container: Container, tmp_path: Path) -> None:
    sidecar = container.start(
        "spancost", "sidecar", "--listen", SIDECAR_SOCKET, log=tmp_path / "sidecar.log"
    )
    try:

        def serving() -> bool:
            assert sidecar.proc.poll() is None, f"the sidecar exited:\n{sidecar.output()}"
            return container.run("spancost", "health", "--listen", SIDECAR_SOCKET).returncode == 0

        wait_for(serving, timeout=120, what="the sidecar in the image to serve", interval=0.5)
        answer = ok(container.run("spancost", "health", "--listen", SIDECAR_SOCKET))
        assert "SERVING" in answer
        assert "protobuf=upb" in sidecar.output()
    finally:
        sidecar.stop()


def test_no_build_leftovers(container: Container) -> None:
    """The wheels were bind-mounted into the install step, never copied into a layer."""
    for path in ("/wheels", "/src"):
        assert container.run("test", "-e", path).returncode != 0, f"{path} is in the image"


def test_size_is_recorded_and_within_budget(
    image: Image, record_property: Callable[[str, object], None]
) -> None:
    size = image.size_bytes()
    record_property("image_size_bytes", size)
    print(f"{image.ref}: {size} bytes ({size / 1e6:.0f} MB) uncompressed")
    assert 0 < size <= SIZE_BUDGET_BYTES
