"""The PostgreSQL totals schema, as (version, statements) applied in order, each once, by
`spancost.store.migrations.runner`.

``contributions`` and ``traces`` are declarative range partitions by month of
``keyed_at`` (UTC): the time the trace id was first seen by any store, from
``trace_keys``. Partitions are created by `PostgresStore.ensure_partitions`, not here.
A new version appends to `MIGRATIONS`; an applied one is never edited.

- 1: the schema as first released.
- 2: ``contributions`` keeps only the deduplication key, with compact ids (``uuid``,
  ``bigint``); quarantined spans keep their facts and reason in ``quarantined_spans``.
  Rewrites ``contributions`` (every partition) in the migration's transaction.
- 3: the trace's cloud account (``earliest_account``, ``root_account``).
- 4: a trace's accepted span ids live in its own row (``traces.span_ids``, 8 bytes
  each) instead of a ``contributions`` row per span, which is dropped: a span is
  deduplicated under its trace's key lock against the trace row and
  ``quarantined_spans``. Rewrites every trace row in the migration's transaction.
- 5: who sent a trace's root (``root_owner``) and whether two owners did (``contested``).
- 6: unpriced spans by hour, environment and reason (``unpriced_reasons``).
- 7: with ``domains.owner``, each span charged to its owner's domain (``trace_charges``,
  partitioned like ``traces``).
- 8: the allocation (issue 12), as SQLite's migration 6: each trace's busy time
  (``traces.busy``), its sum per pod, hour and label (``pod_busy``), node-hours with
  their price (``node_usage``), pod-hours (``pod_usage``), the hours to allocate again
  (``allocation_dirty``) and the allocation (``allocated_hourly``, ``allocated_nodes``),
  price changes (``repricings``). Adds a column without rewriting ``traces``.
"""

from __future__ import annotations

from typing import Final

from spancost.store.migrations.runner import Ledger, Migration

__all__ = ["LEDGER", "MIGRATIONS"]

MIGRATE_LOCK: Final = 0x5370_6E63_0001
"""The ``pg_advisory_xact_lock`` key of migrations (`spancost.store.partitions` has the
partition DDL's): one runner at a time."""
LEDGER: Final = Ledger(
    create="CREATE TABLE IF NOT EXISTS schema_migrations"
    " (version integer PRIMARY KEY, applied_at timestamptz NOT NULL)",
    record="INSERT INTO schema_migrations (version, applied_at) VALUES (%s, now())",
    parameters=lambda version: (version,),
    lock=("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_LOCK,)),
)
"""Versions applied and when; several stores migrating at once wait for each other."""

MIGRATIONS: Final[tuple[Migration, ...]] = (
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
    (
        2,
        (
            # Every quarantined span with its facts and reason, not partitioned (few rows:
            # retention deletes them by keyed_at with the trace_keys). Spans whose ids
            # cannot be keyed (invalid_id) are deduplicated here only; the others in
            # contributions, like accepted spans.
            """
            CREATE TABLE quarantined_spans (
                trace_id text NOT NULL,
                span_id text NOT NULL,
                keyed_at timestamptz NOT NULL,
                ingested_at timestamptz NOT NULL,
                reason text NOT NULL,
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
                PRIMARY KEY (trace_id, span_id)
            )
            """,
            "CREATE INDEX quarantined_spans_keyed_at ON quarantined_spans (keyed_at)",
            """
            INSERT INTO quarantined_spans (
                trace_id, span_id, keyed_at, ingested_at, reason, cost_usd, unpriced_reason,
                is_root, start_ns, end_ns, name, service, environment, account,
                transaction_attribute
            )
            SELECT trace_id, span_id, keyed_at, ingested_at, quarantine_reason, cost_usd,
                unpriced_reason, is_root, start_ns, end_ns, name, service, environment,
                account, transaction_attribute
            FROM contributions WHERE quarantine_reason IS NOT NULL
            ON CONFLICT (trace_id, span_id) DO NOTHING
            """,
            # contributions is rebuilt rather than altered: dropped columns would stay in
            # every row's null bitmap. Its keys and partition bounds are kept aside, the
            # table dropped and created again with the same partitions.
            """
            CREATE TEMPORARY TABLE contribution_keys_v1 ON COMMIT DROP AS
            SELECT trace_id::uuid AS trace_id, ('x' || span_id)::bit(64)::bigint AS span_id,
                keyed_at
            FROM contributions WHERE quarantine_reason IS DISTINCT FROM 'invalid_id'
            """,
            """
            CREATE TEMPORARY TABLE contribution_partitions_v1 ON COMMIT DROP AS
            SELECT child.relname AS name, pg_get_expr(child.relpartbound, child.oid) AS bound
            FROM pg_inherits JOIN pg_class child ON child.oid = pg_inherits.inhrelid
            WHERE pg_inherits.inhparent = 'contributions'::regclass
            """,
            "DROP TABLE contributions",
            # An accepted or quarantined span (its ids valid) once: the trace id as a
            # uuid, the span id as the signed 64-bit integer of its 8 bytes.
            """
            CREATE TABLE contributions (
                trace_id uuid NOT NULL,
                span_id bigint NOT NULL,
                keyed_at timestamptz NOT NULL,
                PRIMARY KEY (trace_id, span_id, keyed_at)
            ) PARTITION BY RANGE (keyed_at)
            """,
            """
            DO $$
            DECLARE
                part record;
            BEGIN
                FOR part IN SELECT name, bound FROM contribution_partitions_v1 ORDER BY name LOOP
                    EXECUTE format(
                        'CREATE TABLE %I PARTITION OF contributions %s', part.name, part.bound
                    );
                END LOOP;
            END
            $$
            """,
            """
            INSERT INTO contributions (trace_id, span_id, keyed_at)
            SELECT trace_id, span_id, keyed_at FROM contribution_keys_v1
            """,
        ),
    ),
    (
        3,
        (
            # The trace's cloud account: the root's cloud.account.id, else the earliest span's.
            "ALTER TABLE traces ADD COLUMN earliest_account text, ADD COLUMN root_account text",
        ),
    ),
    (
        4,
        (
            # The accepted span ids of a trace: each span id's 8 bytes, concatenated in
            # the order they were stored. Quarantined spans with valid ids, which had a
            # contributions row too, are in quarantined_spans (migration 2) and stay there.
            "ALTER TABLE traces ADD COLUMN span_ids bytea NOT NULL DEFAULT ''::bytea",
            """
            UPDATE traces SET span_ids = accepted.span_ids
            FROM (
                SELECT encode(uuid_send(contributions.trace_id), 'hex') AS trace_id,
                    contributions.keyed_at,
                    string_agg(int8send(contributions.span_id), ''::bytea
                        ORDER BY contributions.span_id) AS span_ids
                FROM contributions
                WHERE NOT EXISTS (
                    SELECT FROM quarantined_spans
                    WHERE quarantined_spans.trace_id
                            = encode(uuid_send(contributions.trace_id), 'hex')
                        AND quarantined_spans.span_id
                            = lpad(to_hex(contributions.span_id), 16, '0')
                )
                GROUP BY 1, 2
            ) AS accepted
            WHERE traces.trace_id = accepted.trace_id AND traces.keyed_at = accepted.keyed_at
            """,
            "ALTER TABLE traces ALTER COLUMN span_ids DROP DEFAULT",
            "DROP TABLE contributions",
        ),
    ),
    (
        5,
        (
            # Who sent the root (domains.owner), and whether roots of two owners came.
            # A constant default: PostgreSQL adds both without rewriting the table.
            "ALTER TABLE traces ADD COLUMN root_owner text,"
            " ADD COLUMN contested boolean NOT NULL DEFAULT false",
        ),
    ),
    (
        6,
        (
            # Accepted spans spancost could not price, by the hour they were stored, their
            # environment and cost.unpriced_reason (the report's and guard's coverage).
            """
            CREATE TABLE unpriced_reasons (
                hour timestamptz NOT NULL,
                environment text NOT NULL,
                reason text NOT NULL,
                spans bigint NOT NULL,
                PRIMARY KEY (hour, environment, reason)
            )
            """,
        ),
    ),
    (
        7,
        (
            # With domains.owner every span is charged to its owner's domain: what each
            # (domain, environment) owes of each trace, first seen when the trace was.
            # Partitioned like traces, with a partition for each of traces' months.
            """
            CREATE TABLE trace_charges (
                trace_id text NOT NULL,
                keyed_at timestamptz NOT NULL,
                domain text NOT NULL,
                environment text NOT NULL,
                first_seen timestamptz NOT NULL,
                cost_usd double precision NOT NULL
                    CHECK (cost_usd >= 0 AND cost_usd < 'Infinity'),
                spans bigint NOT NULL,
                unpriced_spans bigint NOT NULL,
                PRIMARY KEY (trace_id, keyed_at, domain, environment)
            ) PARTITION BY RANGE (keyed_at)
            """,
            "CREATE INDEX trace_charges_first_seen ON trace_charges (first_seen)",
            """
            DO $$
            DECLARE
                part record;
            BEGIN
                FOR part IN
                    SELECT child.relname AS name,
                        pg_get_expr(child.relpartbound, child.oid) AS bound
                    FROM pg_inherits JOIN pg_class child ON child.oid = pg_inherits.inhrelid
                    WHERE pg_inherits.inhparent = 'traces'::regclass ORDER BY 1
                LOOP
                    EXECUTE format(
                        'CREATE TABLE %I PARTITION OF trace_charges %s',
                        'trace_charges' || substr(part.name, length('traces') + 1),
                        part.bound
                    );
                END LOOP;
            END
            $$
            """,
        ),
    ),
    (
        8,
        (
            # The allocation (issue 12), the same tables as SQLite's migration 6 (hours
            # and times as bigint nanoseconds, as there). Each trace's busy time per pod
            # and hour (spancost.store.busy), to move it when the trace is named: no
            # default, so every partition gets the column without a rewrite.
            "ALTER TABLE traces ADD COLUMN busy text",
            # None of these is partitioned: their rows are per hour and node, pod or
            # label (pods times the transactions they served), not per trace or span:
            # thousands an hour on a large cluster where traces are millions. The
            # allocator reads and replaces one hour at a time through the primary
            # keys' first column (hour_ns), which is also what a retention DELETE of
            # old hours would use; like domain_hourly, they outlive dropped partitions
            # (retention does not touch them yet, in either store).
            """
            CREATE TABLE pod_busy (
                hour_ns bigint NOT NULL,
                pod text NOT NULL,
                domain text NOT NULL,
                transaction_name text NOT NULL,
                environment text NOT NULL,
                seconds double precision NOT NULL,
                segments double precision NOT NULL,
                PRIMARY KEY (hour_ns, pod, domain, transaction_name, environment)
            )
            """,
            """
            CREATE TABLE node_usage (
                hour_ns bigint NOT NULL,
                node text NOT NULL,
                seconds double precision NOT NULL,
                region text,
                instance_type text,
                operating_system text,
                capacity_type text NOT NULL,
                zone text,
                vcpu double precision NOT NULL,
                memory_gib double precision NOT NULL,
                hourly_usd double precision,
                price_source text,
                price_model text,
                price_as_of text,
                unpriced_reason text,
                reported_ns bigint NOT NULL,
                PRIMARY KEY (hour_ns, node)
            )
            """,
            """
            CREATE TABLE pod_usage (
                hour_ns bigint NOT NULL,
                pod text NOT NULL,
                node text NOT NULL,
                seconds double precision NOT NULL,
                cpu double precision NOT NULL,
                memory_gib double precision NOT NULL,
                namespace text NOT NULL,
                workload text NOT NULL,
                PRIMARY KEY (hour_ns, pod)
            )
            """,
            # An hour whose usage or busy time changed since it was allocated. Whatever
            # changes an hour locks its row until it commits (the allocator's lock).
            "CREATE TABLE allocation_dirty (hour_ns bigint PRIMARY KEY)",
            """
            CREATE TABLE allocated_hourly (
                hour_ns bigint NOT NULL,
                kind text NOT NULL,
                domain text NOT NULL,
                transaction_name text NOT NULL,
                environment text NOT NULL,
                namespace text NOT NULL,
                workload text NOT NULL,
                usd double precision NOT NULL,
                busy_seconds double precision NOT NULL,
                segments double precision NOT NULL,
                PRIMARY KEY (hour_ns, kind, domain, transaction_name, environment, namespace,
                             workload)
            )
            """,
            """
            CREATE TABLE allocated_nodes (
                hour_ns bigint NOT NULL,
                node text NOT NULL,
                bill_usd double precision NOT NULL,
                transactions_usd double precision NOT NULL,
                untraced_usd double precision NOT NULL,
                idle_usd double precision NOT NULL,
                PRIMARY KEY (hour_ns, node)
            )
            """,
            """
            CREATE TABLE repricings (
                at_ns bigint NOT NULL,
                hour_ns bigint NOT NULL,
                node text NOT NULL,
                old_hourly_usd double precision,
                old_source text,
                old_as_of text,
                new_hourly_usd double precision,
                new_source text,
                new_as_of text,
                PRIMARY KEY (at_ns, hour_ns, node)
            )
            """,
        ),
    ),
    (
        9,
        (
            # What spans priced per request (Lambda, Fargate, LLM tokens, rules) cost, by
            # transaction and hour: added to the allocation as it is.
            "ALTER TABLE pod_busy ADD COLUMN request_usd double precision NOT NULL DEFAULT 0",
            "ALTER TABLE allocated_hourly ADD COLUMN request_usd double precision NOT NULL"
            " DEFAULT 0",
        ),
    ),
    (
        10,
        (
            # The sink's naming config (who pays, which domains), for every reader that
            # opens the store without one: `spancost.store.open.open_store`.
            """
            CREATE TABLE store_settings (
                name text PRIMARY KEY,
                value text NOT NULL,
                updated_ns bigint NOT NULL
            )
            """,
        ),
    ),
)
"""(version, statements): applied in order, each version once, recorded in ``schema_migrations``."""
