"""Priced out of the box outside Kubernetes: an EC2 instance and an ECS task tell the
sidecar what they are (``spancost.cost`` ``node_facts.ec2_metadata`` / ``ecs_metadata``),
so spans with only ``service.name`` are priced as the instance or task they ran on.

EC2: AWS's own instance metadata mock (amazon-ec2-metadata-mock, ``go install``ed by
scripts/test.sh), IMDSv2 only, configured as a spot c6g.large in us-east-1. ECS: a local
server answering ``/task`` of task metadata v4 with the example from AWS's documentation
(no AWS-made mock of that endpoint resolves here).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.harness import ROOT, Collector, OtlpSink, attrs, base_config, free_port
from tests.e2e.raw import RawClient
from tests.e2e.totals import any_value, socket_dir, totals_config
from tests.waiting import wait_for

Start = Callable[..., Collector]

C6G_LARGE = 0.068  # us-east-1 Linux on-demand, AWS's public price
FARGATE_VCPU_HOUR = 0.04048  # us-east-2 Linux/x86, AWS's public prices
FARGATE_GB_HOUR = 0.004445
SPOT_DISCOUNT = 0.7
SECONDS = 3

AEMM_CONFIG = {
    "imdsv2": True,
    "metadata": {"values": {"instance-type": "c6g.large", "instance-life-cycle": "spot"}},
    "dynamic": {
        "values": {
            "instance-identity-document": {
                "instanceType": "c6g.large",
                "region": "us-east-1",
                "availabilityZone": "us-east-1d",
                "architecture": "arm64",
                "instanceId": "i-0123456789abcdef0",
                "accountId": "123456789012",
            }
        }
    },
}

# docs.aws.amazon.com/AmazonECS/latest/developerguide/task-metadata-endpoint-v4-fargate.html
# ("Example task metadata response"), trimmed to the task-level fields.
ECS_TASK = {
    "Cluster": "arn:aws:ecs:us-east-2:111122223333:cluster/default",
    "TaskARN": "arn:aws:ecs:us-east-2:111122223333:task/default/e9028f8d5d8e4f258373e7b93ce9a3c3",
    "Family": "curltest",
    "Revision": "3",
    "DesiredStatus": "RUNNING",
    "KnownStatus": "RUNNING",
    "Limits": {"CPU": 0.25, "Memory": 512},
    "PullStartedAt": "2020-10-08T20:47:16.053330955Z",
    "PullStoppedAt": "2020-10-08T20:47:19.592684631Z",
    "AvailabilityZone": "us-east-2b",
    "LaunchType": "FARGATE",
    "Containers": [],
    "ClockDrift": {"ClockErrorBound": 0.5, "ReferenceTimestamp": "2021-09-07T16:57:44Z"},
    "EphemeralStorageMetrics": {"Utilized": 261, "Reserved": 20496},
}


def metadata_mock() -> Path:
    found = os.environ.get("EC2_METADATA_MOCK") or shutil.which("ec2-metadata-mock")
    if not found:
        raise AssertionError(
            "ec2-metadata-mock not found: scripts/test.sh installs it (go install "
            "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@v1.13.0)"
        )
    return Path(found)


@pytest.fixture
def imds(tmp_path: Path) -> Iterator[str]:
    config = tmp_path / "aemm.json"
    config.write_text(json.dumps(AEMM_CONFIG))
    port = free_port()
    log = (tmp_path / "aemm.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603 - a pinned tool
        [str(metadata_mock()), "-c", str(config), "-n", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
        env={**os.environ, "HOME": str(tmp_path)},
    )
    endpoint = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"ec2-metadata-mock exited: {(tmp_path / 'aemm.log').read_text()}")
        request = urllib.request.Request(f"{endpoint}/latest/api/token", method="PUT")  # noqa: S310
        request.add_header("X-aws-ec2-metadata-token-ttl-seconds", "60")
        try:
            with urllib.request.urlopen(request, timeout=1) as response:  # noqa: S310 - local
                return bool(response.status == 200)
        except OSError:
            return False

    try:
        wait_for(answers, 30, "ec2-metadata-mock to answer")
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


class _TaskMetadata(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        if self.path != "/v4/abc123/task":
            self.send_error(404)
            return
        body = json.dumps(ECS_TASK).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def task_metadata() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _TaskMetadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v4/abc123"
    finally:
        server.shutdown()
        server.server_close()


def priced_agent(sink: OtlpSink, collector: Start, node_facts: dict[str, Any]) -> Collector:
    config = base_config(
        sink.port,
        processor={
            "plugin": "spancost.cost",
            "timeout": "2s",
            "config": {"node_facts": node_facts},
        },
    )
    return collector(config)


def send_service_span(agent: Collector, sink: OtlpSink) -> dict[str, Any]:
    start = time.time_ns() - SECONDS * 1_000_000_000
    request = trace_service_pb2.ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.add(key="service.name", value=any_value("batch"))
    rs.scope_spans.add().spans.append(
        trace_pb2.Span(
            trace_id=os.urandom(16),
            span_id=os.urandom(8),
            name="job",
            kind=trace_pb2.Span.SPAN_KIND_SERVER,
            start_time_unix_nano=start,
            end_time_unix_nano=start + SECONDS * 1_000_000_000,
        )
    )
    raw = RawClient(agent.grpc_endpoint)
    try:
        raw.export(request)
    finally:
        raw.close()
    sink.wait_spans(1, timeout=30)
    ((_, _, span),) = sink.spans()
    return attrs(span.attributes)


def test_an_ec2_instance_prices_its_spans(imds: str, sink: OtlpSink, collector: Start) -> None:
    agent = priced_agent(sink, collector, {"ec2_metadata": {"endpoint": imds}})
    span = send_service_span(agent, sink)
    assert span["cost.instance_type"] == "c6g.large"
    assert span["cost.model"] == "ec2.spot.duration"  # instance-life-cycle: spot
    assert float(span["cost.usd"]) * 3600 / SECONDS == pytest.approx(
        C6G_LARGE * (1 - SPOT_DISCOUNT), rel=1e-9
    )


def test_a_fargate_task_prices_its_spans(
    task_metadata: str, sink: OtlpSink, collector: Start
) -> None:
    agent = priced_agent(sink, collector, {"ecs_metadata": {"endpoint": task_metadata}})
    span = send_service_span(agent, sink)
    assert span["cost.instance_type"] == "fargate/x86_64/0.25vCPU/0.5GB"
    assert span["cost.model"] == "fargate.vcpu_memory.duration"
    hourly = 0.25 * FARGATE_VCPU_HOUR + 0.5 * FARGATE_GB_HOUR
    assert float(span["cost.usd"]) * 3600 / SECONDS == pytest.approx(hourly, rel=1e-9)


def test_no_instance_metadata_leaves_spans_to_their_own_attributes(
    sink: OtlpSink, collector: Start
) -> None:
    """Not on EC2 (nothing listens): the collector starts, says so, and prices as before."""
    agent = priced_agent(
        sink,
        collector,
        {"ec2_metadata": {"endpoint": f"http://127.0.0.1:{free_port()}", "timeout": "200ms"}},
    )
    span = send_service_span(agent, sink)
    assert span["cost.unpriced_reason"] == "no_resource_info"
    assert "node facts: ec2_metadata" in agent.log()


def test_an_ec2_host_allocates_its_bill_to_what_it_served(
    imds: str, sink: OtlpSink, collector: Start, tmp_path: Path
) -> None:
    """Outside Kubernetes the instance is the node and the host its one pod: the totals
    sink reports the instance's running time (priced by its metadata: a spot c6g.large)
    and the spans that name no pod are the host's busy time."""
    database = tmp_path / "totals.db"
    config = totals_config(sink.port, socket_dir() / "s.sock", f"sqlite:///{database}")
    config["processors"]["python/cost"]["config"] = {
        "node_facts": {"ec2_metadata": {"endpoint": imds}}
    }
    totals = config["extensions"]["python"]["sinks"]["totals"]["config"]
    totals["maintenance_interval"] = "300ms"
    totals["allocation"] = {"node_facts": {"ec2_metadata": {"endpoint": imds}}}
    agent = collector(config)
    span = send_service_span(agent, sink)
    assert span["cost.model"] == "ec2.spot.duration"
    url = ["--database-url", f"sqlite://{database}", "--since", "2h"]

    def allocated() -> bool:
        document = spancost_json("report", *url)
        return bool(document["allocation"] and document["allocation"]["transactions"])

    wait_for(allocated, 30, "the host's usage reported and the span allocated")
    time.sleep(0.5)
    agent.stop()
    lines = spancost_json("report", *url, "--reconcile")
    assert {line["node"] for line in lines} == {"i-0123456789abcdef0"}
    for line in lines:
        assert line["bill"] > 0
        assert line["difference"] == pytest.approx(0.0, abs=1e-12)
    allocation = spancost_json("report", *url)["allocation"]
    (job,) = allocation["transactions"]
    assert job["name"] == "job" and job["requests"] == 1
    # The host pod reserves the whole instance: no idle. The hour of the span goes to
    # its transaction; an earlier hour of the instance (it has run since 2019, says the
    # mock's pendingTime) served nothing traced: the host, untraced.
    assert allocation["idle"]["cost"] == pytest.approx(0.0, abs=1e-15)
    untraced = allocation["untraced"]
    assert [item["name"] for item in untraced] in ([], ["Host/i-0123456789abcdef0"])
    total = job["compute"] + sum(item["cost"] for item in untraced)
    assert total == pytest.approx(allocation["bill"], rel=1e-9)
    this_hour = [line for line in lines if line["hour"] == max(line["hour"] for line in lines)]
    assert job["compute"] == pytest.approx(this_hour[0]["bill"], rel=1e-9)


def spancost_json(*args: str) -> Any:
    result = subprocess.run(  # noqa: S603 - our own CLI
        [str(ROOT / ".venv" / "bin" / "spancost"), *args, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
