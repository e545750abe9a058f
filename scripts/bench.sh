#!/usr/bin/env bash
# `make bench`: pipeline throughput/CPU/latency/RSS with and without python
# (bench/pipeline.py, driven by our own load generator).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
run_quiet "build spancost-loadgen" go -C collector build -o "$ROOT/_build/spancost-loadgen" ./cmd/spancost-loadgen
log "pipeline benchmark (about 6 minutes)"
"$VENV/bin/python" -m bench.pipeline "$@"
log "what spancost.cost adds per span (annotate on a 1,000-span batch)"
"$VENV/bin/python" python_processor/benchmarks/bench_cost_plugin.py
