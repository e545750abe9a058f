"""Currency conversion: configured rates, and a rates source served over https on 127.0.0.1
(a certificate from a throw-away CA, made with openssl)."""

from __future__ import annotations

import json
import logging
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from spancost.errors import ConfigError
from spancost.pricing.fx import (
    FxError,
    FxTable,
    convert,
    parse_rates_document,
    plausible_rates,
)

RATES = {"EUR": 0.92, "GBP": 0.79}


@dataclass
class RatesServer:
    """Serves `document` as JSON at /latest; `status` other than 200 answers an error."""

    document: Any = field(
        default_factory=lambda: {
            "base": "USD",
            "date": "2025-01-31",
            "rates": {"EUR": 0.95, "JPY": 150.0},
        }
    )
    status: int = 200
    hits: int = 0
    server: ThreadingHTTPServer | None = None
    ca_file: str = ""

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"https://127.0.0.1:{self.server.server_address[1]}/latest"

    def source(self, **settings: Any) -> dict[str, Any]:
        """The `currency.source` settings that reach this server."""
        return {"url": self.url, "ca_file": self.ca_file, **settings}


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """A throw-away CA and a certificate for 127.0.0.1 it signed: (ca, cert, key)."""
    d = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)  # noqa: S607

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=test-ca",
            "-keyout", str(d / "ca.key"), "-out", str(d / "ca.pem"))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"))  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.pem"),
            "-CAkey", str(d / "ca.key"), "-CAcreateserial", "-days", "2",
            "-extfile", str(d / "ext.cnf"), "-out", str(d / "server.pem"))  # fmt: skip
    return d / "ca.pem", d / "server.pem", d / "server.key"


@pytest.fixture(autouse=True)
def no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours proxy variables: the local server must be reached directly."""
    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
    ):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def rates_server(certificates: tuple[Path, Path, Path]) -> Iterator[RatesServer]:
    ca, cert, key = certificates
    state = RatesServer(ca_file=str(ca))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits += 1
            body = (
                state.document
                if isinstance(state.document, bytes)
                else json.dumps(state.document).encode()
            )
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    state.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    state.server.socket = context.wrap_socket(state.server.socket, server_side=True)
    thread = threading.Thread(
        target=state.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    yield state
    state.server.shutdown()
    state.server.server_close()
    thread.join(5)


def test_convert_is_pure_arithmetic() -> None:
    assert convert(10.0, "EUR", RATES) == pytest.approx(9.2)
    assert convert(10.0, "USD", RATES) == 10.0
    with pytest.raises(ConfigError, match="no exchange rate for 'CHF'"):
        convert(1.0, "CHF", RATES)


def test_table_converts_to_the_configured_currency() -> None:
    table = FxTable({"code": "EUR", "rates": RATES})
    assert table.code == "EUR"
    assert table.convert(100.0) == pytest.approx(92.0)
    assert table.convert(100.0, "GBP") == pytest.approx(79.0)
    assert table.convert(100.0, "USD") == 100.0
    assert table.rates.source == "config"


def test_default_is_usd_without_rates() -> None:
    table = FxTable(None)
    assert table.code == "USD"
    assert table.convert(1.25) == 1.25


def test_check_refuses_unknown_codes_at_start_up() -> None:
    table = FxTable({"code": "EUR", "rates": RATES})
    table.check("GBP", "budgets[0].currency")
    with pytest.raises(ConfigError) as info:
        table.check("CHF", "budgets[0].currency")
    assert info.value.key == "budgets[0].currency"


@pytest.mark.parametrize(
    ("config", "key", "message"),
    [
        ({"code": "EUR"}, "currency.code", "no rate for EUR"),
        ({"code": "EURO", "rates": RATES}, "currency.code", "ISO 4217"),
        ({"rates": {"eur": 0.9}}, "currency.rates.eur", "ISO 4217"),
        ({"rates": {"EUR": 0}}, "currency.rates.EUR", "positive number"),
        ({"rates": {"EUR": "0.9"}}, "currency.rates.EUR", "positive number"),
        ({"rates": {"EUR": True}}, "currency.rates.EUR", "positive number"),
        ({"rates": {"USD": 2}}, "currency.rates.USD", "base currency"),
        ({"rates": [1]}, "currency.rates", "must be a mapping"),
        ({"source": {"url": "file:///etc/passwd"}}, "currency.source.url", "https://"),
        ({"source": {"url": "http://fx.example/latest"}}, "currency.source.url", "https://"),
        (
            {"source": {"url": "https://x/", "max_change": 0}},
            "currency.source.max_change",
            "positive number",
        ),
        (
            {"source": {"url": "https://x/", "ca_file": "/nonexistent/ca.pem"}},
            "currency.source.ca_file",
            "no such file",
        ),
        (
            {"source": {"url": "https://x/", "refresh": "often"}},
            "currency.source.refresh",
            "duration",
        ),
        ({"source": {"refresh": "1h"}}, "currency.source.url", "is required"),
        ({"sauce": {}}, "currency.sauce", "unknown key"),
    ],
)
def test_config_errors_name_the_key(config: dict[str, Any], key: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        FxTable(config)
    assert info.value.key == key


def test_code_is_case_insensitive() -> None:
    assert FxTable({"code": "eur", "rates": RATES}).code == "EUR"


def test_parse_rates_document() -> None:
    rates = parse_rates_document(
        b'{"result": "success", "base_code": "USD", "time_last_update_utc": "Fri, 31 Jan 2025",'
        b' "rates": {"USD": 1, "EUR": 0.96, "GBP": 0.8}}',
        "test",
    )
    assert dict(rates.rates) == {"EUR": 0.96, "GBP": 0.8}
    assert rates.as_of == "Fri, 31 Jan 2025"


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (b"<html>", "not JSON"),
        (b"[]", "not a JSON object"),
        (b'{"base": "EUR", "rates": {"USD": 1.08}}', "based on 'EUR'"),
        (b'{"rates": {}}', "no 'rates'"),
        (b'{"rates": {"EUR": -1}}', "not a positive number"),
        (b'{"rates": {"USD": 2, "EUR": 1}}', "not 1"),
    ],
)
def test_parse_rates_document_refuses(document: bytes, message: str) -> None:
    with pytest.raises(FxError, match=message):
        parse_rates_document(document, "test")


def test_refresh_now_takes_the_source_rates(rates_server: RatesServer) -> None:
    table = FxTable({"code": "EUR", "rates": RATES, "source": rates_server.source()})
    assert table.refresh_now()
    assert table.convert(100.0) == pytest.approx(95.0)
    assert table.convert(100.0, "JPY") == pytest.approx(15000.0)
    assert table.convert(100.0, "GBP") == pytest.approx(79.0)  # not in the source: kept
    assert (table.rates.source, table.rates.as_of) == (rates_server.url, "2025-01-31")
    assert (table.fetches, table.failures) == (1, 0)


def test_a_failing_source_keeps_the_rates_in_use(
    rates_server: RatesServer, caplog: pytest.LogCaptureFixture
) -> None:
    table = FxTable({"code": "EUR", "rates": RATES, "source": rates_server.source(timeout="2s")})
    assert table.refresh_now()
    rates_server.status = 503
    with caplog.at_level(logging.WARNING, logger="spancost.pricing.fx"):
        assert not table.refresh_now()
    assert table.convert(100.0) == pytest.approx(95.0)
    assert table.failures == 1
    assert "keeping the rates from" in caplog.text
    rates_server.status = 200
    rates_server.document = b"not json"
    assert not table.refresh_now()
    assert table.convert(100.0) == pytest.approx(95.0)


def test_background_refresh(rates_server: RatesServer) -> None:
    table = FxTable({"code": "EUR", "rates": RATES, "source": rates_server.source(refresh="100ms")})
    assert table.convert(100.0) == pytest.approx(92.0)  # configured rates until the first fetch
    table.start()
    try:
        deadline = time.monotonic() + 5
        while table.convert(100.0) != pytest.approx(95.0):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        rates_server.document = {"base": "USD", "rates": {"EUR": 0.9}}
        while table.convert(100.0) != pytest.approx(90.0):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert table.fetches >= 2
    finally:
        table.close()


def test_unreachable_source_at_start_keeps_configured_rates() -> None:
    table = FxTable(
        {
            "code": "GBP",
            "rates": RATES,
            "source": {"url": "https://127.0.0.1:9/rates", "timeout": "1s"},
        }
    )
    assert not table.refresh_now()
    assert table.convert(100.0) == pytest.approx(79.0)


def test_no_source_no_thread() -> None:
    table = FxTable({"code": "EUR", "rates": RATES})
    table.start()
    assert not table.refresh_now()
    table.close()


def test_a_source_whose_certificate_is_not_trusted_is_not_read(
    rates_server: RatesServer,
) -> None:
    table = FxTable({"code": "EUR", "rates": RATES, "source": {"url": rates_server.url}})
    assert not table.refresh_now()  # the throw-away CA is not in the system's trust store
    assert table.failures == 1
    assert table.convert(100.0) == pytest.approx(92.0)


def test_a_rate_that_jumps_is_refused_and_the_others_taken(
    rates_server: RatesServer, caplog: pytest.LogCaptureFixture
) -> None:
    table = FxTable({"code": "EUR", "rates": RATES, "source": rates_server.source()})
    rates_server.document = {"base": "USD", "rates": {"EUR": 9.2, "GBP": 0.8, "JPY": 150.0}}
    with caplog.at_level(logging.ERROR, logger="spancost.pricing.fx"):
        assert table.refresh_now()
    assert table.convert(100.0) == pytest.approx(92.0), "EUR x10: refused, the last good kept"
    assert table.convert(100.0, "GBP") == pytest.approx(80.0)
    assert table.convert(100.0, "JPY") == pytest.approx(15000.0), "no rate before: taken"
    assert table.rejected == 1
    assert "EUR refused: 9.2" in caplog.text
    # A bound of its own; within it, the rate moves.
    wider = FxTable({"code": "EUR", "rates": RATES, "source": rates_server.source(max_change=10)})
    assert wider.refresh_now()
    assert wider.convert(100.0) == pytest.approx(920.0)


@pytest.mark.parametrize(
    ("current", "fetched", "taken", "refused"),
    [
        ({"EUR": 1.0}, {"EUR": 1.25}, {"EUR": 1.25}, {}),  # exactly the bound: taken
        ({"EUR": 1.0}, {"EUR": 0.8}, {"EUR": 0.8}, {}),  # 1 / 1.25, down
        ({"EUR": 1.0}, {"EUR": 1.2501}, {}, {"EUR": (1.0, 1.2501)}),
        ({"EUR": 1.0}, {"EUR": 0.7999}, {}, {"EUR": (1.0, 0.7999)}),
        ({}, {"XAU": 0.0004}, {"XAU": 0.0004}, {}),  # nothing to compare with
    ],
)
def test_plausible_rates(
    current: dict[str, float],
    fetched: dict[str, float],
    taken: dict[str, float],
    refused: dict[str, tuple[float, float]],
) -> None:
    assert plausible_rates(current, fetched, 0.25) == (taken, refused)
