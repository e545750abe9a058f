"""The PostgreSQL totals schema, as (version, statements) applied in order, each once.

``contributions`` and ``traces`` are declarative range partitions by month of
``keyed_at`` (UTC): the time the trace id was first seen by any store, from
``trace_keys``. Partitions are created by `PostgresStore.ensure_partitions`, not here.
A new version appends to `MIGRATIONS`; an applied one is never edited.
"""

from __future__ import annotations

from typing import Final

__all__ = ["MIGRATIONS"]

MIGRATIONS: Final[tuple[tuple[int, tuple[str, ...]], ...]] = (
    (
        1,
        (
            # One row per trace, not partitioned: the only place trace_id alone is
            # unique (a partitioned table's keys must include the partition key), the
            # row writers lock, and where a trace's partition month is decided once.
            """
            CREATE TABLE trace_keys (
                trace_id text PRIMARY KEY,
                keyed_at timestamptz NOT NULL
            )
            """,
            "CREATE INDEX trace_keys_keyed_at ON trace_keys (keyed_at)",
            """
            CREATE TABLE contributions (
                trace_id text NOT NULL,
                span_id text NOT NULL,
                keyed_at timestamptz NOT NULL,
                ingested_at timestamptz NOT NULL,
                quarantine_reason text,
                cost_usd double precision NOT NULL
                    CHECK (cost_usd >= 0 AND cost_usd < 'Infinity'),
                unpriced_reason text,
                is_root boolean NOT NULL,
                start_ns bigint NOT NULL,
                end_ns bigint NOT NULL,
                name text NOT NULL,
                service text,
                environment text,
                account text,
                transaction_attribute text,
                PRIMARY KEY (trace_id, span_id, keyed_at)
            ) PARTITION BY RANGE (keyed_at)
            """,
            """
            CREATE TABLE traces (
                trace_id text NOT NULL,
                keyed_at timestamptz NOT NULL,
                cost_usd double precision NOT NULL
                    CHECK (cost_usd >= 0 AND cost_usd < 'Infinity'),
                span_count bigint NOT NULL,
                priced_count bigint NOT NULL,
                unpriced_count bigint NOT NULL,
                start_ns bigint NOT NULL,
                end_ns bigint NOT NULL,
                first_seen timestamptz NOT NULL,
                last_update timestamptz NOT NULL,
                earliest_span_id text NOT NULL,
                earliest_start_ns bigint NOT NULL,
                earliest_service text,
                earliest_environment text,
                root_span_id text,
                root_start_ns bigint,
                root_transaction text,
                root_service text,
                root_environment text,
                transaction_name text,
                domain text,
                environment text,
                PRIMARY KEY (trace_id, keyed_at)
            ) PARTITION BY RANGE (keyed_at)
            """,
            "CREATE INDEX traces_pending ON traces (first_seen) WHERE transaction_name IS NULL",
            "CREATE INDEX traces_first_seen ON traces (first_seen)",
            """
            CREATE TABLE domain_hourly (
                hour timestamptz NOT NULL,
                domain text NOT NULL,
                environment text NOT NULL,
                cost_usd double precision NOT NULL,
                traces bigint NOT NULL,
                spans bigint NOT NULL,
                PRIMARY KEY (hour, domain, environment)
            )
            """,
            """
            CREATE TABLE quarantine_counts (
                reason text PRIMARY KEY,
                spans bigint NOT NULL
            )
            """,
        ),
    ),
)
"""(version, statements): applied in order, each version once, recorded in ``schema_migrations``."""
