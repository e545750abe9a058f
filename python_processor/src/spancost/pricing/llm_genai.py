"""The part of LLM pricing that is genai-prices: its model lookup and its price arithmetic.

Imported by `spancost.pricing.llm.LlmPricer` when it first looks a model up, never at
the sidecar's start (issue 15): genai-prices and its bundled data snapshot (with the
httpx that ``genai_prices.update_prices`` imports) add about 7.5 MiB to the sidecar's
RSS and take about 0.1 s to load, and a sidecar that never sees a span with token
usage never needs them. Nothing else imports
this module; the attribute keys and the token counts (`spancost.pricing.llm`) need no
genai-prices.

Speed: genai-prices computes in `Decimal` (~80 µs a call). For a model whose price is
linear in the token counts (no tiers), the per-token rates are derived once from
genai-prices itself and cached, so a span costs a few multiplications; tiered prices
(e.g. above 200k input tokens) are computed by genai-prices for every span.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Final

from genai_prices import Usage, data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices

if TYPE_CHECKING:
    from spancost.pricing.llm import TokenUsage

__all__ = ["PROVIDER_IDS", "GenaiPrices"]

# gen_ai.provider.name / gen_ai.system values → genai-prices provider ids.
PROVIDER_IDS: Final[Mapping[str, str]] = {
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "az.ai.openai": "azure",
    "az.ai.inference": "azure",
    "gcp.vertex_ai": "google",
    "gcp.gemini": "google",
    "gcp.gen_ai": "google",
    "vertex_ai": "google",
    "gemini": "google",
    "mistral_ai": "mistral",
    "x_ai": "x-ai",
    "xai": "x-ai",
}

_PROBE: Final = 1_000_000
_CACHE_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True)
class _Linear:
    """usd = base + sum(rate * tokens): genai-prices' price of a model without tiers."""

    base: float
    uncached_input: float
    output: float
    cache_read: float
    cache_write: float


class GenaiPrices:
    """genai-prices' `snapshot` (default: the one bundled with the installed package,
    loaded now), its models looked up and priced; safe to share across threads."""

    def __init__(self, snapshot: data_snapshot.DataSnapshot | None = None) -> None:
        self._snapshot = snapshot if snapshot is not None else data_snapshot.get_snapshot()
        self._models: dict[tuple[str | None, str], ModelInfo | None] = {}
        self._linear: dict[int, tuple[ModelPrice, _Linear | None]] = {}
        self._lock = threading.Lock()

    def model(self, provider: str | None, reference: str) -> ModelInfo | None:
        """The model `reference` names, at `provider` if it has it, else at the provider
        whose models match it; None if none does."""
        key = (provider, reference.casefold())
        try:
            return self._models[key]
        except KeyError:
            pass
        model = self._find(provider, key[1])
        if len(self._models) >= _CACHE_LIMIT:
            self._models.clear()
        self._models[key] = model
        return model

    def _find(self, provider: str | None, reference: str) -> ModelInfo | None:
        attempts: list[str | None] = []
        if provider:
            attempts.append(PROVIDER_IDS.get(provider.casefold(), provider.casefold()))
        attempts.append(None)  # the provider whose models match the reference
        for provider_id in attempts:
            try:
                _, model = self._snapshot.find_provider_model(reference, None, provider_id, None)
            except LookupError:
                continue
            return model
        return None

    def usd(
        self,
        model: ModelInfo,
        usage: TokenUsage,
        start_ns: int,
        clock: Callable[[], datetime],
    ) -> float:
        """What `usage` of `model` costs at the span's start (`clock` for a span without
        one); raises whatever genai-prices raises for usage it refuses."""
        if isinstance(model.prices, ModelPrice):
            model_price = model.prices
        else:  # prices that changed over time, or by time of day
            model_price = model.get_prices(_timestamp(start_ns, clock))
        linear = self._linear_for(model_price)
        if linear is None:
            calc = model_price.calc_price(_usage(usage))
            return float(calc["total_price"])
        return (
            linear.base
            + linear.uncached_input * (usage.input - usage.cache_read - usage.cache_write)
            + linear.cache_read * usage.cache_read
            + linear.cache_write * usage.cache_write
            + linear.output * usage.output
        )

    def _linear_for(self, model_price: ModelPrice) -> _Linear | None:
        found = self._linear.get(id(model_price))
        if found is not None and found[0] is model_price:
            return found[1]
        linear = _derive_linear(model_price)
        with self._lock:
            if len(self._linear) >= _CACHE_LIMIT:
                self._linear.clear()
            # The ModelPrice is kept in the value so that its id is never reused.
            self._linear[id(model_price)] = (model_price, linear)
        return linear


def _derive_linear(model_price: ModelPrice) -> _Linear | None:
    if any(isinstance(v, TieredPrices) for v in vars(model_price).values()):
        return None
    try:
        base = _total(model_price, Usage())
        per = Decimal(_PROBE)

        def rate(**tokens: int) -> float:
            return float((_total(model_price, Usage(**tokens)) - base) / per)

        return _Linear(
            base=float(base),
            uncached_input=rate(input_tokens=_PROBE),
            output=rate(output_tokens=_PROBE),
            cache_read=rate(input_tokens=_PROBE, cache_read_tokens=_PROBE),
            cache_write=rate(input_tokens=_PROBE, cache_write_tokens=_PROBE),
        )
    except Exception:
        # Price units this simple model does not capture: let genai-prices compute each span.
        return None


def _total(model_price: ModelPrice, usage: Usage) -> Decimal:
    return model_price.calc_price(usage)["total_price"]


def _usage(usage: TokenUsage) -> Usage:
    def whole(count: float) -> int | float:
        number = float(count)
        return int(number) if number.is_integer() else number

    return Usage(
        input_tokens=whole(usage.input),
        output_tokens=whole(usage.output),
        cache_read_tokens=whole(usage.cache_read) or None,
        cache_write_tokens=whole(usage.cache_write) or None,
    )


def _timestamp(start_ns: int, clock: Callable[[], datetime]) -> datetime:
    """When the span started, or `clock` for a span that does not say."""
    if start_ns > 0:
        try:
            return datetime.fromtimestamp(start_ns / 1e9, tz=UTC)
        except (OverflowError, OSError, ValueError):
            pass
    return clock()
