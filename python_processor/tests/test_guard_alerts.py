"""Alert webhooks against a real HTTP server on 127.0.0.1: body shapes, retries, failures."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from spancost.guard.alerts import AlertSender, json_body, pagerduty_body
from spancost.guard.budgets import WebhookConfig
from spancost.guard.policy import Alert, Severity

NOW = datetime(2025, 1, 31, 12, 0, tzinfo=UTC)
BREACH = Alert(
    Severity.CRITICAL,
    "Budget breached: checkout spent 120.00 USD of 100.00 USD (120%) in 24 h",
    "spancost-guard/checkout",
    domain="checkout",
    priority="P1",
    details={"ratio": 1.2, "actions": [{"deployment": "shop/web", "target": 7}]},
)


@dataclass
class Hook:
    """A webhook receiver: answers each POST with the next status (then 202), records bodies."""

    url: str
    statuses: list[int] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    headers: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture
def hook() -> Iterator[Hook]:
    state = Hook("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            state.bodies.append(json.loads(self.rfile.read(length)))
            state.headers.append(dict(self.headers))
            status = state.statuses.pop(0) if state.statuses else 202
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"status": "ok"}' if status < 300 else b'{"error": "nope"}')

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def test_pagerduty_events_v2_shape(hook: Hook) -> None:
    webhook = WebhookConfig(hook.url, "pagerduty", routing_key="R0UT1NG", backoff=0.01)
    sender = AlertSender([webhook])
    reports = sender.send([BREACH], NOW)
    assert [r.ok for r in reports] == [True]
    assert hook.headers[0]["Content-Type"] == "application/json"
    assert hook.bodies == [
        {
            "routing_key": "R0UT1NG",
            "event_action": "trigger",
            "dedup_key": "spancost-guard/checkout",
            "payload": {
                "summary": BREACH.summary,
                "source": "spancost-guard",
                "severity": "critical",
                "timestamp": "2025-01-31T12:00:00Z",
                "component": "checkout",
                "group": "spancost-budget",
                "class": "budget",
                "custom_details": {
                    "ratio": 1.2,
                    "actions": [{"deployment": "shop/web", "target": 7}],
                    "priority": "P1",
                },
            },
            "client": hook.bodies[0]["client"],
        }
    ]
    resolve = Alert(Severity.INFO, "recovered", "spancost-guard/checkout", "checkout", resolve=True)
    assert pagerduty_body(resolve, "R0UT1NG", NOW) == {
        "routing_key": "R0UT1NG",
        "event_action": "resolve",
        "dedup_key": "spancost-guard/checkout",
    }


def test_plain_json_shape(hook: Hook) -> None:
    sender = AlertSender([WebhookConfig(hook.url, backoff=0.01)])
    sender.send([BREACH], NOW)
    assert hook.bodies == [json_body(BREACH, NOW)]
    assert hook.bodies[0] == {
        "source": "spancost-guard",
        "timestamp": "2025-01-31T12:00:00Z",
        "severity": "critical",
        "priority": "P1",
        "summary": BREACH.summary,
        "domain": "checkout",
        "dedup_key": "spancost-guard/checkout",
        "resolve": False,
        "details": {"ratio": 1.2, "actions": [{"deployment": "shop/web", "target": 7}]},
    }


def test_retries_on_5xx_then_succeeds(hook: Hook) -> None:
    hook.statuses = [500, 503, 502]
    sender = AlertSender([WebhookConfig(hook.url, retries=3, backoff=0.01)])
    reports = sender.send([BREACH], NOW)
    assert [(r.ok, r.status) for r in reports] == [(True, 202)]
    assert len(hook.bodies) == 4
    assert sender.failures == 0


def test_gives_up_after_the_retries(hook: Hook) -> None:
    hook.statuses = [500] * 10
    sender = AlertSender([WebhookConfig(hook.url, retries=2, backoff=0.01)])
    reports = sender.send([BREACH], NOW)
    assert [(r.ok, r.status) for r in reports] == [(False, 500)]
    assert len(hook.bodies) == 3
    assert sender.failures == 1


def test_4xx_is_not_retried(hook: Hook) -> None:
    hook.statuses = [400]
    sender = AlertSender([WebhookConfig(hook.url, retries=3, backoff=0.01)])
    reports = sender.send([BREACH], NOW)
    assert [(r.ok, r.status) for r in reports] == [(False, 400)]
    assert len(hook.bodies) == 1


def test_dead_webhook_is_reported_not_raised(hook: Hook) -> None:
    dead = WebhookConfig(f"http://127.0.0.1:{free_port()}/hook", retries=2, backoff=0.01)
    sender = AlertSender([dead, WebhookConfig(hook.url)])
    reports = sender.send([BREACH], NOW)
    assert [r.ok for r in reports] == [False, True]  # the next webhook still gets it
    assert "127.0.0.1" in reports[0].error
    assert len(hook.bodies) == 1
