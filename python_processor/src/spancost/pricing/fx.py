"""Currency: US dollars → the currency reports and budgets are shown in.

Spans always carry ``cost.usd`` (and ``cost.currency: USD``); only what is
shown to people (reports, budgets) is converted, with a table of USD → X
multipliers::

    currency:
      code: EUR                       # the currency to show (default USD)
      rates: {EUR: 0.92, GBP: 0.79}   # 1 USD = 0.92 EUR
      source:                         # optional: fresher rates from a URL
        url: https://fx.example.internal/latest?base=USD
        refresh: 1h
        # ca_file: /etc/ssl/internal-ca.pem   # a private CA for the source's certificate
        # max_change: 0.25                    # a rate moving more at once is refused

The configured rates are the start and the fallback: the shown currency
must have one, so a conversion never waits for, or fails on, the network.
With a `source`, a background thread (a `spancost.pricing.refresher.Refresher`)
fetches the document every `refresh` and swaps in its rates; when a fetch fails
the rates in use stay (logged), and the next attempt comes sooner (backoff from
`refresh`/16 up to `refresh`).

Budgets act on converted numbers, so a source is trusted no further than it
must be: it is fetched only over https (its certificate checked, against
`ca_file` when given), and a fetched rate that differs from the rate in use
(the last good one, at first the configured one) by more than `max_change`
(a factor of 1.25 either way by default) is refused: that currency keeps its
rate, and the refusal is logged and counted (`rejected`). A currency that
really moved that much needs its configured rate updated, or a larger
`max_change`.

The source document is JSON with a ``rates`` object of USD → X multipliers,
the form of the common FX APIs (``{"base": "USD", "date": "2025-01-31",
"rates": {"EUR": 0.92}}``); a ``base``/``base_code`` other than USD is
refused. `convert` and `parse_rates_document` are pure; the one function that
reaches the network, `spancost.pricing.fx_fetch.fetch_rates`, lives apart and is
imported only by a table with a source.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from spancost.config import parse
from spancost.errors import ConfigError, SpancostError
from spancost.pricing.refresher import Refresher
from spancost.settings.currency import CODE_RE, DEFAULT_MAX_CHANGE, USD, CurrencySettings, is_rate

__all__ = [
    "DEFAULT_CONFIG_PATH",
    "USD",
    "FxError",
    "FxRates",
    "FxSource",
    "FxTable",
    "convert",
    "parse_rates_document",
    "plausible_rates",
]

logger = logging.getLogger(__name__)

DEFAULT_CONFIG_PATH: Final = "currency"


class FxError(SpancostError):
    """An FX rates source could not be fetched or did not hold rates."""


@dataclass(frozen=True, slots=True)
class FxRates:
    """USD → X multipliers (USD itself is 1), where they came from and as of when."""

    rates: Mapping[str, float]
    source: str  # "config" or the source URL
    as_of: str  # the document's date, or "" for configured rates


@dataclass(frozen=True, slots=True)
class FxSource:
    url: str
    refresh: float  # seconds
    timeout: float  # seconds
    max_change: float = DEFAULT_MAX_CHANGE  # a rate may move by a factor of at most 1 + max_change
    ca_file: str | None = None


def convert(usd: float, code: str, rates: Mapping[str, float]) -> float:
    """`usd` US dollars in `code`; `ConfigError` when there is no rate for `code`."""
    if code == USD:
        return usd
    rate = rates.get(code)
    if rate is None:
        raise ConfigError(
            f"{DEFAULT_CONFIG_PATH}.rates.{code}",
            f"no exchange rate for {code!r} (known: {', '.join(sorted({USD, *rates}))})",
        )
    return usd * rate


def parse_rates_document(document: bytes | str | Mapping[str, Any], source: str) -> FxRates:
    """The USD → X rates in a JSON document (``{"rates": {"EUR": 0.92}, ...}``)."""
    if isinstance(document, bytes | str):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise FxError(f"{source}: not JSON: {exc}") from exc
    if not isinstance(document, Mapping):
        raise FxError(f"{source}: not a JSON object")
    base = document.get("base", document.get("base_code", USD))
    if base != USD:
        raise FxError(f"{source}: rates are based on {base!r}; spancost needs USD-based rates")
    raw_rates = document.get("rates")
    if not isinstance(raw_rates, Mapping) or not raw_rates:
        raise FxError(f"{source}: no 'rates' object")
    rates: dict[str, float] = {}
    for code, rate in raw_rates.items():
        if not isinstance(code, str) or not CODE_RE.fullmatch(code):
            continue  # not an ISO 4217 code; some APIs add metadata here
        if not is_rate(rate):
            raise FxError(f"{source}: rates.{code} is not a positive number: {rate!r}")
        rates[code] = float(rate)
    if rates.get(USD, 1.0) != 1.0:
        raise FxError(f"{source}: rates.USD is {rates[USD]}, not 1")
    rates.pop(USD, None)
    as_of = document.get("date") or document.get("time_last_update_utc") or ""
    return FxRates(rates, source, str(as_of))


def plausible_rates(
    current: Mapping[str, float], fetched: Mapping[str, float], max_change: float
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """The `fetched` rates to take, and the refused ones as code -> (current, fetched).

    A rate is refused when it differs from the `current` one by more than a factor of
    ``1 + max_change``, up or down; a currency with no current rate is taken as it is.
    """
    bound = 1.0 + max_change
    taken: dict[str, float] = {}
    refused: dict[str, tuple[float, float]] = {}
    for code, rate in fetched.items():
        old = current.get(code)
        if old is not None and not old / bound <= rate <= old * bound:
            refused[code] = (old, rate)
        else:
            taken[code] = rate
    return taken, refused


class FxTable:
    """The rates in use, and the currency to show.

    `convert` is pure arithmetic on the current rates; it never touches the
    network. Counters: `fetches`, `failures`, `rejected` (rates refused for moving
    more than ``max_change``).
    """

    def __init__(
        self,
        config: Mapping[str, Any] | None = None,
        *,
        path: str = DEFAULT_CONFIG_PATH,
        fetch: Callable[[FxSource], FxRates] | None = None,
    ) -> None:
        """`fetch` reads the source (default `spancost.pricing.fx_fetch.fetch_rates`, over
        https, imported only for a table that has a source)."""
        settings = parse(CurrencySettings, {} if config is None else config, path)
        rates = {code: rate for code, rate in settings.rates.items() if code != USD}
        self.code = settings.currency
        source = settings.source
        self.source = (
            None
            if source is None
            else FxSource(
                url=source.url,
                refresh=source.refresh,
                timeout=source.timeout,
                max_change=source.max_change,
                ca_file=source.ca_file or None,
            )
        )
        self._rates = FxRates(rates, "config", "")
        self.rejected = 0
        self._lock = threading.Lock()
        self._refresher = (
            None
            if self.source is None
            else Refresher(
                fetch=fetch if fetch is not None else _fetch_over_https,
                on_success=self._take,
                on_failure=self._keep,
                interval=self.source.refresh,
                name="currency",
                describe=lambda source: f"rates from {source.url}",
                expected_errors=(FxError,),
                logger=logger,
                thread_name="spancost-fx",
            )
        )

    @property
    def rates(self) -> FxRates:
        """The rates in use now (an immutable snapshot)."""
        return self._rates

    def check(self, code: str, key: str) -> None:
        """`ConfigError` at `key` unless `code` can be converted to (call at start-up)."""
        if code != USD and code not in self._rates.rates:
            raise ConfigError(key, f"no exchange rate for {code!r}; add currency.rates.{code}")

    def convert(self, usd: float, code: str | None = None) -> float:
        """`usd` in `code` (default: the configured currency)."""
        return convert(usd, self.code if code is None else code, self._rates.rates)

    # -- the optional source ----------------------------------------------------------

    @property
    def fetches(self) -> int:
        return 0 if self._refresher is None else self._refresher.fetches

    @property
    def failures(self) -> int:
        return 0 if self._refresher is None else self._refresher.failures

    def refresh_now(self) -> bool:
        """Fetch the source once, now (blocking); False (logged) when it failed or there is none."""
        if self._refresher is None or self.source is None:
            return False
        return self._refresher.fetch_now(self.source)

    def start(self) -> None:
        """Refresh from the source in a background thread (no-op without a source)."""
        if self._refresher is not None and self.source is not None:
            self._refresher.follow(self.source)

    def close(self) -> None:
        if self._refresher is not None and self.source is not None:
            self._refresher.close(self.source.timeout)

    def _take(self, source: FxSource, fetched: FxRates, _failures: int) -> dict[FxSource, float]:
        """Swap in the fetched rates, but for those that moved more than `max_change`."""
        taken, refused = plausible_rates(self._rates.rates, fetched.rates, source.max_change)
        for code, (old, new) in sorted(refused.items()):
            logger.error(
                "currency: %s refused: %s from %s is more than a factor of %.2f away from the"
                " rate in use, %s (from %s); keeping it. Update currency.rates.%s, or raise"
                " currency.source.max_change, if the currency really moved that much",
                code,
                new,
                fetched.source,
                1 + source.max_change,
                old,
                self._rates.source,
                code,
            )
        with self._lock:
            self.rejected += len(refused)
        # Codes the source lacks, or whose rate was refused, keep their previous rate.
        self._rates = FxRates({**self._rates.rates, **taken}, fetched.source, fetched.as_of)
        logger.info(
            "currency: %d rates from %s as of %s",
            len(taken),
            fetched.source,
            fetched.as_of or "?",
        )
        return {source: source.refresh}

    def _keep(self, _source: FxSource, exc: Exception, _failures: int) -> None:
        logger.warning(
            "currency: fetching rates failed: %s; keeping the rates from %s%s",
            exc,
            self._rates.source,
            f" as of {self._rates.as_of}" if self._rates.as_of else "",
        )


def _fetch_over_https(source: FxSource) -> FxRates:
    from spancost.pricing.fx_fetch import fetch_rates  # noqa: PLC0415 - the network, apart

    return fetch_rates(source)
