"""Two tiers, exact: a spancost agent (configs/agent.yaml) routes every span by trace
id to one of two gateways (configs/gateway.yaml) that share one PostgreSQL; one
gateway is SIGKILLed and restarted mid-run, then the other is scaled in, and every
trace's total is still exact.

Real processes throughout: the built collector three times over (each spawning its
own sidecar), a private PostgreSQL, TLS from a throw-away CA (tests/pki.py), the
agents' bearer token. What the test changes in the shipped configs is only what a
test machine needs: free 127.0.0.1 ports and private paths, the agent's sidecar
spawned rather than a second container, no Kubernetes (k8s_attributes, node facts
and the usage-only totals sink go; the spans carry their EC2 host), and the
resolver: `static` with the two gateways' addresses instead of `k8s`, because a
real API server refuses EndpointSlices with loopback addresses (they fail its
validation), and the gateways here can listen on nothing else. Scaling in is
therefore the agent restarted with one gateway fewer in its list, its persistent
queue carried over, as a changed EndpointSlice would make the ring drop it.

What a changed route means: spans of one trace that arrive before and after the
ring changed go to two gateways. Each adds its spans to the same trace row of the
shared store, keyed by (trace id, span id), so the total is the same as if one
gateway had seen them all: the test sends the first half of many traces, scales in,
sends the second half, and checks that some traces were summed by two gateways one
after the other, and all of them exactly.
"""

from __future__ import annotations

import math
import os
import random
import signal
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
import yaml
from kubernetes import client
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc
from opentelemetry.proto.trace.v1 import trace_pb2

from tests.e2e.harness import ROOT, Collector, OtlpSink, attrs, free_port
from tests.e2e.kube import AGENT_NAMESPACE, agent_kubeconfig
from tests.e2e.raw import RawClient
from tests.e2e.totals import make_trace, new_database, pg, request, sending, socket_dir, stored
from tests.kube.harness import started_or_fail
from tests.pki import ServerCertificate, server_certificate
from tests.waiting import wait_for

Start = Callable[..., Collector]
TOKEN = "agents-0123456789abcdef"  # noqa: S105 - a test token
GATEWAY_ATTRIBUTE = "spancost.test.gateway"  # which gateway passed a span on (test only)
SERVER_NAME = "spancost-gateway.spancost.svc"  # configs/agent.yaml's default


@pytest.fixture(scope="module")
def postgres() -> Iterator[Any]:
    with pg.running_postgres() as server:
        yield server


@dataclass(frozen=True)
class Secrets:
    """What a cluster's Secrets would hold: the gateways' certificate and the agents'
    token."""

    pki: ServerCertificate
    token_file: Path


@pytest.fixture
def secrets(tmp_path: Path) -> Secrets:
    token_file = tmp_path / "agents-token"
    token_file.write_text(TOKEN + "\n")
    pki = server_certificate(tmp_path / "pki", "gateway", [f"DNS:{SERVER_NAME}"])
    return Secrets(pki, token_file)


def shipped_config(name: str) -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load((ROOT / "configs" / name).read_text())
    return config


def _merged(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    """`overlay` merged into `base` as the collector merges a second --config: maps
    key by key, anything else replaced."""
    merged = dict(base)
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _merged(merged[key], value)
        else:
            merged[key] = value
    return merged


def private_config(config: dict[str, Any], workdir: Path) -> None:
    """Free ports and private paths for what every shipped config listens on or keeps."""
    extensions = config["extensions"]
    extensions["health_check"]["endpoint"] = f"127.0.0.1:{free_port()}"
    queue = str(workdir / "queue")
    extensions["file_storage"]["directory"] = queue
    extensions["file_storage"]["compaction"]["directory"] = queue
    config["receivers"]["otlp"]["protocols"] = {"grpc": {"endpoint": f"127.0.0.1:{free_port()}"}}
    (reader,) = config["service"]["telemetry"]["metrics"]["readers"]
    reader["pull"]["exporter"]["prometheus"] = {"host": "127.0.0.1", "port": free_port()}
    for name, processor in config["processors"].items():
        if name.startswith("python/"):
            # As tests/e2e/kube.py: a first call on two busy shared cores is priced.
            processor["timeout"] = "2s"


def gateway_config(name: str, workdir: Path, secrets: Secrets) -> dict[str, Any]:
    """configs/gateway.yaml on private ports and paths; the spans it passes to the
    backend say which gateway it was (a test-only resource attribute, added after the
    totals fork, so the totals never see it)."""
    config = _merged(shipped_config("gateway.yaml"), shipped_config("tiers/gateway-tls.yaml"))
    private_config(config, workdir)
    socket = f"unix://{socket_dir() / f'{name}.sock'}"
    config["extensions"]["python"]["endpoint"] = socket
    config["exporters"]["otlp_grpc/totals"]["endpoint"] = socket
    config["extensions"]["bearertokenauth/agents"]["filename"] = str(secrets.token_file)
    agents = config["receivers"]["otlp/agents"]["protocols"]["grpc"]
    agents["endpoint"] = f"127.0.0.1:{free_port()}"
    assert agents["tls"].keys() == {"cert_file", "key_file"}  # the overlay's, here private
    agents["tls"] = {
        "cert_file": str(secrets.pki.cert_file),
        "key_file": str(secrets.pki.key_file),
    }
    config["exporters"]["prometheus/cost"]["endpoint"] = f"127.0.0.1:{free_port()}"
    config["processors"]["resource/test_gateway"] = {
        "attributes": [{"key": GATEWAY_ATTRIBUTE, "value": name, "action": "upsert"}]
    }
    config["service"]["pipelines"]["traces/backend"]["processors"] = ["resource/test_gateway"]
    return config


def agents_endpoint(gateway: Collector) -> str:
    return str(gateway.config["receivers"]["otlp/agents"]["protocols"]["grpc"]["endpoint"])


def agent_config(workdir: Path, secrets: Secrets, gateways: list[Collector]) -> dict[str, Any]:
    """configs/agent.yaml on private ports and paths, without Kubernetes (see the
    module docstring), its sidecar spawned, routing to `gateways` by a static list."""
    config = shipped_config("agent.yaml")
    private_config(config, workdir)
    python = config["extensions"]["python"]
    python["command"] = ["spancost", "sidecar"]
    python["endpoint"] = f"unix://{socket_dir() / 'agent.sock'}"
    del python["sinks"]  # usage only, from the Kubernetes API: not here
    processors = config["service"]["pipelines"]["traces"]["processors"]
    processors.remove("k8s_attributes")
    del config["processors"]["k8s_attributes"]
    (_, cost) = config["processors"]["python/spancost"]["config"]["steps"]
    del cost["config"]["node_facts"]
    config["extensions"]["bearertokenauth/gateway"]["filename"] = str(secrets.token_file)
    balancing = config["exporters"]["load_balancing"]
    balancing["protocol"]["otlp"]["tls"]["ca_file"] = str(secrets.pki.ca_file)
    balancing["resolver"] = {"static": {"hostnames": [agents_endpoint(g) for g in gateways]}}
    return config


def environment(tmp_path: Path, database_url: str, sink: OtlpSink) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if k != "DATABASE_URL"},
        "PATH": f"{ROOT / '.venv' / 'bin'}{os.pathsep}{os.environ['PATH']}",
        "SPANCOST_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "OTLP_ENDPOINT": f"127.0.0.1:{sink.port}",
        "OTLP_INSECURE": "true",
        "K8S_NODE_NAME": "node-1",
    }


class Backend:
    """What the gateways passed on, read at the test's OTLP sink: per span, its cost
    and the gateways that passed it (a span a retried batch carried twice arrives
    twice, with the same price)."""

    def __init__(self, sink: OtlpSink, *, gateways: bool = True) -> None:
        self.cost: dict[tuple[bytes, bytes], float] = {}
        self.gateways: dict[tuple[bytes, bytes], set[str]] = defaultdict(set)
        for rs, _ss, span in sink.spans():
            key = (span.trace_id, span.span_id)
            values = attrs(span.attributes)
            assert "cost.usd" in values, values  # every span priced, by the agent
            cost = float(values["cost.usd"])
            assert self.cost.setdefault(key, cost) == cost, "a span arrived with two prices"
            if gateways:
                self.gateways[key].add(attrs(rs.resource.attributes)[GATEWAY_ATTRIBUTE])

    def spans(self) -> int:
        return len(self.cost)

    def by_trace(self) -> tuple[dict[str, float], dict[str, int]]:
        costs: dict[str, list[float]] = defaultdict(list)
        for (trace, _span), cost in self.cost.items():
            costs[trace.hex()].append(cost)
        return (
            {trace: math.fsum(c) for trace, c in costs.items()},
            {trace: len(c) for trace, c in costs.items()},
        )

    def trace_gateways(self) -> dict[str, set[str]]:
        result: dict[str, set[str]] = defaultdict(set)
        for (trace, _span), names in self.gateways.items():
            result[trace.hex()] |= names
        return result


def wait_backend(sink: OtlpSink, spans: set[tuple[bytes, bytes]], timeout: float = 120) -> None:
    def arrived() -> bool:
        return spans <= {(s.trace_id, s.span_id) for _rs, _ss, s in sink.spans()}

    wait_for(arrived, timeout, f"{len(spans)} spans at the backend", interval=0.25)


def assert_exact(
    sink: OtlpSink,
    database_url: str,
    sent: set[tuple[bytes, bytes]],
    *,
    gateways: bool = True,
    answered_only: bool = True,
) -> Backend:
    """Every span sent reached the backend (once or more) and the store; each trace's
    stored total is the sum of its spans' prices, each span counted once. Without
    `answered_only`, `sent` is what the sender was answered OK for, and spans of a
    request it saw fail may have been taken too (at least once): they count wherever
    they arrived."""
    wait_backend(sink, sent)
    backend = Backend(sink, gateways=gateways)
    if answered_only:
        assert set(backend.cost) == sent, "the backend got spans nobody sent"
    else:
        assert set(backend.cost) >= sent
    cost, spans = backend.by_trace()
    wait_for(
        lambda: stored(database_url).spans >= len(backend.cost),
        90,
        f"{len(backend.cost)} spans in the totals store",
        interval=0.25,
    )
    got = stored(database_url)
    assert got.spans_by_trace == spans
    for trace, usd in cost.items():
        assert math.isclose(got.cost_by_trace[trace], usd, rel_tol=1e-9, abs_tol=1e-15), trace
    assert math.fsum(cost.values()) > 0
    return backend


def span_keys(spans: list[trace_pb2.Span]) -> set[tuple[bytes, bytes]]:
    return {(s.trace_id, s.span_id) for s in spans}


def test_traces_stay_exact_across_the_tier_while_gateways_fail_and_scale_in(
    postgres: Any, sink: OtlpSink, collector: Start, tmp_path: Path, secrets: Secrets
) -> None:
    url = new_database(postgres)
    env = environment(tmp_path, url, sink)
    gateways = [
        collector(gateway_config(name, tmp_path / name, secrets), env=env)
        for name in ("gateway-a", "gateway-b")
    ]
    agent = collector(agent_config(tmp_path / "agent", secrets, gateways), env=env)
    rng = random.Random(14)
    sent = _steady(agent, sink, rng)
    sent |= _gateway_killed(agent, gateways[1], sink=sink, sent=sent, env=env, database_url=url)
    halves = [make_trace(rng, 6) for _ in range(30)]
    sent |= _scaled_in(
        agent,
        gateways,
        halves=halves,
        sink=sink,
        sent=sent,
        agent_dir=tmp_path / "agent",
        secrets=secrets,
    )

    backend = assert_exact(sink, url, sent)
    moved = [
        trace
        for trace in halves
        if backend.trace_gateways()[trace[0].trace_id.hex()] == {"gateway-a", "gateway-b"}
    ]
    assert moved, "no trace changed gateway: the scale-in moved nothing"
    with psycopg.connect(url) as connection:
        (rows,) = connection.execute("SELECT count(*) FROM traces").fetchone() or (0,)
    assert rows == len({trace for trace, _span in sent})


def _steady(agent: Collector, sink: OtlpSink, rng: random.Random) -> set[tuple[bytes, bytes]]:
    """40 traces through the agent: both gateways get some, each trace one gateway."""
    sent: set[tuple[bytes, bytes]] = set()
    client = RawClient(agent.grpc_endpoint)
    for trace in (make_trace(rng, 4) for _ in range(40)):
        client.export(request(trace))
        sent |= span_keys(trace)
    client.close()
    wait_backend(sink, sent)
    by_gateway = Backend(sink).trace_gateways()
    assert {n for names in by_gateway.values() for n in names} == {"gateway-a", "gateway-b"}
    assert all(len(names) == 1 for names in by_gateway.values()), "one gateway per trace"
    return sent


def _gateway_killed(
    agent: Collector,
    gateway: Collector,
    *,
    sink: OtlpSink,
    sent: set[tuple[bytes, bytes]],
    env: dict[str, str],
    database_url: str,
) -> set[tuple[bytes, bytes]]:
    """`gateway` restarted cut off (its backend and database unreachable), so what it
    takes waits in its persistent queues; SIGKILLed with spans in both, while the
    traffic goes on; restarted as it was. What it had queued is sent from its queues
    once it is back; what the agent could not hand it meanwhile waited in the agent's
    queue (and went again whole: the other gateway may get some of it twice)."""
    dead = f"127.0.0.1:{free_port()}"
    gateway.stop()
    gateway.env = {
        **env,
        "OTLP_ENDPOINT": dead,
        "DATABASE_URL": database_url.replace(
            database_url.split("@")[1].split("/", maxsplit=1)[0], dead
        ),
    }
    gateway.start()

    def queued() -> bool:
        return all(
            gateway.metric("otelcol_exporter_queue_size", exporter=name) > 0
            for name in ("otlp_grpc", "otlp_grpc/totals")
        )

    with sending(agent.grpc_endpoint, seed=15, interval=0.02) as sender:
        wait_for(queued, 60, "spans queued in gateway-b for its backend and its database")
        # Killed right after it took one more request: those spans are in its queues
        # or nowhere.
        taken = gateway.metric("otelcol_receiver_accepted_spans", receiver="otlp/agents")
        wait_for(
            lambda: (
                gateway.metric("otelcol_receiver_accepted_spans", receiver="otlp/agents") > taken
            ),
            60,
            "gateway-b to take another request",
            interval=0.01,
        )
        assert gateway.proc is not None
        gateway.proc.send_signal(signal.SIGKILL)
        gateway.proc.wait(10)
        before_kill = set(sender.keys)
        wait_for(lambda: sender.sent >= len(before_kill) + 200, 60, "traffic, gateway-b down")
        while_down = set(sender.keys) - before_kill
        gateway.env = env
        gateway.start()
        restarted_at = sender.sent
        wait_for(lambda: sender.sent >= restarted_at + 200, 60, "traffic after the restart")
    assert sender.failed == 0, "the agent refused spans while a gateway was down"
    wait_backend(sink, sent | sender.keys)
    # What the agent took while gateway-b was down and hashes to gateway-b waited in
    # the agent's queue and reached the backend through gateway-b, later.
    held = [key for key in while_down if Backend(sink).gateways[key] == {"gateway-b"}]
    assert held, "no span waited for gateway-b: the kill hit nothing"
    return sender.keys


def _scaled_in(
    agent: Collector,
    gateways: list[Collector],
    *,
    halves: list[list[trace_pb2.Span]],
    sink: OtlpSink,
    sent: set[tuple[bytes, bytes]],
    agent_dir: Path,
    secrets: Secrets,
) -> set[tuple[bytes, bytes]]:
    """The first half of each trace; then gateway-b leaves the ring (the agent restarts
    with gateway-a alone, on its queue) and stops; then the second halves."""
    first = set().union(*(span_keys(trace[:3]) for trace in halves))
    client = RawClient(agent.grpc_endpoint)
    for trace in halves:
        client.export(request(trace[:3]))
    client.close()
    wait_backend(sink, sent | first)
    agent.stop()
    agent.config = agent_config(agent_dir, secrets, gateways[:1])
    agent.config_path.write_text(yaml.safe_dump(agent.config))
    agent.start()
    gateways[1].stop()
    client = RawClient(agent.grpc_endpoint)
    for trace in halves:
        client.export(request(trace[3:]))
    client.close()
    return first | set().union(*(span_keys(trace[3:]) for trace in halves))


def tls_channel(endpoint: str, pki: ServerCertificate) -> grpc.Channel:
    credentials = grpc.ssl_channel_credentials(root_certificates=pki.ca_file.read_bytes())
    options = [("grpc.ssl_target_name_override", SERVER_NAME)]
    return grpc.secure_channel(endpoint, credentials, options=options)


def priced(trace: list[trace_pb2.Span], keep: bool, usd: float) -> list[trace_pb2.Span]:
    """`trace` as an agent prices it (`usd` a span), marked for the sampler."""
    for span in trace:
        for key, value in (("cost.usd", usd), ("cost.source", "bundled")):
            any_value = span.attributes.add(key=key).value
            if isinstance(value, float):
                any_value.double_value = value
            else:
                any_value.string_value = value
        span.attributes.add(key="test.keep").value.string_value = "yes" if keep else "no"
    return trace


def test_the_gateway_samples_after_the_totals_and_refuses_strangers(
    postgres: Any, sink: OtlpSink, collector: Start, tmp_path: Path, secrets: Secrets
) -> None:
    """tail_sampling where configs/gateway.yaml puts it (traces/backend): the backend
    gets the sampled traces, the totals every trace at its full price. And port 4319
    takes nothing without the token, or over plaintext."""
    url = new_database(postgres)
    config = gateway_config("gateway-a", tmp_path / "gateway", secrets)
    config["processors"]["tail_sampling"] = {
        "decision_wait": "1s",
        "policies": [
            {
                "name": "kept",
                "type": "string_attribute",
                "string_attribute": {"key": "test.keep", "values": ["yes"]},
            }
        ],
    }
    backend = config["service"]["pipelines"]["traces/backend"]
    backend["processors"] = ["tail_sampling", *backend["processors"]]
    gateway = collector(config, env=environment(tmp_path, url, sink))
    endpoint = agents_endpoint(gateway)

    rng = random.Random(16)
    usd = 0.001
    traces = [priced(make_trace(rng, 3), keep=n % 3 == 2, usd=usd) for n in range(30)]
    with tls_channel(endpoint, secrets.pki) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        for token in (None, "guessed"):
            metadata = [("authorization", f"Bearer {token}")] if token else []
            with pytest.raises(grpc.RpcError) as refused:
                stub.Export(request(traces[0]), metadata=metadata, timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
        for trace in traces:
            stub.Export(request(trace), metadata=[("authorization", f"Bearer {TOKEN}")], timeout=10)
    with grpc.insecure_channel(endpoint) as plaintext:
        stub = trace_service_pb2_grpc.TraceServiceStub(plaintext)
        with pytest.raises(grpc.RpcError) as refused:
            stub.Export(
                request(traces[0]), metadata=[("authorization", f"Bearer {TOKEN}")], timeout=5
            )
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE

    kept = {t[0].trace_id.hex() for t in traces if attrs(t[0].attributes)["test.keep"] == "yes"}
    assert 0 < len(kept) < len(traces)
    wait_for(lambda: stored(url).spans >= 90, 60, "every span in the totals store")
    got = stored(url)
    assert got.spans_by_trace == {t[0].trace_id.hex(): 3 for t in traces}
    for trace in traces:
        assert math.isclose(got.cost_by_trace[trace[0].trace_id.hex()], 3 * usd, rel_tol=1e-9)

    # Every trace decided (the sampler counts its decisions), every kept one delivered:
    # then what reached the backend is all it will get.
    def decided(sampled: str = "") -> float:
        """Traces the sampler decided (with `sampled`, those it decided so); 0 until it
        has decided one (the series does not exist before)."""
        name = "otelcol_processor_tail_sampling_global_count_traces_sampled"
        return sum(
            value
            for series, value in gateway.metrics().items()
            if series.startswith(name + "{") and (not sampled or f'sampled="{sampled}"' in series)
        )

    wait_for(lambda: decided() >= len(traces), 30, "every trace decided")
    assert decided("true") == len(kept)
    at_backend = lambda: {s.trace_id.hex() for _rs, _ss, s in sink.spans()}  # noqa: E731
    wait_for(lambda: kept <= at_backend(), 30, "the sampled traces at the backend")
    assert at_backend() == kept


def test_the_agent_follows_the_gateways_service_through_the_api_server(
    sink: OtlpSink, collector: Start, tmp_path: Path, secrets: Secrets
) -> None:
    """The shipped resolver (``k8s``: the gateways' headless Service) as the agent's
    shipped ServiceAccount and RBAC, against a real API server: the ring holds the
    ready gateways the Service's EndpointSlice lists, drops one that stops being ready
    and one scaled in. The addresses are TEST-NET ones nothing answers on: the API
    server refuses loopback addresses in an EndpointSlice (see the module docstring),
    and the ring is built before any connection is made."""
    cluster = started_or_fail()
    try:
        kubeconfig = agent_kubeconfig(cluster, tmp_path / "kubeconfig")
        slice_name = "spancost-gateway-abcde"

        def endpoint(address: str, *, ready: bool = True) -> dict[str, Any]:
            return {"addresses": [address], "conditions": {"ready": ready}}

        body: dict[str, Any] = {
            "metadata": {
                "name": slice_name,
                "labels": {"kubernetes.io/service-name": "spancost-gateway"},
            },
            "addressType": "IPv4",
            "endpoints": [endpoint("192.0.2.10"), endpoint("192.0.2.11")],
            "ports": [{"name": "otlp-agents", "port": 4319, "protocol": "TCP"}],
        }
        with cluster.api_client() as api:
            slices = client.DiscoveryV1Api(api)
            slices.create_namespaced_endpoint_slice(AGENT_NAMESPACE, body)
            config = agent_config(tmp_path / "agent", secrets, [])
            shipped = shipped_config("agent.yaml")["exporters"]["load_balancing"]
            config["exporters"]["load_balancing"]["resolver"] = shipped["resolver"] = (
                shipped_config("agent.yaml")["exporters"]["load_balancing"]["resolver"]
            )
            env = {
                **environment(tmp_path, "", sink),
                "KUBECONFIG": str(kubeconfig),
                "SPANCOST_GATEWAY_SERVICE": f"spancost-gateway.{AGENT_NAMESPACE}",
            }
            agent = collector(config, env=env)

            def backends(count: int) -> Callable[[], bool]:
                return lambda: agent.metric("otelcol_loadbalancer_num_backends") == count

            wait_for(backends(2), 60, "the two ready gateways in the agent's ring")
            body["endpoints"] = [endpoint("192.0.2.10"), endpoint("192.0.2.11", ready=False)]
            slices.replace_namespaced_endpoint_slice(slice_name, AGENT_NAMESPACE, body)
            wait_for(backends(1), 60, "the gateway that is not ready out of the ring")
            body["endpoints"] = [endpoint("192.0.2.11"), endpoint("192.0.2.12")]
            slices.replace_namespaced_endpoint_slice(slice_name, AGENT_NAMESPACE, body)
            wait_for(backends(2), 60, "the ring to follow the Service")
            body["endpoints"] = [endpoint("192.0.2.12")]
            slices.replace_namespaced_endpoint_slice(slice_name, AGENT_NAMESPACE, body)
            wait_for(backends(1), 60, "the gateway scaled in out of the ring")
    finally:
        cluster.stop()
