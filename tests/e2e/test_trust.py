"""Between tiers, trust is explicit and authenticated: a gateway keeps the prices a
spancost agent put on its spans only when they came through a receiver that
authenticates its senders (the stock bearertokenauth extension), as configs/gateway.yaml
does; everyone else's cost.* is removed and priced anew.

Real collector, sidecar, totals sink and PostgreSQL, as in test_integrity.py.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import psycopg
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2_grpc

from tests.e2e.harness import Collector, OtlpSink, free_port
from tests.e2e.test_integrity import EC2, cost_values, export, forged_span, stored_traces
from tests.e2e.totals import new_database, pg, socket_dir, totals_config

Start = Callable[..., Collector]
TOKEN = "agents-only-0123456789"  # noqa: S105 - a test token


@pytest.fixture(scope="module")
def postgres() -> Iterator[Any]:
    with pg.running_postgres() as server:
        yield server


def gateway_config(sink_port: int, url: str, token_file: Path) -> dict[str, Any]:
    """configs/gateway.yaml's shape: applications on otlp (priced here), agents on
    otlp/agents (bearer token, their prices kept), both into the totals sink."""
    config = totals_config(sink_port, socket_dir() / "g.sock", url)
    config["extensions"]["bearertokenauth/agents"] = {"filename": str(token_file)}
    config["service"]["extensions"].append("bearertokenauth/agents")
    config["receivers"]["otlp/agents"] = {
        "protocols": {
            "grpc": {
                "endpoint": f"127.0.0.1:{free_port()}",
                "auth": {"authenticator": "bearertokenauth/agents"},
            }
        }
    }
    config["processors"]["python/upstream"] = {
        "extension": "python",
        "plugin": "spancost.cost",
        "timeout": "2s",
        "config": {"trust_upstream": True},
    }
    pipelines = config["service"]["pipelines"]
    pipelines["traces/agents"] = {
        "receivers": ["otlp/agents"],
        "processors": ["python/upstream"],
        "exporters": list(pipelines["traces"]["exporters"]),
    }
    return config


def agents_endpoint(config: dict[str, Any]) -> str:
    return str(config["receivers"]["otlp/agents"]["protocols"]["grpc"]["endpoint"])


def send(endpoint: str, request: Any, token: str | None) -> None:
    with grpc.insecure_channel(endpoint) as channel:
        stub = trace_service_pb2_grpc.TraceServiceStub(channel)
        metadata = [("authorization", f"Bearer {token}")] if token is not None else []
        stub.Export(request, metadata=metadata, timeout=10)


def test_only_an_authenticated_agent_hands_the_gateway_a_price(
    postgres: Any, sink: OtlpSink, collector: Start, tmp_path: Path
) -> None:
    url = new_database(postgres)
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    config = gateway_config(sink.port, url, token_file)
    c = collector(config)

    agent_priced = forged_span(1)  # an agent's price: 5,000 USD, say
    send(agents_endpoint(config), export(EC2, [agent_priced]), TOKEN)
    for token in (None, "guessed"):
        with pytest.raises(grpc.RpcError) as refused:
            send(agents_endpoint(config), export(EC2, [forged_span(1)]), token)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED
    application = forged_span(1)  # the same claim from an application: not a price
    send(c.grpc_endpoint, export(EC2, [application]), None)

    got = {span.span_id: span for _rs, _ss, span in sink.wait_spans(2)}
    assert set(got) == {agent_priced.span_id, application.span_id}, "the refused never arrive"
    assert cost_values(got[agent_priced.span_id]) == [5000.0]
    m5_large_second = 0.096 / 3600
    assert cost_values(got[application.span_id]) == [pytest.approx(m5_large_second * 0.2)]
    rows = stored_traces(url, 2)
    assert rows[agent_priced.trace_id.hex()] == (5000.0, 1, 0)
    assert rows[application.trace_id.hex()][0] == pytest.approx(m5_large_second * 0.2)
    with psycopg.connect(url) as connection:
        assert connection.execute("SELECT count(*) FROM traces").fetchone() == (2,)


def test_trusting_upstream_prices_behind_an_open_receiver_is_refused(
    postgres: Any, sink: OtlpSink, collector: Start, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    config = gateway_config(sink.port, new_database(postgres), token_file)
    del config["receivers"]["otlp/agents"]["protocols"]["grpc"]["auth"]
    c = collector(config, wait=False)
    assert c.wait_exit() != 0
    assert (
        "processors::python/upstream: its plugin keeps the cost.usd an upstream collector set"
        ' (trust_upstream), but on service::pipelines::traces/agents the receiver "otlp/agents"'
        " does not authenticate its senders"
    ) in c.log()
