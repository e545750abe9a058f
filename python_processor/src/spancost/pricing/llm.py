"""LLM calls priced by tokens with genai-prices' bundled data (allocation model ``usage``).

``usd = genai_prices(model, provider, input, output, cache read, cache write tokens)``

Only genai-prices' data snapshot shipped with the installed package is used:
this module never starts `genai_prices.UpdatePrices` (the only part of the
library that fetches), so pricing a span never touches the network, and
``cost.price_as_of`` is the library's version (``genai-prices 0.2.3``).

Speed: genai-prices computes in `Decimal` (~80 µs a call). For a model whose
price is linear in the token counts (no tiers), the per-token rates are
derived once from genai-prices itself and cached, so a span costs a few
multiplications; tiered prices (e.g. above 200k input tokens) are computed by
genai-prices for every span.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Final

import genai_prices
from genai_prices import Usage, data_snapshot
from genai_prices.types import ModelInfo, ModelPrice, TieredPrices

from spancost.pricing.facts import as_count
from spancost.pricing.model import Priced, Unpriced
from spancost.vocabulary.keys import (
    GEN_AI_OPERATION_NAME,
    GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_RESPONSE_MODEL,
    GEN_AI_SYSTEM,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_FLAT,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_FLAT,
    GEN_AI_USAGE_CACHED_TOKENS,
    GEN_AI_USAGE_COMPLETION_TOKENS,
    GEN_AI_USAGE_INPUT_TOKENS,
    GEN_AI_USAGE_OUTPUT_TOKENS,
    GEN_AI_USAGE_PROMPT_TOKENS,
)
from spancost.vocabulary.limits import MAX_TOKENS
from spancost.vocabulary.otlp import Value

__all__ = [
    "AGGREGATE_OPERATIONS",
    "AS_OF",
    "LLM_KEYS",
    "MODEL",
    "SOURCE",
    "LlmPricer",
    "TokenUsage",
    "token_usage",
]

logger = logging.getLogger(__name__)

SOURCE: Final = "genai-prices"
MODEL: Final = "llm.tokens"
AS_OF: Final = f"genai-prices {genai_prices.__version__}"

# First present wins within each list.
INPUT_KEYS: Final = (GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_PROMPT_TOKENS)
OUTPUT_KEYS: Final = (GEN_AI_USAGE_OUTPUT_TOKENS, GEN_AI_USAGE_COMPLETION_TOKENS)
CACHE_READ_KEYS: Final = (
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS_FLAT,
    GEN_AI_USAGE_CACHED_TOKENS,
)
CACHE_WRITE_KEYS: Final = (
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS,
    GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS_FLAT,
)
USAGE_KEYS: Final = INPUT_KEYS + OUTPUT_KEYS + CACHE_READ_KEYS + CACHE_WRITE_KEYS
_USAGE_KEY_SET: Final = frozenset(USAGE_KEYS)
LLM_KEYS: Final = frozenset(
    (
        GEN_AI_PROVIDER_NAME,
        GEN_AI_SYSTEM,
        GEN_AI_OPERATION_NAME,
        GEN_AI_REQUEST_MODEL,
        GEN_AI_RESPONSE_MODEL,
        *USAGE_KEYS,
    )
)
"""The span attributes LLM pricing reads."""

AGGREGATE_OPERATIONS: Final = frozenset({"invoke_agent", "create_agent", "execute_tool"})
"""Operations whose token counts (if any) sum their child calls: not priced again."""

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

_UNKNOWN_MODEL: Final = Unpriced("unknown_model")
_BAD: Final = Unpriced("bad_attribute")
_PROBE: Final = 1_000_000
_CACHE_LIMIT: Final = 4096


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Token counts of one call; `input` includes the cached ones (as in genai-prices)."""

    input: float = 0.0
    output: float = 0.0
    cache_read: float = 0.0
    cache_write: float = 0.0


def _count(values: Mapping[str, Value], keys: Sequence[str]) -> float:
    """The first of `keys` present, as a count (0 if none); `ValueError` if it is not one."""
    for key in keys:
        value = values.get(key)
        if value is not None:
            return as_count(value, MAX_TOKENS) or 0.0
    return 0.0


def token_usage(values: Mapping[str, Value]) -> TokenUsage | Unpriced | None:
    """The usage a span reports: None if it reports none (not an LLM call to price).

    Counts must be integers (or finite doubles) in ``[0, 1e12]``; a string,
    boolean, NaN, negative or huge count is ``bad_attribute``. The
    semantic conventions count cached tokens inside ``input_tokens``; a
    producer that reports them apart (Anthropic's API does) shows more cached
    than input tokens, and then they are added to the input.
    """
    if _USAGE_KEY_SET.isdisjoint(values):
        return None
    operation = values.get(GEN_AI_OPERATION_NAME)
    if isinstance(operation, str) and operation.strip().casefold() in AGGREGATE_OPERATIONS:
        return None
    try:
        tokens_in = _count(values, INPUT_KEYS)
        tokens_out = _count(values, OUTPUT_KEYS)
        cache_read = _count(values, CACHE_READ_KEYS)
        cache_write = _count(values, CACHE_WRITE_KEYS)
    except ValueError:
        return _BAD
    if cache_read + cache_write > tokens_in:
        tokens_in += cache_read + cache_write
    return TokenUsage(tokens_in, tokens_out, cache_read, cache_write)


@dataclass(frozen=True, slots=True)
class _Linear:
    """usd = base + sum(rate * tokens): genai-prices' price of a model without tiers."""

    base: float
    uncached_input: float
    output: float
    cache_read: float
    cache_write: float


class LlmPricer:
    """Prices token usage with genai-prices' bundled snapshot; safe to share across threads."""

    def __init__(
        self,
        snapshot: data_snapshot.DataSnapshot | None = None,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        """`clock`: the time a span without a start time is priced at (the plugin's;
        passed in, so that this stays arithmetic on its inputs)."""
        self._clock = clock
        self._snapshot = snapshot or data_snapshot.get_snapshot()
        self._models: dict[tuple[str | None, str], ModelInfo | None] = {}
        self._linear: dict[int, tuple[ModelPrice, _Linear | None]] = {}
        self._lock = threading.Lock()

    def price(
        self, values: Mapping[str, Value], usage: TokenUsage, start_ns: int = 0
    ) -> Priced | Unpriced:
        """The price of `usage` for the model the span names (response model first)."""
        provider = _text(values.get(GEN_AI_PROVIDER_NAME)) or _text(values.get(GEN_AI_SYSTEM))
        model: ModelInfo | None = None
        for key in (GEN_AI_RESPONSE_MODEL, GEN_AI_REQUEST_MODEL):
            value = values.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                return _BAD
            reference = value.strip()
            if reference:
                model = self._model(provider, reference)
                if model is not None:
                    break
        if model is None:
            return _UNKNOWN_MODEL
        try:
            usd = self._usd(model, usage, start_ns)
        except Exception:  # odd usage or data never fails a batch
            logger.debug("genai-prices refused usage %r for %s", usage, model.id, exc_info=True)
            return _BAD
        if not 0.0 <= usd < float("inf"):
            return _BAD
        return Priced(usd, SOURCE, MODEL, AS_OF)

    def _model(self, provider: str | None, reference: str) -> ModelInfo | None:
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

    def _usd(self, model: ModelInfo, usage: TokenUsage, start_ns: int) -> float:
        if isinstance(model.prices, ModelPrice):
            model_price = model.prices
        else:  # prices that changed over time, or by time of day
            model_price = model.get_prices(_timestamp(start_ns, self._clock))
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


def _text(value: Value | None) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        return text or None
    return None
