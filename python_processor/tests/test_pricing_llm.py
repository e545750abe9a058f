"""LLM token pricing: the same numbers as genai-prices, bad usage refused, no network."""

from __future__ import annotations

import random
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

import genai_prices
import pytest
from genai_prices import Usage, calc_price
from genai_prices.data import providers
from genai_prices.data_snapshot import DataSnapshot

from spancost.pricing import llm
from spancost.pricing.llm import AS_OF, LlmPricer, TokenUsage, token_usage
from spancost.pricing.model import Priced, Unpriced
from spancost.vocabulary.otlp import Value

START = datetime(2025, 6, 1, 12, tzinfo=UTC)
START_NS = int(START.timestamp()) * 10**9


@pytest.fixture(scope="module")
def pricer() -> LlmPricer:
    return LlmPricer(clock=lambda: START)


def reference(model: str, provider: str | None, usage: TokenUsage, at: datetime = START) -> float:
    result = calc_price(
        Usage(
            input_tokens=int(usage.input),
            output_tokens=int(usage.output),
            cache_read_tokens=int(usage.cache_read) or None,
            cache_write_tokens=int(usage.cache_write) or None,
        ),
        model,
        provider_id=provider,
        genai_request_timestamp=at,
    )
    return float(result.total_price)


@pytest.mark.parametrize(
    ("attributes", "model", "provider"),
    [
        ({"gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "openai"}, "gpt-4o", "openai"),
        (
            {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.system": "openai"},
            "gpt-4o-mini",
            "openai",
        ),
        (
            {
                "gen_ai.response.model": "claude-3-5-sonnet-20241022",
                "gen_ai.provider.name": "anthropic",
            },
            "claude-3-5-sonnet-20241022",
            "anthropic",
        ),
        (
            {
                "gen_ai.request.model": "anthropic.claude-3-haiku-20240307-v1:0",
                "gen_ai.provider.name": "aws.bedrock",
            },
            "anthropic.claude-3-haiku-20240307-v1:0",
            "aws",
        ),
        ({"gen_ai.request.model": "gpt-4o"}, "gpt-4o", None),  # the model names its provider
        (
            {"gen_ai.request.model": "gemini-1.5-pro", "gen_ai.system": "gcp.vertex_ai"},
            "gemini-1.5-pro",
            "google",
        ),
        (
            {"gen_ai.request.model": "deepseek-chat", "gen_ai.provider.name": "deepseek"},
            "deepseek-chat",
            "deepseek",
        ),
    ],
)
def test_matches_genai_prices(
    pricer: LlmPricer, attributes: dict[str, Value], model: str, provider: str | None
) -> None:
    rng = random.Random(model)  # test data, not secrets
    for _ in range(40):
        tokens_in = rng.randint(0, 400_000)
        cache_read = rng.randint(0, tokens_in)
        cache_write = rng.randint(0, tokens_in - cache_read) if rng.random() < 0.3 else 0
        usage = TokenUsage(tokens_in, rng.randint(0, 8_000), cache_read, cache_write)
        priced = pricer.price(attributes, usage, START_NS)
        assert isinstance(priced, Priced), (usage, priced)
        assert priced.usd == pytest.approx(reference(model, provider, usage), rel=1e-12, abs=1e-15)
        assert (priced.source, priced.model, priced.as_of) == ("genai-prices", "llm.tokens", AS_OF)


def test_known_price_of_gpt_4o(pricer: LlmPricer) -> None:
    usage = token_usage({"gen_ai.usage.input_tokens": 1000, "gen_ai.usage.output_tokens": 100})
    assert isinstance(usage, TokenUsage)
    priced = pricer.price({"gen_ai.request.model": "gpt-4o"}, usage, START_NS)
    assert isinstance(priced, Priced)
    expected = reference("gpt-4o", "openai", usage)
    assert priced.usd == pytest.approx(expected, rel=1e-12)
    assert pytest.approx(1000 * 2.5e-6 + 100 * 10e-6) == expected  # genai-prices' gpt-4o rates
    assert f"genai-prices {genai_prices.__version__}" == AS_OF


def test_prices_that_depend_on_time_follow_the_span(pricer: LlmPricer) -> None:
    """deepseek-chat has off-peak prices: the span's start time picks them."""
    usage = TokenUsage(100_000, 10_000)
    attributes: dict[str, Value] = {
        "gen_ai.request.model": "deepseek-chat",
        "gen_ai.provider.name": "deepseek",
    }
    for hour in range(0, 24, 3):
        at = datetime(2025, 3, 1, hour, 30, tzinfo=UTC)
        priced = pricer.price(attributes, usage, int(at.timestamp()) * 10**9)
        assert isinstance(priced, Priced)
        assert priced.usd == pytest.approx(
            reference("deepseek-chat", "deepseek", usage, at), rel=1e-12
        )


def test_response_model_first_then_request_model(pricer: LlmPricer) -> None:
    usage = TokenUsage(1000, 1000)
    both = pricer.price(
        {"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-mini-2024-07-18"}, usage
    )
    mini = pricer.price({"gen_ai.request.model": "gpt-4o-mini"}, usage)
    assert isinstance(both, Priced) and isinstance(mini, Priced)
    assert both.usd == pytest.approx(mini.usd)
    fallback = pricer.price(
        {"gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "our-proxy-v1"}, usage
    )
    gpt4o = pricer.price({"gen_ai.request.model": "gpt-4o"}, usage)
    assert isinstance(fallback, Priced) and isinstance(gpt4o, Priced)
    assert fallback.usd == gpt4o.usd


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"gen_ai.request.model": "our-own-model-7b"}, Unpriced("unknown_model")),
        ({"gen_ai.request.model": "  "}, Unpriced("unknown_model")),
        ({}, Unpriced("unknown_model")),
        ({"gen_ai.request.model": 4}, Unpriced("bad_attribute")),
        ({"gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "no-such-provider"}, None),
        ({"gen_ai.request.model": "gpt-4o", "gen_ai.provider.name": "anthropic"}, None),
    ],
)
def test_unknown_and_odd_models(
    pricer: LlmPricer, attributes: dict[str, Value], expected: Unpriced | None
) -> None:
    result = pricer.price(attributes, TokenUsage(10, 10))
    if expected is None:  # an unknown or wrong provider falls back to the model's own
        assert isinstance(result, Priced)
    else:
        assert result == expected


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({}, None),
        ({"gen_ai.request.model": "gpt-4o"}, None),  # no usage reported: not priced by tokens
        ({"gen_ai.usage.input_tokens": 10}, TokenUsage(10, 0)),
        ({"gen_ai.usage.output_tokens": 7.0}, TokenUsage(0, 7)),
        ({"gen_ai.usage.prompt_tokens": 3, "gen_ai.usage.completion_tokens": 4}, TokenUsage(3, 4)),
        (
            {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.cache_read.input_tokens": 60},
            TokenUsage(100, 0, 60, 0),
        ),
        (
            {"gen_ai.usage.input_tokens": 100, "gen_ai.usage.cached_tokens": 60},
            TokenUsage(100, 0, 60, 0),
        ),
        (  # reported apart from the input (Anthropic): added to it
            {
                "gen_ai.usage.input_tokens": 10,
                "gen_ai.usage.cache_read.input_tokens": 500,
                "gen_ai.usage.cache_creation.input_tokens": 40,
            },
            TokenUsage(550, 0, 500, 40),
        ),
        ({"gen_ai.usage.input_tokens": "12"}, Unpriced("bad_attribute")),
        ({"gen_ai.usage.input_tokens": -1}, Unpriced("bad_attribute")),
        ({"gen_ai.usage.input_tokens": float("nan")}, Unpriced("bad_attribute")),
        ({"gen_ai.usage.output_tokens": float("inf")}, Unpriced("bad_attribute")),
        ({"gen_ai.usage.output_tokens": True}, Unpriced("bad_attribute")),
        ({"gen_ai.usage.output_tokens": 10**13}, Unpriced("bad_attribute")),
        (  # an agent's totals repeat its calls' usage
            {"gen_ai.operation.name": "invoke_agent", "gen_ai.usage.input_tokens": 10},
            None,
        ),
    ],
)
def test_token_usage(attributes: dict[str, Value], expected: TokenUsage | Unpriced | None) -> None:
    assert token_usage(attributes) == expected


def test_tiered_prices_are_computed_by_genai_prices(pricer: LlmPricer) -> None:
    """gemini-1.5-pro costs more per token above 128k input tokens."""
    attributes: dict[str, Value] = {
        "gen_ai.request.model": "gemini-1.5-pro",
        "gen_ai.provider.name": "google",
    }
    for tokens in (1_000, 127_000, 129_000, 500_000):
        usage = TokenUsage(tokens, 1_000)
        priced = pricer.price(attributes, usage, START_NS)
        assert isinstance(priced, Priced)
        assert priced.usd == pytest.approx(reference("gemini-1.5-pro", "google", usage), rel=1e-12)


def test_never_touches_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        calls.append(args)
        raise AssertionError("network access while pricing")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    pricer = LlmPricer(clock=lambda: START)
    for model in ("gpt-4o", "claude-3-5-sonnet", "gemini-1.5-pro", "deepseek-chat", "nope"):
        pricer.price({"gen_ai.request.model": model}, TokenUsage(1000, 100), START_NS)
    assert calls == []


def test_a_given_snapshot_is_the_one_priced_with() -> None:
    """A snapshot passed in (loaded lazily, like the bundled one) replaces the bundled."""
    only_anthropic = DataSnapshot(
        providers=[p for p in providers if p.id == "anthropic"], from_auto_update=False
    )
    pricer = LlmPricer(only_anthropic, clock=lambda: START)
    usage = TokenUsage(1000, 100)
    gpt = pricer.price({"gen_ai.request.model": "gpt-4o"}, usage, START_NS)
    assert gpt == Unpriced("unknown_model")
    claude = pricer.price({"gen_ai.request.model": "claude-3-5-sonnet-20241022"}, usage, START_NS)
    assert isinstance(claude, Priced)
    assert claude.usd == pytest.approx(reference("claude-3-5-sonnet-20241022", None, usage))


def test_threads_that_price_at_once_load_genai_prices_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The first spans of several RPC threads at once: one load, every span priced."""
    loads: list[object] = []
    real = llm._load_prices

    def slow_load(snapshot: DataSnapshot | None) -> Any:
        loads.append(snapshot)
        time.sleep(0.05)  # a window for the other threads to arrive
        return real(snapshot)

    monkeypatch.setattr(llm, "_load_prices", slow_load)
    pricer = LlmPricer(clock=lambda: START)
    start = threading.Barrier(8)
    results: list[object] = []

    def price() -> None:
        start.wait()
        results.append(pricer.price({"gen_ai.request.model": "gpt-4o"}, TokenUsage(10, 10)))

    threads = [threading.Thread(target=price) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert loads == [None]
    assert len(results) == 8 and len(set(results)) == 1
    assert isinstance(results[0], Priced)
