"""A stand-in for EC2's ``DescribeSpotPriceHistory`` on 127.0.0.1, for a real boto3 client.

It serves the EC2 Query API's wire format: a POST form
(``Action=DescribeSpotPriceHistory&Version=2016-11-15&InstanceType.1=m5.large&
ProductDescription.1=Linux%2FUNIX&StartTime=...&EndTime=...&MaxResults=...&NextToken=...``)
answered with XML (``DescribeSpotPriceHistoryResponse`` / ``spotPriceHistorySet`` /
``item`` with ``instanceType``, ``productDescription``, ``spotPrice``, ``timestamp``,
``availabilityZone``; ``nextToken``) from an in-memory price history. The region is
the one the request is signed for (its SigV4 credential scope): each region has its
own endpoint. It answers what the real API does for a time window: the prices that
took effect in it, plus, per zone, instance type and product description, the last
change before its start (the price in effect then). It paginates (`page_size` items a
page; the last page carries an empty ``<nextToken/>``, as EC2's does), records every
request, can answer errors (``RequestLimitExceeded``, EC2's throttling, or a 5xx) for
the next N requests, hold requests until a test lets them go, or be stopped.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import re
import socket
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs
from xml.sax.saxutils import escape

import pytest

from tests.fake_pricelist import offline_aws_env

API_VERSION = "2016-11-15"
NAMESPACE = f"http://ec2.amazonaws.com/doc/{API_VERSION}/"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([a-z0-9-]+)/ec2/aws4_request")


@dataclass(frozen=True)
class SpotRecord:
    """One price change: from `timestamp` on, `usd` an hour in `zone`."""

    zone: str  # "us-east-1a"
    instance_type: str
    usd: float  # at most 6 decimals: the API's precision
    timestamp: dt.datetime
    product_description: str = "Linux/UNIX"

    @property
    def region(self) -> str:
        return self.zone[:-1]


@dataclass
class ReceivedRequest:
    """One request: its form fields, the region it was signed for, its headers."""

    params: dict[str, str]
    region: str
    headers: dict[str, str]

    def values(self, name: str) -> list[str]:
        """A list parameter (``InstanceType.1``, ``InstanceType.2``, ...) in order."""
        found: list[str] = []
        while f"{name}.{len(found) + 1}" in self.params:
            found.append(self.params[f"{name}.{len(found) + 1}"])
        return found


@dataclass
class _Failure:
    status: int
    code: str
    message: str


def _already_set(event: threading.Event) -> threading.Event:
    event.set()
    return event


@dataclass
class FakeEc2:
    """The fake EC2 endpoint. `url` is the endpoint_url to give boto3."""

    history: list[SpotRecord] = field(default_factory=list)
    page_size: int = 1000
    # Cleared, every request (recorded first) waits until it is set again.
    answering: threading.Event = field(default_factory=lambda: _already_set(threading.Event()))
    requests: list[ReceivedRequest] = field(default_factory=list)
    _failures: list[_Failure] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _connections: list[socket.socket] = field(default_factory=list)
    _server: ThreadingHTTPServer | None = None
    _thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeEc2:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: open (keep-alive) connections are cut, new ones refused."""
        self.answering.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        with self._lock:
            connections, self._connections = self._connections, []
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(5)

    def fail_next(self, count: int, status: int, code: str, message: str) -> None:
        """Answer the next `count` requests with this EC2 error instead."""
        with self._lock:
            self._failures.extend(_Failure(status, code, message) for _ in range(count))

    def throttle_next(self, count: int) -> None:
        self.fail_next(count, 503, "RequestLimitExceeded", "Request limit exceeded.")

    def server_error_next(self, count: int, status: int = 500) -> None:
        code = "InternalError" if status == 500 else "Unavailable"
        self.fail_next(count, status, code, "An internal error has occurred")

    def add(self, *records: SpotRecord) -> None:
        with self._lock:
            self.history.extend(records)

    def spot_requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return list(self.requests)

    # -- request handling -------------------------------------------------------------

    def _answer(self, params: dict[str, str], headers: dict[str, str]) -> tuple[int, str]:
        scope = _SCOPE.search(headers.get("authorization", ""))
        region = scope.group(1) if scope else ""
        request = ReceivedRequest(params, region, headers)
        with self._lock:
            self.requests.append(request)
            failure = self._failures.pop(0) if self._failures else None
            history = list(self.history)
        self.answering.wait(30)  # bounded: a test that never sets it must not hang here
        if failure is not None:
            return failure.status, _error(failure.code, failure.message)
        if not headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 ") or not region:
            return 401, _error("AuthFailure", "AWS was not able to validate the credentials.")
        if params.get("Action") != "DescribeSpotPriceHistory":
            return 400, _error("InvalidAction", f"The action {params.get('Action')} is not valid")
        if params.get("Version") != API_VERSION:
            return 400, _error("InvalidParameterValue", f"unknown Version {params.get('Version')}")
        try:
            start = _time(params.get("StartTime"))
            end = _time(params.get("EndTime")) or dt.datetime.now(dt.UTC)
            offset = int(params.get("NextToken", "page:0").removeprefix("page:"))
        except ValueError as exc:
            return 400, _error("InvalidParameterValue", str(exc))
        items = _in_window(
            (r for r in history if r.region == region),
            set(request.values("InstanceType")),
            set(request.values("ProductDescription")),
            start,
            end,
        )
        size = min(int(params.get("MaxResults", "1000")), self.page_size)
        page = items[offset : offset + size]
        more = offset + size < len(items)
        return 200, _page(page, f"page:{offset + size}" if more else "")


def _in_window(
    records: Iterable[SpotRecord],
    instance_types: set[str],
    descriptions: set[str],
    start: dt.datetime | None,
    end: dt.datetime,
) -> list[SpotRecord]:
    groups: dict[tuple[str, str, str], list[SpotRecord]] = {}
    for record in records:
        if instance_types and record.instance_type not in instance_types:
            continue
        if descriptions and record.product_description not in descriptions:
            continue
        key = (record.zone, record.instance_type, record.product_description)
        groups.setdefault(key, []).append(record)
    answer: list[SpotRecord] = []
    for group in groups.values():
        group.sort(key=lambda r: r.timestamp)
        before = [r for r in group if start is not None and r.timestamp < start]
        inside = [
            r for r in group if (start is None or r.timestamp >= start) and r.timestamp <= end
        ]
        answer.extend(before[-1:] + inside)
    # Newest first, as EC2 answers.
    answer.sort(key=lambda r: r.timestamp, reverse=True)
    return answer


def _time(text: str | None) -> dt.datetime | None:
    if text is None:
        return None
    value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        raise ValueError(f"not a UTC time: {text}")
    return value


def _page(records: list[SpotRecord], next_token: str) -> str:
    items = "".join(
        "<item>"
        f"<instanceType>{escape(r.instance_type)}</instanceType>"
        f"<productDescription>{escape(r.product_description)}</productDescription>"
        f"<spotPrice>{r.usd:.6f}</spotPrice>"
        f"<timestamp>{r.timestamp.astimezone(dt.UTC):%Y-%m-%dT%H:%M:%S.000Z}</timestamp>"
        f"<availabilityZone>{escape(r.zone)}</availabilityZone>"
        "</item>"
        for r in records
    )
    token = f"<nextToken>{escape(next_token)}</nextToken>" if next_token else "<nextToken/>"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<DescribeSpotPriceHistoryResponse xmlns="{NAMESPACE}">'
        "<requestId>59dbff89-35bd-4eac-99ed-be587EXAMPLE</requestId>"
        f"<spotPriceHistorySet>{items}</spotPriceHistorySet>{token}"
        "</DescribeSpotPriceHistoryResponse>"
    )


def _error(code: str, message: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Response><Errors><Error><Code>{escape(code)}</Code>"
        f"<Message>{escape(message)}</Message></Error></Errors>"
        "<RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>"
    )


def _handler_for(fake: FakeEc2) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with fake._lock:
                fake._connections.append(self.connection)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            form = parse_qs(self.rfile.read(length).decode(), keep_blank_values=True)
            params = {name: values[-1] for name, values in form.items()}
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, body = fake._answer(params, headers)
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/xml;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(history: Iterable[SpotRecord] = (), page_size: int = 1000) -> Iterator[FakeEc2]:
    fake = FakeEc2(history=list(history), page_size=page_size).start()
    try:
        yield fake
    finally:
        fake.stop()


def offline_ec2_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """`offline_aws_env`, and no EC2 endpoint override from the environment."""
    offline_aws_env(monkeypatch)
    monkeypatch.delenv("AWS_ENDPOINT_URL_EC2", raising=False)
