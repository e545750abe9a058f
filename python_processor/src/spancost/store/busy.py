"""What the stores share about busy time, free of any database (issue 12's allocation).

A trace's segments keep pods busy (`spancost.allocation.usage.busy_of`). The stores sum
that per (hour, pod, domain, transaction, environment) in ``pod_busy``, under the
trace's CURRENT labels, so that the allocation can split each pod's cost by them; and
they keep each trace's own busy entries in its row (``traces.busy``), so that when a
late root (or `attribute_orphans`) names the trace, its whole busy time moves from the
old labels to the new, in the same transaction, as the rollup's cost does. With
``domains.owner`` a segment's domain and environment are its sender's (they never
move); only the transaction does.

``traces.busy`` is append-only text: one JSON array per write, one per line, each
``[[pod, hour_ns, seconds, segments, owner_domain, owner_environment], ...]``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, NamedTuple

from spancost.allocation.usage import busy_of
from spancost.totals.aggregate import SpanContribution
from spancost.totals.naming import TotalsConfig, owner_domain

__all__ = [
    "BusyChanges",
    "BusyKey",
    "Labels",
    "StoredBusy",
    "decode",
    "encode",
    "stored_busy",
]

PENDING: Final = ""
"""The transaction (and domain) of busy time whose trace has no name yet."""


class StoredBusy(NamedTuple):
    """One trace's busy time on one pod in one hour, as kept in its row."""

    pod: str
    hour_ns: int
    seconds: float
    segments: float
    domain: str | None  # the sender's domain (domains.owner), else None: the trace's
    environment: str | None  # the sender's environment (domains.owner), else None


class Labels(NamedTuple):
    """A trace's labels as busy time is filed under them (None: not named yet)."""

    transaction: str | None
    domain: str | None
    environment: str | None


BusyKey = tuple[int, str, str, str, str]
"""(hour_ns, pod, domain, transaction, environment): a ``pod_busy`` row."""


def stored_busy(
    spans: Iterable[SpanContribution], config: TotalsConfig
) -> dict[str, list[StoredBusy]]:
    """Per trace id, the busy entries its (accepted, newly stored) spans add."""
    owner_mode = config.owner_attribute is not None
    by_owner: dict[tuple[str, str | None, str | None], list[SpanContribution]] = {}
    for span in spans:
        if span.segment and span.pod is not None:
            key = (span.trace_id, span.owner, span.environment)
            by_owner.setdefault(key, []).append(span)
    result: dict[str, list[StoredBusy]] = {}
    for (trace_id, owner, environment), group in sorted(
        by_owner.items(), key=lambda item: (item[0][0], item[0][1] or "", item[0][2] or "")
    ):
        domain = owner_domain(config, owner) if owner_mode else None
        env = (environment or "") if owner_mode else None
        for entry in busy_of(group).get(trace_id, []):
            result.setdefault(trace_id, []).append(
                StoredBusy(entry.pod, entry.hour_ns, entry.seconds, entry.segments, domain, env)
            )
    return result


def encode(entries: Sequence[StoredBusy]) -> str:
    """One line of ``traces.busy`` (with its newline)."""
    return json.dumps([list(entry) for entry in entries], separators=(",", ":")) + "\n"


def decode(text: str | None) -> list[StoredBusy]:
    """Every entry of a ``traces.busy`` value."""
    if not text:
        return []
    entries: list[StoredBusy] = []
    for line in text.splitlines():
        if line:
            entries.extend(StoredBusy(*item) for item in json.loads(line))
    return entries


class BusyChanges:
    """One transaction's ``pod_busy`` changes, summed per row, applied in key order;
    and the hours they touched (whose allocation must be computed again)."""

    def __init__(self) -> None:
        self._changes: dict[BusyKey, list[float]] = {}
        self.hours: set[int] = set()

    def _add(self, entry: StoredBusy, labels: Labels, sign: float) -> None:
        domain = entry.domain if entry.domain is not None else labels.domain
        environment = entry.environment if entry.environment is not None else labels.environment
        key = (
            entry.hour_ns,
            entry.pod,
            PENDING if domain is None else domain,
            PENDING if labels.transaction is None else labels.transaction,
            "" if environment is None else environment,
        )
        change = self._changes.setdefault(key, [0.0, 0.0])
        change[0] += sign * entry.seconds
        change[1] += sign * entry.segments
        self.hours.add(entry.hour_ns)

    def record(
        self,
        before: Labels | None,
        after: Labels,
        stored: Sequence[StoredBusy],
        added: Sequence[StoredBusy],
    ) -> None:
        """A trace that held `stored` got `added`: file the latter under its labels, or,
        when its labels changed (`before` to `after`), move all of it to the new ones."""
        if before is not None and before != after:
            for entry in stored:
                self._add(entry, before, -1.0)
                self._add(entry, after, 1.0)
        for entry in added:
            self._add(entry, after, 1.0)

    def __iter__(self) -> Iterator[tuple[BusyKey, float, float]]:
        """(key, seconds, segments) per changed row, in key order."""
        for key in sorted(self._changes):
            seconds, segments = self._changes[key]
            yield key, seconds, segments
