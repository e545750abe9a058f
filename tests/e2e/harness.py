"""Runs the real otelcol-spancost, the real sidecar and a real OTLP sink.

Everything listens on 127.0.0.1 with ports picked at run time, so tests can run
side by side and never touch a fixed port.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import psutil
import yaml
from opentelemetry.proto.collector.trace.v1 import (
    trace_service_pb2,
    trace_service_pb2_grpc,
)
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.waiting import wait_for

ROOT = Path(__file__).resolve().parents[2]
COLLECTOR = ROOT / "_build" / "otelcol-spancost"
SPANCOST = ROOT / ".venv" / "bin" / "spancost"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class OtlpSink(trace_service_pb2_grpc.TraceServiceServicer):
    """An OTLP/gRPC trace receiver that keeps every request it is sent."""

    def __init__(self) -> None:
        self.port = free_port()
        self._lock = threading.Lock()
        self._requests: list[trace_service_pb2.ExportTraceServiceRequest] = []
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=4),
            options=[("grpc.max_receive_message_length", 256 << 20)],
        )
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(self, self._server)
        self._server.add_insecure_port(f"127.0.0.1:{self.port}")

    def Export(  # noqa: N802 - the gRPC method name
        self,
        request: trace_service_pb2.ExportTraceServiceRequest,
        context: grpc.ServicerContext,
    ) -> trace_service_pb2.ExportTraceServiceResponse:
        with self._lock:
            self._requests.append(request)
        return trace_service_pb2.ExportTraceServiceResponse()

    def start(self) -> OtlpSink:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=None)

    def spans(
        self,
    ) -> list[tuple[trace_pb2.ResourceSpans, trace_pb2.ScopeSpans, trace_pb2.Span]]:
        with self._lock:
            reqs = list(self._requests)
        return [
            (rs, ss, span)
            for req in reqs
            for rs in req.resource_spans
            for ss in rs.scope_spans
            for span in ss.spans
        ]

    def span_count(self) -> int:
        return len(self.spans())

    def wait_spans(
        self, n: int, timeout: float = 20.0
    ) -> list[tuple[trace_pb2.ResourceSpans, trace_pb2.ScopeSpans, trace_pb2.Span]]:
        wait_for(
            lambda: self.span_count() >= n,
            timeout,
            f"{n} spans at the sink (have {self.span_count()})",
        )
        return self.spans()


def base_config(
    sink_port: int,
    *,
    plugin_config: dict[str, Any] | None = None,
    processor: dict[str, Any] | None = None,
    extension: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A collector config: OTLP in, python/env, OTLP out to the sink, metrics on a port."""
    proc: dict[str, Any] = {
        "extension": "python",
        "plugin": "spancost.environment",
        "timeout": "250ms",
        "on_error": "pass",
        "config": plugin_config
        if plugin_config is not None
        else {"drop": ["ci"], "tag": {"prod": {"spancost.checked": True}}},
    }
    proc.update(processor or {})
    ext: dict[str, Any] = {
        "command": [str(SPANCOST), "sidecar"],
        "restart": {"initial_interval": "50ms", "max_interval": "1s"},
        "health_check": {
            "interval": "200ms",
            "timeout": "200ms",
            "failure_threshold": 3,
        },
        "shutdown_grace_period": "5s",
    }
    ext.update(extension or {})
    return {
        "extensions": {"python": ext},
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {
                        "endpoint": f"127.0.0.1:{free_port()}",
                        "max_recv_msg_size_mib": 64,
                    },
                    "http": {"endpoint": f"127.0.0.1:{free_port()}"},
                }
            }
        },
        "processors": {"python/env": proc},
        "exporters": {
            "otlp_grpc": {
                "endpoint": f"127.0.0.1:{sink_port}",
                "tls": {"insecure": True},
                "sending_queue": {"enabled": False},
                "retry_on_failure": {"enabled": True},
            }
        },
        "service": {
            "extensions": ["python"],
            "telemetry": {
                "logs": {"level": "info"},
                "metrics": {
                    "level": "detailed",
                    "readers": [
                        {
                            "pull": {
                                "exporter": {
                                    "prometheus": {
                                        "host": "127.0.0.1",
                                        "port": free_port(),
                                    }
                                }
                            }
                        }
                    ],
                },
            },
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["python/env"],
                    "exporters": ["otlp_grpc"],
                }
            },
        },
    }


class Collector:
    """One run of _build/otelcol-spancost with a config written to tmp_path."""

    def __init__(
        self, config: dict[str, Any], workdir: Path, env: dict[str, str] | None = None
    ) -> None:
        if not COLLECTOR.exists():
            raise AssertionError(f"{COLLECTOR} is missing: run `make build` (make test does it)")
        self.config = config
        self.env = env
        self.workdir = workdir
        self.config_path = workdir / "collector.yaml"
        self.config_path.write_text(yaml.safe_dump(config))
        self.log_path = workdir / "collector.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def grpc_endpoint(self) -> str:
        return str(self.config["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"])

    @property
    def http_endpoint(self) -> str:
        return str(self.config["receivers"]["otlp"]["protocols"]["http"]["endpoint"])

    @property
    def metrics_port(self) -> int:
        reader = self.config["service"]["telemetry"]["metrics"]["readers"][0]
        return int(reader["pull"]["exporter"]["prometheus"]["port"])

    def start(self, *, wait: bool = True) -> Collector:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(  # noqa: S603 - our own binary
            [str(COLLECTOR), "--config", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
            env=self.env,
        )
        if wait:
            wait_for(self._ready, 30, "the collector to accept OTLP", interval=0.05)
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"collector exited with {self.proc.returncode}:\n{self.log()}")
        host, port = self.grpc_endpoint.rsplit(":", 1)
        try:
            with socket.create_connection((host, int(port)), timeout=0.2):
                return True
        except OSError:
            return False

    def wait_exit(self, timeout: float = 30) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def sidecar(self) -> psutil.Process:
        """The sidecar process the collector spawned (waits for a live one)."""
        assert self.proc is not None
        found: list[psutil.Process] = []

        def look() -> bool:
            found[:] = [
                c
                for c in psutil.Process(self.proc.pid).children()
                if c.status() != psutil.STATUS_ZOMBIE
            ]  # type: ignore[union-attr]
            return bool(found)

        wait_for(look, 10, "a sidecar child process")
        return found[0]

    def metrics(self) -> dict[str, float]:
        """The collector's own Prometheus metrics, summed over label sets per name+labels text."""
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as resp:
            text = resp.read().decode()
        out: dict[str, float] = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
        return out

    def metric(self, name: str, **labels: str) -> float:
        """Sum of every series of `name` whose labels include `labels`."""
        total = 0.0
        pattern = re.compile(r"^" + re.escape(name) + r"(\{.*\})?$")
        for key, value in self.metrics().items():
            if not pattern.match(key):
                continue
            if all(f'{k}="{v}"' in key for k, v in labels.items()):
                total += value
        return total


def iter_attrs(kvs: Any) -> Iterator[tuple[str, Any]]:
    for kv in kvs:
        v = kv.value
        yield (
            kv.key,
            getattr(v, v.WhichOneof("value")) if v.WhichOneof("value") else None,
        )


def attrs(kvs: Any) -> dict[str, Any]:
    return dict(iter_attrs(kvs))


def environ_of(proc: psutil.Process) -> dict[str, str]:
    return proc.environ()


def socket_path_of(sidecar: psutil.Process) -> Path:
    listen = environ_of(sidecar)["SPANCOST_SIDECAR_LISTEN"]
    assert listen.startswith("unix://"), listen
    return Path(listen.removeprefix("unix://"))


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
