"""The image `make image` built, and a working container of it, driven with buildah.

scripts/image.sh builds the image into its own containers-storage and says where in
``_build/image.env`` (or in the environment, when it runs these tests itself):
``SPANCOST_IMAGE`` (the image), ``CONTAINERS_STORAGE_CONF`` (that storage, vfs) and
``BUILDAH_ISOLATION`` (chroot: no runc, no daemon). A missing image or buildah fails
the tests, never skips them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGE_ENV = ROOT / "_build" / "image.env"
_SETTINGS = ("SPANCOST_IMAGE", "CONTAINERS_STORAGE_CONF", "BUILDAH_ISOLATION")
# A guard against a hung buildah, not a measurement: no check here is timed.
_COMMAND_TIMEOUT_S = 300.0


def _settings() -> dict[str, str]:
    if all(os.environ.get(name) for name in _SETTINGS):
        return {name: os.environ[name] for name in _SETTINGS}
    if not IMAGE_ENV.is_file():
        pytest.fail(f"no image: {IMAGE_ENV} is missing; run `make image` (make test does)")
    pairs = (line.split("=", 1) for line in IMAGE_ENV.read_text().splitlines() if "=" in line)
    found = dict(pairs)
    missing = [name for name in _SETTINGS if not found.get(name)]
    if missing:
        pytest.fail(f"{IMAGE_ENV} lacks {', '.join(missing)}; run `make image` again")
    return {name: found[name] for name in _SETTINGS}


@dataclass(frozen=True)
class Image:
    ref: str
    buildah_bin: str
    env: Mapping[str, str]

    @classmethod
    def built(cls) -> Image:
        buildah_bin = shutil.which("buildah")
        if buildah_bin is None:
            pytest.fail("buildah not found: install Debian's buildah (scripts/deps.sh does)")
        settings = _settings()
        image = cls(
            settings["SPANCOST_IMAGE"], buildah_bin, {**os.environ, **settings, "LC_ALL": "C"}
        )
        if image.buildah("inspect", "--type", "image", image.ref).returncode != 0:
            pytest.fail(f"image {image.ref} is not in the store; run `make image`")
        return image

    def buildah(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603 - buildah, with our own arguments
            [self.buildah_bin, *args],
            env=dict(self.env),
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=_COMMAND_TIMEOUT_S,
            check=False,
        )

    def inspect(self) -> dict[str, Any]:
        result = self.buildah("inspect", "--type", "image", self.ref)
        assert result.returncode == 0, result.stderr
        found: dict[str, Any] = json.loads(result.stdout)
        return found

    def config(self) -> dict[str, Any]:
        """The OCI image config's ``config``: User, Entrypoint, Cmd, Env, ..."""
        config: dict[str, Any] = self.inspect()["OCIv1"]["config"]
        return config

    def size_bytes(self) -> int:
        """What the image's layers hold, uncompressed (the manifest's layer sizes)."""
        manifest = json.loads(self.inspect()["Manifest"])
        return sum(int(layer["size"]) for layer in manifest["layers"])

    def new_container(self) -> Container:
        name = f"spancost-image-test-{uuid.uuid4().hex[:10]}"
        result = self.buildah("from", "--pull=never", "--name", name, self.ref)
        assert result.returncode == 0, f"buildah from {self.ref} failed: {result.stderr}"
        return Container(self, name)


@dataclass(frozen=True)
class Container:
    """A buildah working container of the image. Each run is a process as the image's
    USER, with its Env, in the container's root filesystem (shared by every run, so
    one run sees the sockets and files another made); the ENTRYPOINT is not implied:
    callers that mean it read it from the image's config."""

    image: Image
    name: str

    def _run_args(
        self, command: Sequence[str], env: Mapping[str, str], volumes: Sequence[str]
    ) -> list[str]:
        args = ["run"]
        for key, value in env.items():
            args += ["--env", f"{key}={value}"]
        for volume in volumes:
            args += ["--volume", volume]
        return [*args, self.name, "--", *command]

    def run(
        self,
        *command: str,
        env: Mapping[str, str] | None = None,
        volumes: Sequence[str] = (),
    ) -> subprocess.CompletedProcess[str]:
        return self.image.buildah(*self._run_args(command, env or {}, volumes))

    def start(self, *command: str, log: Path) -> Process:
        """``command`` in the background; its output goes to ``log``."""
        with log.open("wb") as out:
            proc = subprocess.Popen(  # noqa: S603 - buildah, with our own arguments
                [self.image.buildah_bin, *self._run_args(command, {}, ())],
                env=dict(self.image.env),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        return Process(proc, log)

    def remove(self) -> None:
        self.image.buildah("rm", self.name)


@dataclass(frozen=True)
class Process:
    proc: subprocess.Popen[bytes]
    log: Path

    def stop(self) -> None:
        # buildah run kills what it runs when it is told to stop.
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(_COMMAND_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(_COMMAND_TIMEOUT_S)

    def output(self) -> str:
        return self.log.read_text(errors="replace")
