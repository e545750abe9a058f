"""`spancost health`: the exec probe for the sidecar container."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

SPANCOST = [sys.executable, "-m", "spancost"]


def run_health(target: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SPANCOST, "health", "--listen", target, *extra],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.fixture
def sidecar(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    sock = tmp_path / "sidecar.sock"
    target = f"unix://{sock}"
    # A short grace period: a sidecar resumed from SIGSTOP on a loaded machine must
    # still stop well within the teardown's wait.
    proc = subprocess.Popen(
        [*SPANCOST, "sidecar", "--listen", target, "--grace-period", "1"],
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 20
    while not sock.exists():
        assert proc.poll() is None, "the sidecar exited"
        assert time.monotonic() < deadline, "the sidecar did not create its socket"
        time.sleep(0.05)
    yield proc, target
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGCONT)
        proc.terminate()
        proc.wait(60)


def test_a_serving_sidecar_is_healthy(sidecar: tuple[subprocess.Popen[bytes], str]) -> None:
    _, target = sidecar
    result = run_health(target)
    assert result.returncode == 0, result.stderr
    assert "is SERVING" in result.stdout


def test_a_frozen_sidecar_fails_the_probe_within_the_timeout(
    sidecar: tuple[subprocess.Popen[bytes], str],
) -> None:
    proc, target = sidecar
    os.kill(proc.pid, signal.SIGSTOP)
    began = time.monotonic()
    result = run_health(target, "--timeout", "0.5")
    assert result.returncode == 1
    assert "did not answer: DEADLINE_EXCEEDED" in result.stderr
    assert time.monotonic() - began < 10


def test_no_sidecar_fails_the_probe(tmp_path: Path) -> None:
    result = run_health(f"unix://{tmp_path / 'nobody.sock'}", "--timeout", "0.5")
    assert result.returncode == 1
    assert "did not answer" in result.stderr
