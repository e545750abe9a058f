"""LLM calls priced by tokens with genai-prices' bundled data (allocation model ``usage``).

``usd = genai_prices(model, provider, input, output, cache read, cache write tokens)``

Only genai-prices' data snapshot shipped with the installed package is used:
this module never starts `genai_prices.UpdatePrices` (the only part of the
library that fetches), so pricing a span never touches the network, and
``cost.price_as_of`` is the library's version (``genai-prices 0.2.3``).

Loaded when first needed (issue 15): this module imports no genai-prices, so the
attribute keys (`LLM_KEYS`) and the token counts (`token_usage`) cost the sidecar
nothing, and a `LlmPricer` imports the library and loads its data snapshot
(`spancost.pricing.llm_genai`; about 7.5 MiB of the sidecar's RSS, about 0.1 s on a
2-core machine) when it first looks a model up, that is on the first span with token
usage and a model name. That span's batch pays the load; later ones do not. One load per process,
under a lock, however many RPC threads price at once; it is logged at INFO with
the time it took.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from importlib import metadata
from typing import TYPE_CHECKING, Final

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

if TYPE_CHECKING:
    from genai_prices.data_snapshot import DataSnapshot
    from genai_prices.types import ModelInfo

    from spancost.pricing.llm_genai import GenaiPrices

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
# From the installed distribution's metadata: the same as genai_prices.__version__,
# without importing the library.
AS_OF: Final = f"genai-prices {metadata.version('genai-prices')}"

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

_UNKNOWN_MODEL: Final = Unpriced("unknown_model")
_BAD: Final = Unpriced("bad_attribute")
_DATA_MODULE: Final = "genai_prices.data"  # what the bundled snapshot loads
_LOAD_LOCK: Final = threading.Lock()
"""Held while a pricer loads genai-prices: concurrent first spans load it once."""


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


class LlmPricer:
    """Prices token usage with genai-prices' bundled snapshot (or `snapshot`); safe to
    share across threads.

    genai-prices is imported, and its bundled snapshot loaded, by the first `price`
    that looks a model up (see the module docstring), not here.
    """

    def __init__(
        self,
        snapshot: DataSnapshot | None = None,
        *,
        clock: Callable[[], datetime],
    ) -> None:
        """`clock`: the time a span without a start time is priced at (the plugin's;
        passed in, so that this stays arithmetic on its inputs)."""
        self._clock = clock
        self._snapshot = snapshot
        self._prices: GenaiPrices | None = None

    def price(
        self, values: Mapping[str, Value], usage: TokenUsage, start_ns: int = 0
    ) -> Priced | Unpriced:
        """The price of `usage` for the model the span names (response model first)."""
        provider = _text(values.get(GEN_AI_PROVIDER_NAME)) or _text(values.get(GEN_AI_SYSTEM))
        prices = self._prices
        model: ModelInfo | None = None
        for key in (GEN_AI_RESPONSE_MODEL, GEN_AI_REQUEST_MODEL):
            value = values.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                return _BAD
            reference = value.strip()
            if reference:
                if prices is None:
                    prices = self._load()
                model = prices.model(provider, reference)
                if model is not None:
                    break
        if model is None or prices is None:
            return _UNKNOWN_MODEL
        try:
            usd = prices.usd(model, usage, start_ns, self._clock)
        except Exception:  # odd usage or data never fails a batch
            logger.debug("genai-prices refused usage %r for %s", usage, model.id, exc_info=True)
            return _BAD
        if not 0.0 <= usd < float("inf"):
            return _BAD
        return Priced(usd, SOURCE, MODEL, AS_OF)

    def _load(self) -> GenaiPrices:
        with _LOAD_LOCK:
            if self._prices is None:
                self._prices = _load_prices(self._snapshot)
            return self._prices


def _load_prices(snapshot: DataSnapshot | None) -> GenaiPrices:
    """genai-prices, imported now, over `snapshot` or its bundled one; under _LOAD_LOCK.
    Logs the first load of the bundled data in the process."""
    started = time.perf_counter()
    loading = snapshot is None and _DATA_MODULE not in sys.modules
    from spancost.pricing.llm_genai import GenaiPrices  # noqa: PLC0415 - on first use (issue 15)

    prices = GenaiPrices(snapshot)
    if loading:
        logger.info(
            "LLM prices: %s and its bundled data loaded in %.0f ms, for the first span "
            "priced by tokens",
            AS_OF,
            (time.perf_counter() - started) * 1e3,
        )
    return prices


def _text(value: Value | None) -> str | None:
    if isinstance(value, str):
        text = value.strip()
        return text or None
    return None
