"""Trace totals: what every priced span adds to its trace's cost row, idempotently.

The pure core, for the totals sink and its stores (PostgreSQL, SQLite):

- `aggregate`: `SpanContribution` (one span's delta, keyed by trace and span id),
  `split` (quarantine by time and id), `fold` (per-trace `TraceDelta`; `trace_delta`
  for one trace's spans), `merge`;
- `naming`: the totals configuration (`parse_config`), `transaction_name`,
  `domain_name`, `resolve_transaction` (orphans).

`spancost.totals.otlp.contributions` reads an OTLP batch into contributions; it is
not imported here, so the core can be used (and tested) without protobuf.
"""

from spancost.totals.aggregate import (
    QUARANTINE_REASONS,
    Quarantined,
    QuarantineReason,
    SpanContribution,
    TraceDelta,
    fold,
    merge,
    split,
    trace_delta,
)
from spancost.totals.naming import (
    UNATTRIBUTED,
    TotalsConfig,
    TraceState,
    TransactionRule,
    domain_name,
    parse_config,
    resolve_transaction,
    transaction_name,
)

__all__ = [
    "QUARANTINE_REASONS",
    "UNATTRIBUTED",
    "QuarantineReason",
    "Quarantined",
    "SpanContribution",
    "TotalsConfig",
    "TraceDelta",
    "TraceState",
    "TransactionRule",
    "domain_name",
    "fold",
    "merge",
    "parse_config",
    "resolve_transaction",
    "split",
    "trace_delta",
    "transaction_name",
]
