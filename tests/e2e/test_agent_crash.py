"""One tier: the shipped agent (configs/daemonset.yaml) SIGKILLed while it holds spans
loses none of what it answered OK for, neither at the backend nor in the totals.

The agent is cut off from its backend and its database, so what it takes waits in its
persistent queues; it is killed right after it took one more request (so a collector
that answered before storing, as one with a batch processor in front of its exporters
does, would lose that request); then it comes back on the same queues with both
reachable. Every span the sender was answered OK for reaches the backend and the
store, each counted once. Real collector, sidecar and PostgreSQL; no Kubernetes
(k8s_attributes, the node facts and the allocation's usage go, as in test_tiers.py:
the spans carry their EC2 host).
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from tests.e2e.harness import Collector, OtlpSink, free_port
from tests.e2e.test_tiers import (
    Start,
    assert_exact,
    environment,
    postgres,  # noqa: F401 - the module's PostgreSQL fixture
    private_config,
    shipped_config,
)
from tests.e2e.totals import new_database, sending, socket_dir
from tests.waiting import wait_for


def agent_config(workdir: Path) -> dict[str, Any]:
    """configs/daemonset.yaml on private ports and paths, its sidecar spawned, without
    Kubernetes."""
    config = shipped_config("daemonset.yaml")
    private_config(config, workdir)
    socket = f"unix://{socket_dir() / 'one-tier.sock'}"
    python = config["extensions"]["python"]
    python["command"] = ["spancost", "sidecar"]
    python["endpoint"] = config["exporters"]["otlp_grpc/totals"]["endpoint"] = socket
    del python["sinks"]["totals"]["config"]["allocation"]  # usage from the API: not here
    config["service"]["pipelines"]["traces"]["processors"].remove("k8s_attributes")
    del config["processors"]["k8s_attributes"]
    (_, cost) = config["processors"]["python/spancost"]["config"]["steps"]
    del cost["config"]["node_facts"]
    config["exporters"]["prometheus/cost"]["endpoint"] = f"127.0.0.1:{free_port()}"
    return config


def test_a_killed_agent_loses_nothing_it_answered_for(
    postgres: Any,  # noqa: F811
    sink: OtlpSink,
    collector: Start,
    tmp_path: Path,
) -> None:
    url = new_database(postgres)
    env = environment(tmp_path, url, sink)
    dead = f"127.0.0.1:{free_port()}"
    cut_off = {
        **env,
        "OTLP_ENDPOINT": dead,
        "DATABASE_URL": url.replace(urlsplit(url).netloc.split("@")[1], dead),
    }
    agent: Collector = collector(agent_config(tmp_path / "agent"), env=cut_off)

    def queued() -> bool:
        return all(
            agent.metric("otelcol_exporter_queue_size", exporter=name) > 0
            for name in ("otlp_grpc", "otlp_grpc/totals")
        )

    with sending(agent.grpc_endpoint, seed=17, interval=0.02) as sender:
        wait_for(queued, 60, "spans queued for the backend and the database")
        taken = agent.metric("otelcol_receiver_accepted_spans", receiver="otlp")
        wait_for(
            lambda: agent.metric("otelcol_receiver_accepted_spans", receiver="otlp") > taken,
            60,
            "the agent to take another request",
            interval=0.01,
        )
        assert agent.proc is not None
        agent.proc.send_signal(signal.SIGKILL)
        agent.proc.wait(10)
    assert sender.sent > 0
    agent.env = env
    agent.start()
    assert_exact(sink, url, sender.keys, gateways=False, answered_only=False)
