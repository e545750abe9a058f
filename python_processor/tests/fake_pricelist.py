"""A stand-in for the AWS Price List Query API on 127.0.0.1, for a real boto3 client.

moto does not implement this service, so this serves its wire format: AWS JSON
1.1 over POST (``X-Amz-Target: AWSPriceListService.GetProducts``,
``Content-Type: application/x-amz-json-1.1``), answering
``{"FormatVersion": "aws_v1", "PriceList": ["<json>", ...], "NextToken": "..."}``
from an in-memory product list. It honours the filters (TERM_MATCH, EQUALS,
CONTAINS, ANY_OF, NONE_OF on product attributes), paginates (`page_size`
items a page, so tests see several pages), records every request, and can be
told to answer ``ThrottlingException`` or a 5xx for the next N requests, to
answer slowly, or be stopped.

The product builders (`ec2_product`, `lambda_products`, `fargate_products`)
write documents in the real schema.
"""

from __future__ import annotations

import contextlib
import copy
import json
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

TARGET_PREFIX = "AWSPriceListService."
JSON_CONTENT_TYPE = "application/x-amz-json-1.1"

# Just enough of the real tables for realistic documents.
LOCATIONS = {
    "us-east-1": "US East (N. Virginia)",
    "us-west-2": "US West (Oregon)",
    "eu-west-1": "EU (Ireland)",
    "eu-central-1": "EU (Frankfurt)",
    "ap-south-1": "Asia Pacific (Mumbai)",
}
USAGE_PREFIXES = {
    "us-east-1": "USE1-",
    "us-west-2": "USW2-",
    "eu-west-1": "EU-",
    "eu-central-1": "EUC1-",
    "ap-south-1": "APS3-",
}

Product = dict[str, Any]


@dataclass
class ReceivedRequest:
    """One request the server got: its target, its decoded JSON body and its headers."""

    target: str
    body: dict[str, Any]
    headers: dict[str, str]

    def filters(self) -> dict[str, str]:
        """The TERM_MATCH filters as field → value."""
        return {
            f["Field"]: f["Value"]
            for f in self.body.get("Filters", [])
            if f["Type"] == "TERM_MATCH"
        }


@dataclass
class _Failure:
    status: int
    error_type: str
    message: str


def _already_set(event: threading.Event) -> threading.Event:
    event.set()
    return event


@dataclass
class FakePriceList:
    """The fake Price List API. `url` is the endpoint_url to give boto3."""

    products: list[Product] = field(default_factory=list)
    page_size: int = 1
    delay: float = 0.0  # seconds before each answer
    # Cleared, every request (recorded first) waits until it is set again: a test
    # decides when the API answers.
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

    def start(self) -> FakePriceList:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop answering: open (keep-alive) connections are cut, new ones refused."""
        self.answering.set()  # let held requests finish
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

    def fail_next(
        self,
        count: int,
        status: int = 400,
        error_type: str = "ThrottlingException",
        message: str = "Rate exceeded",
    ) -> None:
        """Answer the next `count` requests with this error instead."""
        with self._lock:
            self._failures.extend(_Failure(status, error_type, message) for _ in range(count))

    def throttle_next(self, count: int) -> None:
        self.fail_next(count, 400, "ThrottlingException", "Rate exceeded")

    def server_error_next(self, count: int, status: int = 503) -> None:
        self.fail_next(count, status, "InternalErrorException", "Service unavailable")

    def get_products_requests(self) -> list[ReceivedRequest]:
        with self._lock:
            return [r for r in self.requests if r.target == TARGET_PREFIX + "GetProducts"]

    def set_price(self, match: Mapping[str, str], usd: float) -> None:
        """Change the USD price of every product whose attributes include `match`."""
        with self._lock:
            for product in self.products:
                if all(product["product"]["attributes"].get(k) == v for k, v in match.items()):
                    for term in product["terms"]["OnDemand"].values():
                        for dimension in term["priceDimensions"].values():
                            dimension["pricePerUnit"]["USD"] = f"{usd:.10f}"

    # -- request handling -------------------------------------------------------------

    def _answer(
        self, target: str, body: dict[str, Any], headers: dict[str, str]
    ) -> tuple[int, Any]:
        with self._lock:
            self.requests.append(ReceivedRequest(target, body, headers))
            failure = self._failures.pop(0) if self._failures else None
            products = [json.loads(json.dumps(p)) for p in self.products]
        self.answering.wait(30)  # bounded: a test that never sets it must not hang here
        if self.delay:
            time.sleep(self.delay)
        if failure is not None:
            return failure.status, {"__type": failure.error_type, "message": failure.message}
        if target != TARGET_PREFIX + "GetProducts":
            return 400, {"__type": "UnknownOperationException", "message": target}
        if not headers.get("authorization", "").startswith("AWS4-HMAC-SHA256 "):
            return 403, {"__type": "AccessDeniedException", "message": "request is not signed"}
        service_code = body.get("ServiceCode")
        if not isinstance(service_code, str):
            return 400, {"__type": "InvalidParameterException", "message": "ServiceCode"}
        matching = [
            p
            for p in products
            if p["serviceCode"] == service_code and _matches(p, body.get("Filters", []))
        ]
        start = 0
        if body.get("NextToken"):
            try:
                start = int(str(body["NextToken"]).removeprefix("page:"))
            except ValueError:
                return 400, {"__type": "InvalidNextTokenException", "message": "bad token"}
        size = min(int(body.get("MaxResults", 100)), self.page_size)
        page = matching[start : start + size]
        answer: dict[str, Any] = {
            "FormatVersion": "aws_v1",
            "PriceList": [json.dumps(p) for p in page],
        }
        if start + size < len(matching):
            answer["NextToken"] = f"page:{start + size}"
        return 200, answer


def _matches(product: Product, filters: Iterable[Mapping[str, str]]) -> bool:
    attributes = dict(product["product"]["attributes"])
    attributes.setdefault("productFamily", product["product"].get("productFamily", ""))
    for f in filters:
        actual = attributes.get(f["Field"])
        wanted = f["Value"]
        kind = f["Type"]
        if kind in ("TERM_MATCH", "EQUALS"):
            ok = actual == wanted
        elif kind == "CONTAINS":
            ok = actual is not None and wanted in actual
        elif kind == "ANY_OF":
            ok = actual in wanted.split(",")
        elif kind == "NONE_OF":
            ok = actual not in wanted.split(",")
        else:
            ok = False
        if not ok:
            return False
    return True


def _handler_for(fake: FakePriceList) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            with fake._lock:
                fake._connections.append(self.connection)

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            raw = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                status, answer = 400, {"__type": "SerializationException", "message": "bad json"}
            else:
                status, answer = fake._answer(headers.get("x-amz-target", ""), body, headers)
            data = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", JSON_CONTENT_TYPE)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", "00000000-0000-0000-0000-000000000000")
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    return Handler


@contextmanager
def serve(products: Iterable[Product] = (), page_size: int = 1) -> Iterator[FakePriceList]:
    fake = FakePriceList(products=copy.deepcopy(list(products)), page_size=page_size).start()
    try:
        yield fake
    finally:
        fake.stop()


def offline_aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials, no instance metadata, no config files: botocore stays on 127.0.0.1."""
    for name in (
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "AWS_ENDPOINT_URL",
        "AWS_ENDPOINT_URL_PRICING",
        "AWS_MAX_ATTEMPTS",
        "AWS_RETRY_MODE",
        "AWS_CA_BUNDLE",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSPANCOSTTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "spancost-test-secret")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/spancost-aws-config")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/spancost-aws-credentials")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


# -- products in the real schema ------------------------------------------------------------

_sku_counter = iter(range(10**6))


def _sku() -> str:
    return f"SPANCOST{next(_sku_counter):08d}"


def _on_demand(
    sku: str,
    dimensions: list[tuple[float, str, str, str, str]],
    effective_date: str,
) -> dict[str, Any]:
    """terms.OnDemand for one SKU: dimensions as (usd, unit, beginRange, endRange, description)."""
    term_code = "JRTCKXETXF"
    return {
        f"{sku}.{term_code}": {
            "priceDimensions": {
                f"{sku}.{term_code}.{rate:010d}": {
                    "unit": unit,
                    "endRange": end,
                    "description": description,
                    "appliesTo": [],
                    "rateCode": f"{sku}.{term_code}.{rate:010d}",
                    "beginRange": begin,
                    "pricePerUnit": {"USD": f"{usd:.10f}"},
                }
                for rate, (usd, unit, begin, end, description) in enumerate(dimensions)
            },
            "sku": sku,
            "effectiveDate": effective_date,
            "offerTermCode": term_code,
            "termAttributes": {},
        }
    }


def ec2_product(
    instance_type: str,
    region: str,
    usd: float,
    *,
    operating_system: str = "Linux",
    tenancy: str = "Shared",
    pre_installed_sw: str = "NA",
    capacity_status: str = "Used",
    license_model: str = "No License required",
    effective_date: str = "2024-06-01T00:00:00Z",
) -> Product:
    """An AmazonEC2 compute-instance product as GetProducts returns it (decoded)."""
    sku = _sku()
    prefix = USAGE_PREFIXES.get(region, "")
    box = "BoxUsage" if capacity_status == "Used" else "UnusedBox"
    return {
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "enhancedNetworkingSupported": "Yes",
                "memory": "16 GiB",
                "vcpu": "4",
                "capacitystatus": capacity_status,
                "locationType": "AWS Region",
                "storage": "EBS only",
                "instanceFamily": "General purpose",
                "operatingSystem": operating_system,
                "regionCode": region,
                "physicalProcessor": "Intel Skylake E5 2686 v5",
                "networkPerformance": "Up to 5 Gigabit",
                "servicename": "Amazon Elastic Compute Cloud",
                "instanceType": instance_type,
                "tenancy": tenancy,
                "usagetype": f"{prefix}{box}:{instance_type}",
                "servicecode": "AmazonEC2",
                "licenseModel": license_model,
                "currentGeneration": "Yes",
                "preInstalledSw": pre_installed_sw,
                "location": LOCATIONS.get(region, region),
                "processorArchitecture": "64-bit",
                "marketoption": "OnDemand",
                "operation": "RunInstances",
                "availabilityzone": "NA",
            },
            "sku": sku,
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": _on_demand(
                sku,
                [
                    (
                        usd,
                        "Hrs",
                        "0",
                        "Inf",
                        f"${usd} per On Demand {operating_system} {instance_type} Instance Hour",
                    )
                ],
                effective_date,
            ),
            "Reserved": {
                f"{sku}.4NA7Y494T4": {
                    "priceDimensions": {
                        f"{sku}.4NA7Y494T4.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "endRange": "Inf",
                            "description": "Linux/UNIX (Amazon VPC), reserved",
                            "appliesTo": [],
                            "rateCode": f"{sku}.4NA7Y494T4.6YS6EN2CT7",
                            "beginRange": "0",
                            "pricePerUnit": {"USD": f"{usd * 0.6:.10f}"},
                        }
                    },
                    "sku": sku,
                    "effectiveDate": effective_date,
                    "offerTermCode": "4NA7Y494T4",
                    "termAttributes": {
                        "LeaseContractLength": "1yr",
                        "OfferingClass": "standard",
                        "PurchaseOption": "No Upfront",
                    },
                }
            },
        },
        "version": "20240613183000",
        "publicationDate": "2024-06-13T18:30:00Z",
    }


def _serverless_product(
    service_code: str,
    product_family: str,
    region: str,
    *,
    usage_type: str,
    group: str,
    dimensions: list[tuple[float, str, str, str, str]],
    effective_date: str,
) -> Product:
    sku = _sku()
    return {
        "product": {
            "productFamily": product_family,
            "attributes": {
                "regionCode": region,
                "location": LOCATIONS.get(region, region),
                "locationType": "AWS Region",
                "servicecode": service_code,
                "usagetype": usage_type,
                "group": group,
                "operation": "",
            },
            "sku": sku,
        },
        "serviceCode": service_code,
        "terms": {"OnDemand": _on_demand(sku, dimensions, effective_date)},
        "version": "20240601000000",
        "publicationDate": "2024-06-01T00:00:00Z",
    }


def lambda_products(
    region: str,
    *,
    gb_second: float = 0.0000166667,
    gb_second_arm: float = 0.0000133334,
    request: float = 0.0000002,
    request_arm: float = 0.0000002,
    effective_date: str = "2024-05-01T00:00:00Z",
) -> list[Product]:
    """AWSLambda products of a region: tiered duration, requests, and decoys that must not match."""
    prefix = USAGE_PREFIXES.get(region, "")

    def tiers(first: float) -> list[tuple[float, str, str, str, str]]:
        return [
            (first, "Lambda-GB-Second", "0", "6000000000", "tier 1"),
            (first * 0.9, "Lambda-GB-Second", "6000000000", "15000000000", "tier 2"),
            (first * 0.8, "Lambda-GB-Second", "15000000000", "Inf", "tier 3"),
        ]

    def flat(usd: float, unit: str) -> list[tuple[float, str, str, str, str]]:
        return [(usd, unit, "0", "Inf", f"${usd} per {unit}")]

    def product(usage: str, group: str, dims: list[tuple[float, str, str, str, str]]) -> Product:
        return _serverless_product(
            "AWSLambda",
            "Serverless",
            region,
            usage_type=usage,
            group=group,
            dimensions=dims,
            effective_date=effective_date,
        )

    return [
        # Decoys first, so a reader that takes the first product is caught.
        product("Global-Request", "AWS-Lambda-Requests", flat(0.0, "Requests")),
        product(f"{prefix}Lambda-Edge-Request", "AWS-Lambda-Edge-Requests", flat(6e-7, "Requests")),
        product(
            f"{prefix}Lambda-Provisioned-GB-Second",
            "AWS-Lambda-Provisioned-Duration",
            flat(0.0000097222, "Lambda-GB-Second"),
        ),
        product(f"{prefix}Lambda-GB-Second", "AWS-Lambda-Duration", tiers(gb_second)),
        product(f"{prefix}Lambda-GB-Second-ARM", "AWS-Lambda-Duration-ARM", tiers(gb_second_arm)),
        product(f"{prefix}Request", "AWS-Lambda-Requests", flat(request, "Requests")),
        product(f"{prefix}Request-ARM", "AWS-Lambda-Requests-ARM", flat(request_arm, "Requests")),
    ]


def fargate_products(
    region: str,
    *,
    vcpu_hour: float = 0.04048,
    gb_hour: float = 0.004445,
    vcpu_hour_arm: float = 0.03238,
    gb_hour_arm: float = 0.00356,
    effective_date: str = "2024-04-01T00:00:00Z",
) -> list[Product]:
    """AmazonECS Fargate products of a region, with spot and Windows decoys."""
    prefix = USAGE_PREFIXES.get(region, "")

    def product(usage: str, usd: float) -> Product:
        return _serverless_product(
            "AmazonECS",
            "Compute",
            region,
            usage_type=f"{prefix}{usage}",
            group="",
            dimensions=[(usd, "hours", "0", "Inf", f"AWS Fargate - {usage}")],
            effective_date=effective_date,
        )

    return [
        product("SpotUsage:Fargate-vCPU-Hours:perCPU", vcpu_hour * 0.3),
        product("Fargate-Windows-vCPU-Hours:perCPU", 0.09148),
        product("Fargate-vCPU-Hours:perCPU", vcpu_hour),
        product("Fargate-GB-Hours", gb_hour),
        product("Fargate-ARM-vCPU-Hours:perCPU", vcpu_hour_arm),
        product("Fargate-ARM-GB-Hours", gb_hour_arm),
        product("Fargate-EphemeralStorage-GB-Hours", 0.000111),
    ]
