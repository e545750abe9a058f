"""The sidecar loads the heavy optional libraries only for a config, or a span, that uses
them: the Kubernetes client (about 30 MiB of a process) for node facts from the API,
psycopg (about 12 MiB) for a PostgreSQL store, urllib3 (about 1.5 MiB) for node facts
from EC2 or ECS metadata, genai-prices and its data (about 7.5 MiB) for the first span
priced by its LLM tokens (issue 15). Checked in a fresh interpreter, since this one has
long imported them all."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

PROBE = """
import json, sys
import spancost.sidecar.server, spancost.plugins.chain, spancost.plugins.cost
import spancost.plugins.environment, spancost.plugins.totals, spancost.store.open
from spancost.plugins.totals import TotalsSink
sink = TotalsSink({"database_url": sys.argv[1]})
sink.close()
print(json.dumps(sorted(m for m in ("kubernetes", "psycopg") if m in sys.modules)))
"""


def loaded(database_url: str) -> list[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, database_url],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    names: list[str] = json.loads(result.stdout.strip().splitlines()[-1])
    return names


def test_plugins_and_a_sqlite_store_load_neither(tmp_path: object) -> None:
    assert loaded(f"sqlite://{tmp_path}/totals.db") == []


def test_a_postgresql_url_loads_psycopg() -> None:
    # Unreachable: the sink logs it and retries; psycopg was needed to try.
    assert loaded("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1") == ["psycopg"]


LOCAL_YAML = Path(__file__).parents[2] / "configs" / "local.yaml"

PLUGINS_PROBE = """
import json, logging, sys
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
import spancost.sidecar.server
from spancost.plugin import Events
from spancost.registry import load_plugin

HEAVY = ("genai_prices", "urllib3")
RESOURCE = {
    "service.name": "search",
    "deployment.environment.name": "production",
    "cloud.provider": "aws",
    "cloud.platform": "aws_eks",
    "cloud.region": "us-east-1",
    "host.type": "m5.large",
}

def value(v):
    return AnyValue(int_value=v) if isinstance(v, int) else AnyValue(string_value=v)

def batch(span_attributes):
    span = Span(
        trace_id=b"\\x01" * 16,
        span_id=b"\\x02" * 8,
        name="op",
        kind=Span.SPAN_KIND_SERVER,
        start_time_unix_nano=1_760_000_000_000_000_000,
        end_time_unix_nano=1_760_000_001_000_000_000,
        attributes=[KeyValue(key=k, value=value(v)) for k, v in span_attributes.items()],
    )
    resource = ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])
    resource.resource.attributes.extend(
        KeyValue(key=k, value=value(v)) for k, v in RESOURCE.items()
    )
    return ExportTraceServiceRequest(resource_spans=[resource])

def priced(plugin, span_attributes):
    request = batch(span_attributes)
    plugin.process(request, Events())
    (span,) = request.resource_spans[0].scope_spans[0].spans
    found = {kv.key: kv.value for kv in span.attributes}
    return {
        "source": found["cost.source"].string_value if "cost.source" in found else None,
        "usd": found["cost.usd"].double_value if "cost.usd" in found else None,
        "unpriced": found["cost.unpriced_reason"].string_value
        if "cost.unpriced_reason" in found else None,
        "loaded": [m for m in HEAVY if m in sys.modules],
    }

logging.basicConfig(level=logging.INFO, format="%(name)s %(message)s")
CALL = {
    "gen_ai.operation.name": "chat",
    "gen_ai.provider.name": "openai",
    "gen_ai.request.model": "gpt-4o",
    "gen_ai.usage.input_tokens": 1000,
    "gen_ai.usage.output_tokens": 100,
}
plugin = load_plugin("spancost.chain").factory(json.loads(sys.argv[1]))
try:
    result = {"started": [m for m in HEAVY if m in sys.modules]}
    result["plain"] = priced(plugin, {"http.route": "/search"})
    result["no_model"] = priced(plugin, {"gen_ai.usage.input_tokens": 10})
    result["llm"] = priced(plugin, CALL)
    result["again"] = priced(plugin, CALL)
finally:
    plugin.close()
print(json.dumps(result))
"""


def shipped_chain_config() -> dict[str, Any]:
    """The chain configs/local.yaml runs (environment, then cost with LLM pricing on)."""
    config: dict[str, Any] = yaml.safe_load(LOCAL_YAML.read_text())
    chain: dict[str, Any] = config["processors"]["python/spancost"]["config"]
    (cost,) = [step for step in chain["steps"] if step["plugin"] == "spancost.cost"]
    assert cost.get("config", {}).get("llm", {}).get("enabled", True)
    return chain


def test_genai_prices_and_urllib3_wait_for_a_span_that_needs_them() -> None:
    """The shipped plugins start, and price a batch without LLM calls, with neither
    genai-prices (nor its data) nor urllib3 loaded; so does a span with token usage but
    no model to look up. The first span that names one loads genai-prices (logged once,
    with the time it took) and is priced by it."""
    result = subprocess.run(
        [sys.executable, "-c", PLUGINS_PROBE, json.dumps(shipped_chain_config())],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["started"] == []
    plain = found["plain"]
    assert (plain["source"], plain["unpriced"], plain["loaded"]) == ("bundled", None, [])
    assert plain["usd"] > 0.0
    no_model = found["no_model"]
    assert (no_model["unpriced"], no_model["loaded"]) == ("unknown_model", [])
    for call in (found["llm"], found["again"]):
        assert (call["source"], call["unpriced"]) == ("genai-prices", None)
        assert call["usd"] == pytest.approx(1000 * 2.5e-6 + 100 * 10e-6)  # gpt-4o's rates
        assert call["loaded"] == ["genai_prices"]  # EC2 metadata is still not asked
    loads = [line for line in result.stderr.splitlines() if "LLM prices:" in line]
    assert len(loads) == 1, result.stderr
    assert re.fullmatch(
        r"spancost\.pricing\.llm LLM prices: genai-prices \S+ and its bundled data loaded "
        r"in \d+ ms, for the first span priced by tokens",
        loads[0],
    ), loads


def test_the_sidecar_command_loads_no_other_command() -> None:
    """``spancost sidecar`` (how the collector starts the sidecar) imports its own
    module only, not the report, demo, export, ... code it never runs."""
    probe = (
        "import json, sys, click\n"
        "from spancost.cli import cli\n"
        "command = cli.get_command(click.Context(cli), 'sidecar')\n"
        "print(json.dumps([command.name,"
        " sorted(m for m in sys.modules if m.startswith('spancost.cli.'))]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True
    )
    name, modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert name == "sidecar"
    assert modules == ["spancost.cli.options", "spancost.cli.sidecar"]
