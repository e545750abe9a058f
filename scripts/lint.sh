#!/usr/bin/env bash
# gofmt and go vet for the Go module, ruff and mypy (strict) for Python.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/venv.sh"
log "gofmt, go vet"
unformatted="$(gofmt -l collector)"
[[ -z "$unformatted" ]] || die "gofmt would change: $unformatted (run gofmt -w collector)"
(cd collector && go vet ./...)
log "ruff, mypy"
"$VENV/bin/ruff" check python_processor examples tests bench scripts tools
"$VENV/bin/ruff" format --check python_processor examples tests bench scripts tools
(cd python_processor && "$VENV/bin/mypy")
