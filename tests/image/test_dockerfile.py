"""The local build (scripts/image.sh) and a user's `docker build` of the Dockerfile stay
the same build: the public bases are the Dockerfile's defaults, and the collector
binary make image puts in place of the `collector` stage is built with that stage's
very steps (scripts/build.sh), by the same Go minor."""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess

import pytest

from tests.image.buildah import ROOT, Container

DOCKERFILE = (ROOT / "Dockerfile").read_text()
BUILD_SCRIPT = (ROOT / "scripts" / "build.sh").read_text()
# The steps both builds take, as each writes them (the Dockerfile with `go -C _build`,
# build.sh from inside _build).
OCB = "builder --config builder-config.yaml --skip-compilation"
TIDY = "mod tidy -e"
COMPILE = 'build -trimpath -ldflags "-s -w" -o'


def instructions(text: str) -> list[str]:
    """The Dockerfile's instructions, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", text)
    lines = (line.strip() for line in joined.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def stages() -> dict[str, list[str]]:
    """Each stage's instructions by its name (the last, unnamed one is "final")."""
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in instructions(DOCKERFILE):
        if line.startswith("FROM "):
            words = line.split()
            name = words[-1] if len(words) >= 3 and words[-2].upper() == "AS" else "final"
            current = found.setdefault(name, [line])
        elif current is not None:
            current.append(line)
    return found


def global_args() -> dict[str, str]:
    args: dict[str, str] = {}
    for line in instructions(DOCKERFILE):
        if line.startswith("FROM "):
            break
        name, _, default = line.removeprefix("ARG ").partition("=")
        args[name] = default
    return args


def test_public_bases_stay_the_defaults() -> None:
    args = global_args()
    assert args["GOLANG_IMAGE"] == "golang:${GO_VERSION}"
    assert args["PYTHON_IMAGE"] == "python:${PYTHON_VERSION}-slim"
    assert args["COLLECTOR"] == "collector", "a plain build compiles the collector itself"
    found = stages()
    assert found["collector"][0] == "FROM --platform=$BUILDPLATFORM ${GOLANG_IMAGE} AS collector"
    assert found["collector-binary"] == ["FROM ${COLLECTOR} AS collector-binary"]
    assert found["wheels"][0] == "FROM ${PYTHON_IMAGE} AS wheels"
    assert found["final"][0] == "FROM ${PYTHON_IMAGE}"
    copies = [line for line in found["final"] if line.startswith("COPY --from=")]
    assert copies == [
        "COPY --from=collector-binary /out/otelcol-spancost /usr/local/bin/otelcol-spancost"
    ]


def test_collector_stage_builds_as_build_sh_does() -> None:
    stage = " ".join(stages()["collector"])
    for step in (OCB, TIDY, "CGO_ENABLED=0", COMPILE):
        assert step in stage, f"the collector stage lost {step!r}"
        assert step in BUILD_SCRIPT, f"scripts/build.sh lost {step!r}"

    pinned = re.search(
        r'OTELCOL_VERSION="\$\{OTELCOL_VERSION:-(v[0-9.]+)\}"',
        (ROOT / "scripts" / "lib.sh").read_text(),
    )
    assert pinned is not None
    assert f"ARG OTELCOL_VERSION={pinned.group(1)}" in stage


def test_collector_binary_is_built_by_the_stages_go_minor() -> None:
    go = shutil.which("go")
    if go is None:
        pytest.fail("go not found: install Go (make test needs it)")
    binary = ROOT / "_build" / "otelcol-spancost"
    reported = subprocess.run(  # noqa: S603 - the Go toolchain on our own binary
        [go, "version", str(binary)], capture_output=True, text=True, check=True
    ).stdout
    assert f"go{global_args()['GO_VERSION']}." in reported, reported


def test_image_carries_the_binary_build_sh_made(container: Container) -> None:
    in_image = container.run("sha256sum", "/usr/local/bin/otelcol-spancost")
    assert in_image.returncode == 0, in_image.stderr
    local = hashlib.sha256((ROOT / "_build" / "otelcol-spancost").read_bytes()).hexdigest()
    assert in_image.stdout.split()[0] == local
