"""The SQLite totals schema, as (version, statements) applied in order, each once, by
`spancost.store.migrations.runner`. A new version appends to `MIGRATIONS`; an applied
one is never edited.

- 1: the schema as first released: ``contributions`` (every span once), ``traces``,
  ``domain_hourly``, ``quarantine_counts``.
- 2: the trace's cloud account (``earliest_account``, ``root_account``).
- 3: who sent a trace's root (``root_owner``) and whether two owners did (``contested``).
- 4: unpriced spans by hour, environment and reason (``unpriced_reasons``).
- 5: with ``domains.owner``, each span charged to its owner's domain (``trace_charges``).
- 6: the allocation (issue 12): each trace's busy time (``traces.busy``), ``pod_busy``,
  ``node_usage``, ``pod_usage``, ``allocation_dirty``, ``allocated_hourly``,
  ``allocated_nodes``, ``repricings``.
- 7: what spans priced per request cost (``request_usd``).
- 8: the sink's naming config (``store_settings``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Final

from spancost.store.migrations.runner import Ledger, Migration
from spancost.totals.aggregate import ns_from_utc

__all__ = ["LEDGER", "MIGRATIONS"]

LEDGER: Final = Ledger(
    create="CREATE TABLE IF NOT EXISTS schema_migrations"
    " (version INTEGER PRIMARY KEY, applied_ns INTEGER NOT NULL)",
    record="INSERT INTO schema_migrations (version, applied_ns) VALUES (?, ?)",
    parameters=lambda version: (version, ns_from_utc(datetime.now().astimezone())),
)
"""Versions applied and when (ns); two runners are kept apart by SQLite's write lock,
which the store takes at ``BEGIN IMMEDIATE``."""

MIGRATIONS: Final[tuple[Migration, ...]] = (
    (
        1,
        (
            """
            CREATE TABLE contributions (
                trace_id TEXT NOT NULL,
                span_id TEXT NOT NULL,
                ingested_ns INTEGER NOT NULL,
                quarantine_reason TEXT,
                cost_usd REAL NOT NULL,
                unpriced_reason TEXT,
                is_root INTEGER NOT NULL,
                start_ns INTEGER NOT NULL,
                end_ns INTEGER NOT NULL,
                name TEXT NOT NULL,
                service TEXT,
                environment TEXT,
                account TEXT,
                transaction_attribute TEXT,
                PRIMARY KEY (trace_id, span_id)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE traces (
                trace_id TEXT PRIMARY KEY,
                cost_usd REAL NOT NULL,
                span_count INTEGER NOT NULL,
                priced_count INTEGER NOT NULL,
                unpriced_count INTEGER NOT NULL,
                start_ns INTEGER NOT NULL,
                end_ns INTEGER NOT NULL,
                first_seen_ns INTEGER NOT NULL,
                last_update_ns INTEGER NOT NULL,
                earliest_span_id TEXT NOT NULL,
                earliest_start_ns INTEGER NOT NULL,
                earliest_service TEXT,
                earliest_environment TEXT,
                root_span_id TEXT,
                root_start_ns INTEGER,
                root_transaction TEXT,
                root_service TEXT,
                root_environment TEXT,
                transaction_name TEXT,
                domain TEXT,
                environment TEXT
            ) WITHOUT ROWID
            """,
            "CREATE INDEX traces_pending ON traces (first_seen_ns) WHERE transaction_name IS NULL",
            "CREATE INDEX traces_first_seen ON traces (first_seen_ns)",
            """
            CREATE TABLE domain_hourly (
                domain TEXT NOT NULL,
                environment TEXT NOT NULL,
                hour_ns INTEGER NOT NULL,
                cost_usd REAL NOT NULL,
                traces INTEGER NOT NULL,
                spans INTEGER NOT NULL,
                PRIMARY KEY (hour_ns, domain, environment)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE quarantine_counts (
                reason TEXT PRIMARY KEY,
                spans INTEGER NOT NULL
            ) WITHOUT ROWID
            """,
        ),
    ),
    (
        2,
        (
            # The trace's cloud account: the root's cloud.account.id, else the earliest span's.
            "ALTER TABLE traces ADD COLUMN earliest_account TEXT",
            "ALTER TABLE traces ADD COLUMN root_account TEXT",
        ),
    ),
    (
        3,
        (
            # Who sent the root (domains.owner), and whether roots of two owners came.
            "ALTER TABLE traces ADD COLUMN root_owner TEXT",
            "ALTER TABLE traces ADD COLUMN contested INTEGER NOT NULL DEFAULT 0",
        ),
    ),
    (
        4,
        (
            # Accepted spans spancost could not price, by the hour they were stored, their
            # environment and cost.unpriced_reason (the report's and guard's coverage).
            """
            CREATE TABLE unpriced_reasons (
                hour_ns INTEGER NOT NULL,
                environment TEXT NOT NULL,
                reason TEXT NOT NULL,
                spans INTEGER NOT NULL,
                PRIMARY KEY (hour_ns, environment, reason)
            ) WITHOUT ROWID
            """,
        ),
    ),
    (
        5,
        (
            # With domains.owner every span is charged to its owner's domain: what each
            # (domain, environment) owes of each trace, first seen when the trace was.
            """
            CREATE TABLE trace_charges (
                trace_id TEXT NOT NULL,
                domain TEXT NOT NULL,
                environment TEXT NOT NULL,
                first_seen_ns INTEGER NOT NULL,
                cost_usd REAL NOT NULL,
                spans INTEGER NOT NULL,
                unpriced_spans INTEGER NOT NULL,
                PRIMARY KEY (trace_id, domain, environment)
            ) WITHOUT ROWID
            """,
            "CREATE INDEX trace_charges_first_seen ON trace_charges (first_seen_ns)",
        ),
    ),
    (
        6,
        (
            # The allocation (issue 12): usage kept, priced per node-hour, split at read.
            # Each trace's busy time per pod and hour (store.busy), to move it when the
            # trace is named.
            "ALTER TABLE traces ADD COLUMN busy TEXT",
            """
            CREATE TABLE pod_busy (
                hour_ns INTEGER NOT NULL,
                pod TEXT NOT NULL,
                domain TEXT NOT NULL,
                transaction_name TEXT NOT NULL,
                environment TEXT NOT NULL,
                seconds REAL NOT NULL,
                segments REAL NOT NULL,
                PRIMARY KEY (hour_ns, pod, domain, transaction_name, environment)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE node_usage (
                hour_ns INTEGER NOT NULL,
                node TEXT NOT NULL,
                seconds REAL NOT NULL,
                region TEXT,
                instance_type TEXT,
                operating_system TEXT,
                capacity_type TEXT NOT NULL,
                zone TEXT,
                vcpu REAL NOT NULL,
                memory_gib REAL NOT NULL,
                hourly_usd REAL,
                price_source TEXT,
                price_model TEXT,
                price_as_of TEXT,
                unpriced_reason TEXT,
                reported_ns INTEGER NOT NULL,
                PRIMARY KEY (hour_ns, node)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE pod_usage (
                hour_ns INTEGER NOT NULL,
                pod TEXT NOT NULL,
                node TEXT NOT NULL,
                seconds REAL NOT NULL,
                cpu REAL NOT NULL,
                memory_gib REAL NOT NULL,
                namespace TEXT NOT NULL,
                workload TEXT NOT NULL,
                PRIMARY KEY (hour_ns, pod)
            ) WITHOUT ROWID
            """,
            "CREATE TABLE allocation_dirty (hour_ns INTEGER PRIMARY KEY) WITHOUT ROWID",
            """
            CREATE TABLE allocated_hourly (
                hour_ns INTEGER NOT NULL,
                kind TEXT NOT NULL,
                domain TEXT NOT NULL,
                transaction_name TEXT NOT NULL,
                environment TEXT NOT NULL,
                namespace TEXT NOT NULL,
                workload TEXT NOT NULL,
                usd REAL NOT NULL,
                busy_seconds REAL NOT NULL,
                segments REAL NOT NULL,
                PRIMARY KEY (hour_ns, kind, domain, transaction_name, environment, namespace,
                             workload)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE allocated_nodes (
                hour_ns INTEGER NOT NULL,
                node TEXT NOT NULL,
                bill_usd REAL NOT NULL,
                transactions_usd REAL NOT NULL,
                untraced_usd REAL NOT NULL,
                idle_usd REAL NOT NULL,
                PRIMARY KEY (hour_ns, node)
            ) WITHOUT ROWID
            """,
            """
            CREATE TABLE repricings (
                at_ns INTEGER NOT NULL,
                hour_ns INTEGER NOT NULL,
                node TEXT NOT NULL,
                old_hourly_usd REAL,
                old_source TEXT,
                old_as_of TEXT,
                new_hourly_usd REAL,
                new_source TEXT,
                new_as_of TEXT,
                PRIMARY KEY (at_ns, hour_ns, node)
            ) WITHOUT ROWID
            """,
        ),
    ),
    (
        7,
        (
            # What spans priced per request (Lambda, Fargate, LLM tokens, rules) cost, by
            # transaction and hour: added to the allocation as it is.
            "ALTER TABLE pod_busy ADD COLUMN request_usd REAL NOT NULL DEFAULT 0",
            "ALTER TABLE allocated_hourly ADD COLUMN request_usd REAL NOT NULL DEFAULT 0",
        ),
    ),
    (
        8,
        (
            # The sink's naming config (who pays, which domains), for every reader that
            # opens the store without one: `spancost.store.open.open_store`.
            """
            CREATE TABLE store_settings (
                name TEXT PRIMARY KEY,
                value TEXT NOT NULL,
                updated_ns INTEGER NOT NULL
            )
            """,
        ),
    ),
)
"""(version, statements): applied in order, each version once, recorded in ``schema_migrations``."""
