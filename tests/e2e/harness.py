"""Runs the real otelcol-spancost, the real sidecar and a real OTLP sink.

Everything listens on 127.0.0.1 with ports picked at run time, so tests can run
side by side and never touch a fixed port.
"""

from __future__ import annotations

import difflib
import functools
import os
import re
import signal
import socket
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
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
        """Every OTLP protocol the config opens accepts connections (the receiver starts
        them one after the other, seconds apart on a busy machine)."""
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"collector exited with {self.proc.returncode}:\n{self.log()}")
        protocols = self.config["receivers"]["otlp"]["protocols"]
        for protocol, default in (("grpc", "localhost:4317"), ("http", "localhost:4318")):
            if protocol not in protocols:
                continue
            endpoint = (protocols[protocol] or {}).get("endpoint") or default
            host, port = str(endpoint).rsplit(":", 1)
            try:
                with socket.create_connection((host, int(port)), timeout=0.2):
                    pass
            except OSError:
                return False
        return True

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
        """Sum of every series of `name` whose labels include `labels`.

        `name` is a series the collector exposes now, or one of our components'
        documented metrics (`documented_metrics`), which reads 0 until it has data.
        Anything else raises, naming close names: a typo must not read as "nothing
        happened". So does a label no series of `name` has.
        """
        with urllib.request.urlopen(
            f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=5
        ) as resp:
            families = parse_exposition(resp.read().decode())
        samples = [s for family in families for s in family.samples if s.name == name]
        if not samples:
            samples = _documented_samples(name, families)
        for key in labels:
            if samples and all(key not in s.labels for s in samples):
                have = sorted({k for s in samples for k in s.labels})
                raise AssertionError(f"no series of {name} has the label {key!r}; it has {have}")
        return sum(s.value for s in samples if labels.items() <= s.labels.items())


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


@dataclass
class Family:
    """A metric as the Prometheus text format exposes it: # HELP, # TYPE, its series."""

    name: str
    type: str = "untyped"
    help: str = ""
    samples: list[Sample] = field(default_factory=list)


_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape(text: str) -> str:
    return re.sub(r'\\[\\"n]', lambda m: _UNESCAPE[m.group()], text)


def parse_exposition(text: str) -> list[Family]:
    """The families of a Prometheus text exposition (format 0.0.4)."""
    families: dict[str, Family] = {}
    current: Family | None = None
    for line in text.splitlines():
        if line.startswith(("# HELP ", "# TYPE ")):
            _, kind, name, rest = [*line.split(" ", 3), ""][:4]
            current = families.setdefault(name, Family(name))
            if kind == "HELP":
                current.help = _unescape(rest)
            else:
                current.type = rest
        elif line and not line.startswith("#"):
            match = _SAMPLE.match(line)
            if match is None:
                raise AssertionError(f"not a Prometheus sample line: {line!r}")
            name, label_text, value = match.groups()
            labels = {k: _unescape(v) for k, v in _LABEL.findall(label_text or "")}
            if current is None or not name.startswith(current.name):
                current = families.setdefault(name, Family(name))
            current.samples.append(Sample(name, labels, float(value)))
    return list(families.values())


@dataclass(frozen=True)
class DocumentedMetric:
    """A metric one of our components declares in its metadata.yaml (telemetry.metrics)."""

    name: str  # the key with the collector's otelcol_ prefix
    description: str
    histogram: bool

    def series_names(self) -> list[str]:
        """What a caller may ask `Collector.metric` for (a histogram: its series)."""
        if self.histogram:
            return [f"{self.name}_{part}" for part in ("count", "sum", "bucket")]
        return [self.name]


@functools.cache
def documented_metrics() -> dict[str, DocumentedMetric]:
    """Every metric of every component under collector/, from its metadata.yaml."""
    out: dict[str, DocumentedMetric] = {}
    for path in sorted((ROOT / "collector").glob("**/metadata.yaml")):
        metrics = (yaml.safe_load(path.read_text()).get("telemetry") or {}).get("metrics") or {}
        for key, spec in metrics.items():
            metric = DocumentedMetric(f"otelcol_{key}", spec["description"], "histogram" in spec)
            out[metric.name] = metric
    return out


def exposed_family(metric: DocumentedMetric, families: list[Family]) -> Family | None:
    """The family `metric` is exposed as, if it has data yet.

    Found by its description (the exposition's HELP, with a stability suffix such as
    " [Development]") and its name (``otelcol_<key>``, plus whatever suffixes the
    Prometheus exporter is configured to add), not by a naming rule that could drift
    from the exporter's.
    """
    for family in families:
        if family.name.startswith(metric.name) and family.help.startswith(metric.description):
            return family
    return None


def _documented_samples(name: str, families: list[Family]) -> list[Sample]:
    """The series behind a documented name (none yet: []); raises for an unknown name."""
    for metric in documented_metrics().values():
        if name not in metric.series_names():
            continue
        family = exposed_family(metric, families)
        if family is None:
            return []
        suffix = name.removeprefix(metric.name)  # "_count" etc. of a histogram, else ""
        return [s for s in family.samples if s.name == family.name + suffix]
    known = {s.name for family in families for s in family.samples}
    known.update(n for metric in documented_metrics().values() for n in metric.series_names())
    close = difflib.get_close_matches(name, sorted(known), n=5, cutoff=0.6)
    raise AssertionError(
        f"no metric {name!r}: it is neither exposed now nor documented in a "
        f"collector/**/metadata.yaml; close names: {close or 'none'}"
    )


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
