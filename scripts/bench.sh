#!/usr/bin/env bash
# `make bench`: the Python hop with the shipped chain and the totals sink
# (bench/hop.py), grpcio's own cost per message (bench/grpc_floor.py), pipeline
# throughput/CPU/latency/RSS with and without python (bench/pipeline.py, driven
# by our own load generator), what pricing adds per span
# (bench/bench_cost_plugin.py, bench/pricing_bridge.py), what the totals sink
# spends reading a batch (bench/bench_totals_adapter.py), what SQLite alone costs it
# per stored span (bench/sqlite_floor.py), the
# PostgreSQL totals store (bench/bench_store.py, on a private server it starts), the
# whole totals path through the collector (bench/totals_path.py), and the sidecar's
# memory at idle (bench/sidecar_rss.py).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
run_quiet "build spancost-loadgen" go -C collector build -o "$ROOT/_build/spancost-loadgen" ./cmd/spancost-loadgen
log "the Python hop with the shipped chain, issue 15's workload (about 4 minutes)"
"$VENV/bin/python" -m bench.hop
log "what grpcio costs a Python server per message, with no spancost code (about 1 minute)"
"$VENV/bin/python" -m bench.grpc_floor
log "pipeline benchmark (about 6 minutes)"
"$VENV/bin/python" -m bench.pipeline "$@"
log "what spancost.cost adds per span (annotate on a 1,000-span batch)"
"$VENV/bin/python" -m bench.bench_cost_plugin
log "the same, priced as a DaemonSet agent prices: every resource as its watched node"
"$VENV/bin/python" -m bench.bench_cost_plugin --node-facts
log "what spancost.cost adds per span at the bridge (CPU with and without it, about 4 minutes)"
"$VENV/bin/python" -m bench.pricing_bridge
log "what the totals sink spends reading a 1,000-span batch (parse, contributions, split)"
"$VENV/bin/python" -m bench.bench_totals_adapter
log "what SQLite alone costs the totals sink per stored span (no spancost Python)"
"$VENV/bin/python" -m bench.sqlite_floor
log "PostgreSQL totals store: write throughput, 24 h rollup with 10M trace rows (about 5 minutes)"
"$VENV/bin/python" -m bench.bench_store
log "the trace-totals path end to end: span end to visible, stored spans per second (about 2 minutes)"
"$VENV/bin/python" -m bench.totals_path
log "the sidecar's memory at idle with the shipped plugins loaded (configs/local.yaml, 3 runs)"
"$VENV/bin/python" -m bench.sidecar_rss
