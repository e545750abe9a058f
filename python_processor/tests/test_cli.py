"""`spancost sidecar` as the collector runs it: a subprocess, stopped by a signal."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import click
import grpc
import pytest
from click.testing import CliRunner
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spancost import __version__
from spancost.cli import COMMANDS, cli
from spancost.wire.v1 import sidecar_pb2, sidecar_pb2_grpc
from tests.builders import batch, resource_spans, span

START_TIMEOUT = 15.0


def spancost(*args: str) -> list[str]:
    return [sys.executable, "-m", "spancost", *args]


def run(
    args: list[str], env: dict[str, str], timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def wait_serving(target: str, process: subprocess.Popen[str]) -> grpc.Channel:
    channel = grpc.insecure_channel(target)
    health = health_pb2_grpc.HealthStub(channel)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            _, stderr = process.communicate()
            pytest.fail(f"sidecar exited with {process.returncode}:\n{stderr}")
        try:
            response = health.Check(health_pb2.HealthCheckRequest(service=""), timeout=0.5)
        except grpc.RpcError:
            time.sleep(0.05)
            continue
        if response.status == health_pb2.HealthCheckResponse.SERVING:
            return channel
    pytest.fail("sidecar did not become SERVING")


@pytest.fixture
def start_sidecar(sidecar_env: dict[str, str]) -> Iterator[object]:
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            spancost("sidecar", *args),
            env=env or sidecar_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.communicate()


def test_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output == f"spancost {__version__}\n"


def test_listen_is_required(sidecar_env: dict[str, str]) -> None:
    result = run(spancost("sidecar"), sidecar_env)
    assert result.returncode == 2
    assert "Missing option '--listen'" in result.stderr


def test_non_loopback_listen_is_refused(sidecar_env: dict[str, str]) -> None:
    result = run(spancost("sidecar", "--listen", "0.0.0.0:1234"), sidecar_env)
    assert result.returncode == 2
    assert "refusing to listen on '0.0.0.0:1234': host '0.0.0.0' is not loopback" in result.stderr
    assert "Traceback" not in result.stderr


def test_listen_from_the_environment_is_checked_too(sidecar_env: dict[str, str]) -> None:
    env = {**sidecar_env, "SPANCOST_SIDECAR_LISTEN": "[::]:4317"}
    result = run(spancost("sidecar"), env)
    assert result.returncode == 2
    assert "is not loopback" in result.stderr


def test_pure_python_protobuf_is_refused(sidecar_env: dict[str, str], tmp_path: Path) -> None:
    env = {**sidecar_env, "PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"}
    result = run(spancost("sidecar", "--listen", f"unix://{tmp_path}/s.sock"), env)
    assert result.returncode == 2
    assert "pure-Python implementation" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_preload_plugin_fails_fast(sidecar_env: dict[str, str], tmp_path: Path) -> None:
    args = spancost("sidecar", "--listen", f"unix://{tmp_path}/s.sock", "--preload", "nope")
    result = run(args, sidecar_env)
    assert result.returncode == 1
    assert "no plugin named 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_in_the_way_of_the_socket_is_left_alone(
    sidecar_env: dict[str, str], tmp_path: Path
) -> None:
    (tmp_path / "s.sock").write_text("mine")
    result = run(spancost("sidecar", "--listen", f"unix://{tmp_path}/s.sock"), sidecar_env)
    assert result.returncode == 1
    assert "exists and is not a socket" in result.stderr
    assert (tmp_path / "s.sock").read_text() == "mine"


def test_socket_is_private_and_sigterm_exits_zero(start_sidecar: object, tmp_path: Path) -> None:
    socket_path = tmp_path / "run" / "sidecar.sock"
    env_listen = f"unix://{socket_path}"
    process = start_sidecar("--listen", env_listen, "--log-level", "debug")  # type: ignore[operator]
    with wait_serving(env_listen, process):
        assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600
        assert stat.S_IMODE(socket_path.parent.stat().st_mode) == 0o700
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "SIGTERM received" in stderr
    assert not socket_path.exists()
    # UTC ISO timestamps on every line.
    assert all(line[:4].isdigit() and line[23] == "Z" for line in stderr.splitlines() if line)


def test_sigterm_lets_the_in_flight_batch_finish(start_sidecar: object, tmp_path: Path) -> None:
    target = f"unix://{tmp_path}/s.sock"
    process = start_sidecar(  # type: ignore[operator]
        "--listen",
        target,
        "--server-mode",
        "threads",
        "--preload",
        "test.slow",
        "--grace-period",
        "10",
    )
    started = tmp_path / "started"
    with wait_serving(target, process) as channel:
        stub = sidecar_pb2_grpc.SidecarStub(channel)  # type: ignore[no-untyped-call]
        stub.Configure(
            sidecar_pb2.ConfigureRequest(
                instance="python/slow",
                plugin="test.slow",
                config_json=json.dumps({"seconds": 1.5, "started_file": str(started)}),
            ),
            timeout=5,
        )
        request = batch(resource_spans({}, [span("a")]))
        future = stub.ProcessTraces.future(
            sidecar_pb2.ProcessTracesRequest(
                instance="python/slow", traces=request.SerializeToString()
            ),
            timeout=20,
        )
        deadline = time.monotonic() + 10
        while not started.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert started.exists(), "the slow batch never started"
        process.send_signal(signal.SIGTERM)
        response = future.result()
    assert response.traces == request.SerializeToString()
    assert [(e.event, e.spans) for e in response.events] == [("slept", 1)]
    _, stderr = process.communicate(timeout=15)
    assert process.returncode == 0, stderr
    assert "finishing in-flight batches" in stderr


def test_sigint_on_tcp_loopback(start_sidecar: object) -> None:
    with_port_zero = "127.0.0.1:0"
    process = start_sidecar("--listen", with_port_zero)  # type: ignore[operator]
    # Port 0: read the bound port from the log line.
    assert process.stderr is not None
    line = ""
    deadline = time.monotonic() + START_TIMEOUT
    while "serving on" not in line and time.monotonic() < deadline:
        line = process.stderr.readline()
    target = line.rsplit(" ", 1)[-1].strip()
    assert target.startswith("127.0.0.1:")
    assert not target.endswith(":0")
    with wait_serving(target, process):
        pass
    os.kill(process.pid, signal.SIGINT)
    process.communicate(timeout=15)
    assert process.returncode == 0


def test_every_command_listed_is_its_modules_command() -> None:
    """The lazily loaded commands: each name `--help` lists resolves to the click
    command of that name (a misspelt entry would fail only when someone runs it)."""
    context = click.Context(cli)
    resolved = {name: cli.get_command(context, name) for name in cli.list_commands(context)}
    assert list(resolved) == list(COMMANDS)
    assert all(c is not None and c.name == name for name, c in resolved.items())
    assert cli.get_command(context, "nonsense") is None
    help_text = CliRunner().invoke(cli, ["--help"]).output
    assert all(f"  {name} " in help_text for name in COMMANDS)
