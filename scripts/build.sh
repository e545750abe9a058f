#!/usr/bin/env bash
# Builds _build/otelcol-spancost from builder-config.yaml with ocb, and .venv.
# The binary is cached by the hash of everything it is built from, so a warm
# run (or CI on the same machine) copies it instead of compiling for minutes.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/venv.sh"

out="$ROOT/_build/otelcol-spancost"
key="$( { cat builder-config.yaml; go version;
          find collector \( -path collector/tools -o -path collector/cmd \) -prune -o -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print \
            | LC_ALL=C sort | xargs sha256sum; } | sha256sum | cut -c1-16)"
cached="$CACHE_DIR/bin/otelcol-spancost-$key"
if [[ -x "$cached" ]]; then
  mkdir -p _build; cp -f "$cached" "$out"
  log "otelcol-spancost is up to date ($key)"
  exit 0
fi

go_tool builder "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_VERSION"
log "generating the distribution with ocb $OTELCOL_VERSION"
ocb_log="$(mktemp)"
# ocb's own `go mod tidy` fails on a test-only import of k8sattributesprocessor
# (pkg/semconvtest) that the module proxy does not serve here; the sources and
# go.mod are written before that, so tidy tolerantly and let `go build` judge.
builder --config builder-config.yaml --skip-compilation >"$ocb_log" 2>&1 || true
if [[ ! -f _build/go.mod ]]; then
  cat "$ocb_log" >&2; die "ocb did not generate _build/go.mod"
fi
rm -f "$ocb_log"
log "compiling otelcol-spancost (a cold build takes about 6 minutes on 2 cores)"
( cd _build
  run_quiet "go mod tidy" go mod tidy -e
  CGO_ENABLED=0 run_quiet "go build" go build -trimpath -ldflags "-s -w" -o otelcol-spancost . )
mkdir -p "$(dirname "$cached")"
cp -f "$out" "$cached.tmp" && mv -f "$cached.tmp" "$cached"
# Keep the cache from growing without bound: the five newest builds are enough.
ls -1t "$CACHE_DIR"/bin/otelcol-spancost-* 2>/dev/null | tail -n +6 | xargs -r rm -f
log "built $out"
