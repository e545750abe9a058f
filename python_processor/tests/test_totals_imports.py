"""The pure core stays pure: the vocabulary, the totals core, the pricing core and the guard's
policy import no gRPC, database, AWS, Kubernetes or network client; and no layer below the
plugins imports a plugin."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

FORBIDDEN = ("grpc", "psycopg", "psycopg_pool", "boto3", "botocore", "kubernetes", "sqlite3")

_PROBE = """
import json, sys
for module in sys.argv[1:]:
    __import__(module)
print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})))
"""


def loaded_after_importing(*modules: str) -> set[str]:
    """Top-level packages loaded by a fresh interpreter that imports `modules`."""
    result = subprocess.run(
        [sys.executable, "-c", _PROBE, *modules],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return set(json.loads(result.stdout))


@pytest.mark.parametrize(
    "modules",
    [
        ("spancost.totals", "spancost.totals.aggregate", "spancost.totals.naming"),
        ("spancost.totals.otlp",),
        ("spancost.allocation.core", "spancost.allocation.usage", "spancost.store.busy"),
    ],
)
def test_no_io_client_is_imported(modules: tuple[str, ...]) -> None:
    loaded = loaded_after_importing(*modules)
    assert "spancost" in loaded
    assert loaded.isdisjoint(FORBIDDEN), sorted(loaded.intersection(FORBIDDEN))


def test_the_core_does_not_even_need_protobuf() -> None:
    loaded = loaded_after_importing("spancost.totals")
    assert "google" not in loaded
    assert "opentelemetry" not in loaded


_SPANCOST_PROBE = """
import json, sys
for module in sys.argv[1:]:
    __import__(module)
print(json.dumps(sorted(name for name in sys.modules if name.startswith("spancost."))))
"""


def spancost_modules_after_importing(*modules: str) -> list[str]:
    """The spancost modules a fresh interpreter that imports `modules` has loaded."""
    result = subprocess.run(
        [sys.executable, "-c", _SPANCOST_PROBE, *modules],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    loaded: list[str] = json.loads(result.stdout)
    return loaded


@pytest.mark.parametrize(
    "module",
    [
        "spancost.totals.otlp",
        "spancost.pricing.compute",
        "spancost.pricing.llm",
        "spancost.pricing.decision",
        "spancost.facts.source",
        "spancost.allocation.reporter",
        "spancost.demo",
    ],
)
def test_the_layers_below_the_plugins_import_no_plugin(module: str) -> None:
    """Their words come from the bottom of the house (spancost.vocabulary), not from a
    plugin above them."""
    loaded = spancost_modules_after_importing(module)
    assert "spancost.vocabulary" in loaded
    assert not [name for name in loaded if name.startswith("spancost.plugins")], loaded


NETWORK = ("ssl", "http", "urllib3", "requests", "httpx")
"""What a module that talks to the network brings in (beside the I/O clients above)."""


@pytest.mark.parametrize(
    "module",
    [
        "spancost.pricing.model",
        "spancost.pricing.compute",
        "spancost.pricing.rules",
        "spancost.pricing.fx",
        "spancost.pricing.aws_products",
        "spancost.pricing.facts",
        "spancost.pricing.llm",  # genai-prices (and its updater's httpx) wait in llm_genai
        "spancost.pricing.decision",
        "spancost.pricing.schedule",
        "spancost.pricing.refresher",
        "spancost.pricing.live_cache",
        "spancost.allocation.pricing",
        "spancost.guard.policy",
        "spancost.guard.budgets",
    ],
)
def test_the_pricing_core_and_the_guards_policy_reach_no_network(module: str) -> None:
    """The sources (the AWS clients, the FX fetch, the LLM price library's updater) are
    apart: the pure core of pricing, what the live sources share (their schedule, the
    refresher thread and the live cache, each handed its fetch), and the guard's policy
    and its inputs load none of them, nor a database or Kubernetes client."""
    loaded = loaded_after_importing(module)
    assert loaded.isdisjoint(FORBIDDEN + NETWORK), sorted(loaded & {*FORBIDDEN, *NETWORK})


def test_the_pricing_decision_reads_spans_without_protobuf() -> None:
    """It takes plain values and reads spans by their fields, so it needs no protobuf."""
    loaded = loaded_after_importing("spancost.pricing.decision")
    assert loaded.isdisjoint((*FORBIDDEN, "google", "opentelemetry")), sorted(loaded)


VOCABULARY = (
    "spancost.vocabulary",
    "spancost.vocabulary.keys",
    "spancost.vocabulary.limits",
    "spancost.vocabulary.otlp",
)


def test_the_vocabulary_is_at_the_bottom_of_the_house() -> None:
    """Every layer imports it, the pure cores included: it loads no I/O client, no
    protobuf (nor the semantic conventions' package), and nothing else of spancost."""
    loaded = loaded_after_importing(*VOCABULARY)
    assert loaded.isdisjoint((*FORBIDDEN, "google", "opentelemetry")), sorted(loaded)
    assert spancost_modules_after_importing(*VOCABULARY) == sorted(VOCABULARY)
