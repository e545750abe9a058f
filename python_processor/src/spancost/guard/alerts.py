"""Where the guard's alerts go: the log, and webhooks (PagerDuty Events API v2 or plain JSON).

A webhook is POSTed with urllib3's `Retry`: connection errors, timeouts and the
answers 429, 500, 502, 503 and 504 are retried with exponential backoff
(``Retry-After`` honoured), other 4xx are not. Sending never raises: a webhook
that stays down is logged and counted, and whatever the guard did to the
cluster stands. Alerts are sent after the cluster work, so a slow webhook
never delays a scale-down.

Retried POSTs can deliver an alert twice; PagerDuty merges them by
``dedup_key``, and the plain JSON body carries the same key for receivers that
want to.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import urllib3
from urllib3.exceptions import HTTPError
from urllib3.util.retry import Retry

from spancost import __version__
from spancost.guard.budgets import WebhookConfig
from spancost.guard.policy import Alert, Severity, format_time

__all__ = ["AlertSender", "SendReport", "json_body", "pagerduty_body"]

logger = logging.getLogger(__name__)

SOURCE: Final = "spancost-guard"
RETRY_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
_MAX_BACKOFF: Final = 30.0
_SUMMARY_MAX: Final = 1024  # PagerDuty truncates longer summaries
_LOG_LEVELS: Final = {
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.ERROR: logging.ERROR,
    Severity.CRITICAL: logging.CRITICAL,
}


def pagerduty_body(alert: Alert, routing_key: str, now: datetime) -> dict[str, Any]:
    """The PagerDuty Events API v2 event for `alert`."""
    if alert.resolve:
        return {"routing_key": routing_key, "event_action": "resolve", "dedup_key": alert.dedup_key}
    details = dict(alert.details)
    if alert.priority:
        details["priority"] = alert.priority
    payload: dict[str, Any] = {
        "summary": alert.summary[:_SUMMARY_MAX],
        "source": SOURCE,
        "severity": str(alert.severity),
        "timestamp": format_time(now),
        "group": "spancost-budget",
        "class": "budget" if alert.domain else "guard",
        "custom_details": details,
    }
    if alert.domain:
        payload["component"] = alert.domain
    return {
        "routing_key": routing_key,
        "event_action": "trigger",
        "dedup_key": alert.dedup_key,
        "payload": payload,
        "client": f"spancost guard {__version__}",
    }


def json_body(alert: Alert, now: datetime) -> dict[str, Any]:
    """The plain JSON body for `alert`."""
    return {
        "source": SOURCE,
        "timestamp": format_time(now),
        "severity": str(alert.severity),
        "priority": alert.priority,
        "summary": alert.summary,
        "domain": alert.domain,
        "dedup_key": alert.dedup_key,
        "resolve": alert.resolve,
        "details": dict(alert.details),
    }


@dataclass(frozen=True, slots=True)
class SendReport:
    """What happened to one alert at one webhook."""

    url: str
    ok: bool
    status: int | None = None
    error: str = ""


class AlertSender:
    """Logs every alert and POSTs it to every configured webhook."""

    def __init__(self, webhooks: Sequence[WebhookConfig]) -> None:
        self._webhooks = tuple(webhooks)
        self._pool = urllib3.PoolManager(headers={"User-Agent": f"spancost-guard/{__version__}"})
        self.failures = 0

    def send(self, alerts: Iterable[Alert], now: datetime) -> list[SendReport]:
        """Log and post `alerts`; never raises."""
        reports: list[SendReport] = []
        for alert in alerts:
            logger.log(
                _LOG_LEVELS[alert.severity],
                "alert severity=%s priority=%s domain=%s dedup_key=%s resolve=%s: %s",
                alert.severity,
                alert.priority or "-",
                alert.domain or "-",
                alert.dedup_key,
                alert.resolve,
                alert.summary,
            )
            for webhook in self._webhooks:
                report = self._post(webhook, alert, now)
                if not report.ok:
                    self.failures += 1
                reports.append(report)
        return reports

    def close(self) -> None:
        self._pool.clear()

    def _post(self, webhook: WebhookConfig, alert: Alert, now: datetime) -> SendReport:
        body = (
            pagerduty_body(alert, webhook.routing_key, now)
            if webhook.format == "pagerduty"
            else json_body(alert, now)
        )
        retry = Retry(
            total=webhook.retries,
            backoff_factor=webhook.backoff,
            backoff_max=_MAX_BACKOFF,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"POST"}),
            respect_retry_after_header=True,
            raise_on_status=False,
        )
        try:
            response = self._pool.request(
                "POST",
                webhook.url,
                body=json.dumps(body).encode(),
                headers={"Content-Type": "application/json"},
                retries=retry,
                timeout=urllib3.Timeout(connect=webhook.timeout, read=webhook.timeout),
                redirect=False,
            )
        except HTTPError as exc:
            logger.error(
                "alert webhook %s failed after %d retries: %s (the guard's actions stand)",
                webhook.url,
                webhook.retries,
                exc,
            )
            return SendReport(webhook.url, ok=False, error=str(exc))
        if 200 <= response.status < 300:
            logger.debug("alert webhook %s answered %d", webhook.url, response.status)
            return SendReport(webhook.url, ok=True, status=response.status)
        excerpt = response.data[:200].decode("utf-8", "replace")
        logger.error(
            "alert webhook %s answered %d: %s (the guard's actions stand)",
            webhook.url,
            response.status,
            excerpt,
        )
        return SendReport(webhook.url, ok=False, status=response.status, error=excerpt)
