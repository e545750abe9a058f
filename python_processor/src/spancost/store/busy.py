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
``[[pod, hour_ns, seconds, segments, owner_domain, owner_environment, request_usd],
...]`` (a line written before ``request_usd`` existed lacks it: 0).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Final, NamedTuple

from spancost.allocation.core import hour_slices
from spancost.totals.aggregate import SpanContribution
from spancost.totals.naming import TotalsConfig, owner_domain

__all__ = [
    "RESIDUE",
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
NO_POD: Final = ""
"""The pod of what no pod of a node served: per-request prices, segments of no known pod."""
RESIDUE: Final = 1e-9
"""What is left of a ``pod_busy`` row's seconds or segments after busy time moved away
from it and rounding: below it, the store deletes the row."""
_HOUR_NS: Final = 3600 * 10**9
_PLAIN: Final = frozenset("\t\n\r")


class StoredBusy(NamedTuple):
    """One trace's busy time on one pod in one hour, as kept in its row; and (under pod
    ``''``) what its spans priced per request cost in that hour."""

    pod: str
    hour_ns: int
    seconds: float
    segments: float
    domain: str | None  # the sender's domain (domains.owner), else None: the trace's
    environment: str | None  # the sender's environment (domains.owner), else None
    request_usd: float = 0.0


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
    """Per trace id, the entries its (accepted, newly stored) spans add: each segment's
    busy time on its pod (as `busy_of` splits it at the hours' edges; a segment whose
    pod is not known counts as a request under pod ``''``, with no time), and under pod
    ``''`` the per-request prices of the spans not priced as a node's compute, by the
    hour they started. All weighted by the spans' adjusted counts.

    The sink's hot path: one pass, the common segment (within one hour) inlined."""
    owner_mode = config.owner_attribute is not None
    hour_ns = _HOUR_NS
    groups: dict[tuple[str, str, str], dict[tuple[str, int], list[float]]] = {}
    for span in spans:
        segment = span.segment
        priced = not span.compute and span.cost_usd > 0
        if not segment and not priced:
            continue
        key = (span.trace_id, span.owner or "", span.environment or "")
        entries = groups.get(key)
        if entries is None:
            entries = groups[key] = {}
        weight = span.weight
        start, end = span.start_ns, span.end_ns
        hour = start // hour_ns * hour_ns
        if segment:
            pod = span.pod
            if pod is None:
                _entry(entries, NO_POD, hour)[1] += weight
            elif end <= hour + hour_ns:
                entry = _entry(entries, pod, hour)
                entry[0] += (end - start) / 1e9 * weight
                entry[1] += weight
            else:
                for number, (slice_hour, seconds) in enumerate(hour_slices(start, end)):
                    entry = _entry(entries, pod, slice_hour)
                    entry[0] += seconds * weight
                    if number == 0:
                        entry[1] += weight
        if priced:
            _entry(entries, NO_POD, hour)[2] += span.cost_usd * weight
    result: dict[str, list[StoredBusy]] = {}
    for (trace_id, owner, environment), entries in groups.items():
        domain = owner_domain(config, owner or None) if owner_mode else None
        env = environment if owner_mode else None
        result.setdefault(trace_id, []).extend(
            StoredBusy(pod, hour, seconds, segments, domain, env, request_usd)
            for (pod, hour), (seconds, segments, request_usd) in sorted(entries.items())
        )
    return result


def _entry(entries: dict[tuple[str, int], list[float]], pod: str, hour: int) -> list[float]:
    entry = entries.get((pod, hour))
    if entry is None:
        entry = entries[(pod, hour)] = [0.0, 0.0, 0.0]
    return entry


def encode(entries: Sequence[StoredBusy]) -> str:
    """The lines of ``traces.busy`` one write adds: an entry a line, tab-separated
    ``pod, hour_ns, seconds, segments, request_usd`` and, with ``domains.owner``, the
    sender's ``domain, environment`` (a label holding a tab or a line break: the line is
    a JSON array instead)."""
    lines: list[str] = []
    for e in entries:
        if e.domain is None and e.environment is None:
            lines.append(
                f"{e.pod}\t{e.hour_ns}\t{e.seconds!r}\t{e.segments!r}\t{e.request_usd!r}\n"
            )
        elif _PLAIN.isdisjoint(f"{e.domain}{e.environment}"):
            lines.append(
                f"{e.pod}\t{e.hour_ns}\t{e.seconds!r}\t{e.segments!r}\t{e.request_usd!r}"
                f"\t{e.domain or ''}\t{e.environment or ''}\n"
            )
        else:
            lines.append(json.dumps([list(e)], separators=(",", ":")) + "\n")
    return "".join(lines)


def decode(text: str | None) -> list[StoredBusy]:
    """Every entry of a ``traces.busy`` value."""
    if not text:
        return []
    entries: list[StoredBusy] = []
    for line in text.splitlines():
        if not line:
            continue
        if line[0] == "[":  # JSON: a label with a tab, or written by an earlier version
            entries.extend(StoredBusy(*item) for item in json.loads(line))
            continue
        fields = line.split("\t")
        pod, hour, seconds, segments, request = fields[:5]
        domain, environment = (fields[5], fields[6]) if len(fields) == 7 else (None, None)
        entries.append(
            StoredBusy(
                pod, int(hour), float(seconds), float(segments), domain, environment,
                float(request),
            )
        )  # fmt: skip
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
        change = self._changes.setdefault(key, [0.0, 0.0, 0.0])
        change[0] += sign * entry.seconds
        change[1] += sign * entry.segments
        change[2] += sign * entry.request_usd
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

    def __iter__(self) -> Iterator[tuple[BusyKey, float, float, float]]:
        """(key, seconds, segments, request_usd) per changed row, in key order."""
        for key in sorted(self._changes):
            seconds, segments, request_usd = self._changes[key]
            yield key, seconds, segments, request_usd
