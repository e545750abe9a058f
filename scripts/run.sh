#!/usr/bin/env bash
# `make run`: the collector with the sidecar, configs/local.yaml (or CONFIG=...).
source "$(dirname "$0")/lib.sh"
"$ROOT/scripts/build.sh"
config="${CONFIG:-$ROOT/configs/local.yaml}"
# The sidecar's socket (configs/local.yaml): a directory only this user can enter.
export SPANCOST_RUN_DIR="${SPANCOST_RUN_DIR:-$CACHE_DIR/run}"
mkdir -p "$SPANCOST_RUN_DIR" && chmod 0700 "$SPANCOST_RUN_DIR"
log "otelcol-spancost --config $config (OTLP on 127.0.0.1:4317 gRPC and :4318 HTTP; Ctrl-C stops)"
exec "$ROOT/_build/otelcol-spancost" --config "$config" "$@"
