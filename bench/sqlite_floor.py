"""`make bench`: what SQLite itself costs the totals sink per span (issue #15).

The SQLite store keeps one ``contributions`` row per span (its (trace id, span id) key
is what makes a replayed batch add nothing). This measures that insert and nothing of
spancost's Python: the shipped schema (`SQLiteStore.migrate`), the store's own
connection settings (WAL, ``synchronous = FULL``), and ``executemany`` of the store's
insert with rows built in advance, shaped as bench/hop.py's spans (10-span traces,
8,160-span batches as the batch processor hands them over), one transaction per
batch; then the same with ``synchronous = OFF`` (SQLite's CPU alone, no fsync). The
sink cannot store a span for less than this, whatever its Python does.

    .venv/bin/python -m bench.sqlite_floor
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from spancost.store.sqlite import SQLiteStore
from spancost.totals import TotalsConfig

INSERT = (
    "INSERT INTO contributions (trace_id, span_id, ingested_ns, quarantine_reason, cost_usd,"
    " unpriced_reason, is_root, start_ns, end_ns, name, service, environment, account,"
    " transaction_attribute) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (trace_id, span_id) DO NOTHING"
)
TRACE_SPANS = 10


def batches(count: int, spans: int, seed: int) -> list[list[tuple[object, ...]]]:
    rng = random.Random(seed)
    now = time.time_ns()
    out = []
    for _ in range(count):
        rows: list[tuple[object, ...]] = []
        for _ in range(spans // TRACE_SPANS):
            trace_id = rng.randbytes(16).hex()
            for index in range(TRACE_SPANS):
                name = "GET /checkout" if index == 0 else "reserve stock"
                rows.append(
                    (trace_id, rng.randbytes(8).hex(), now, None, 1.3e-7, None, index == 0,
                     now - 10**9, now - 10**9 + 5_000_000, name, "checkout", "production",
                     None, None)
                )  # fmt: skip
        out.append(rows)
    return out


def microseconds_per_span(synchronous: str, count: int, spans: int, seed: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "totals.db"
        store = SQLiteStore(path, TotalsConfig())
        store.migrate()
        store.close()
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("PRAGMA journal_mode = WAL")
        connection.execute(f"PRAGMA synchronous = {synchronous}")
        work = batches(count, spans, seed)
        began = time.perf_counter()
        for rows in work:
            connection.execute("BEGIN IMMEDIATE")
            connection.executemany(INSERT, rows)
            connection.execute("COMMIT")
        elapsed = time.perf_counter() - began
        stored = connection.execute("SELECT count(*) FROM contributions").fetchone()[0]
        connection.close()
    if stored != count * spans:
        raise RuntimeError(f"stored {stored} rows, expected {count * spans}")
    return elapsed / (count * spans) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=20, help="batches per run")
    parser.add_argument("--batch-spans", type=int, default=8160)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    print(f"| synchronous | µs per span row ({args.runs} runs) | median | spans/s |")
    print("|---|---|---:|---:|")
    for synchronous in ("FULL", "OFF"):
        runs = [
            microseconds_per_span(synchronous, args.batches, args.batch_spans, seed)
            for seed in range(args.runs)
        ]
        median = statistics.median(runs)
        print(
            f"| {synchronous} | {', '.join(f'{r:.2f}' for r in runs)} | {median:.2f} |"
            f" {1e6 / median:,.0f} |"
        )


if __name__ == "__main__":
    main()
