"""Fetching an FX rates document over https: the network side of `spancost.pricing.fx`,
kept apart so that the FX table and what uses it (the guard's policy, the report)
import no network code unless a rates source is configured."""

from __future__ import annotations

import logging
import ssl
import time
import urllib.error
import urllib.request
from typing import Final

from spancost.pricing.fx import FxError, FxRates, FxSource, parse_rates_document

__all__ = ["fetch_rates"]

logger = logging.getLogger(__name__)

_MAX_DOCUMENT_BYTES: Final = 1 << 20


def fetch_rates(source: FxSource) -> FxRates:
    """GET the source document and read it; `FxError` on any failure."""
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked in _source
        source.url, headers={"Accept": "application/json", "User-Agent": "spancost"}
    )
    started = time.monotonic()
    context = ssl.create_default_context(cafile=source.ca_file)
    try:
        with urllib.request.urlopen(  # noqa: S310 - https only, checked in _source
            request, timeout=source.timeout, context=context
        ) as response:
            body = response.read(_MAX_DOCUMENT_BYTES + 1)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise FxError(f"{source.url}: {exc}") from exc
    if len(body) > _MAX_DOCUMENT_BYTES:
        raise FxError(f"{source.url}: document larger than {_MAX_DOCUMENT_BYTES} bytes")
    logger.debug("currency: fetched %s in %.3fs", source.url, time.monotonic() - started)
    return parse_rates_document(body, source.url)
