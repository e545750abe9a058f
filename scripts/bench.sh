#!/usr/bin/env bash
# `make bench`: pipeline throughput/CPU/latency/RSS with and without python
# (bench/pipeline.py, driven by our own load generator).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/build.sh"
run_quiet "build spancost-loadgen" go -C collector build -o "$ROOT/_build/spancost-loadgen" ./cmd/spancost-loadgen
log "pipeline benchmark (about 3 minutes)"
"$VENV/bin/python" -m bench.pipeline "$@"
