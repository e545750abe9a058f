# Shared settings for the scripts in this folder; sourced, never run.
# Tool versions are pinned here and can be overridden from the environment.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OTELCOL_VERSION="${OTELCOL_VERSION:-v0.161.0}"          # ocb, mdatagen and every collector module
EC2_METADATA_MOCK_VERSION="${EC2_METADATA_MOCK_VERSION:-v1.13.0}"  # AWS's IMDS mock, for the tests
HELM_VERSION="${HELM_VERSION:-v4.3.2}"  # helm, for the chart's tests (tests/kube/test_helm_chart.py)
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-$ROOT/.venv}"
GOBIN="${GOBIN:-$(go env GOPATH)/bin}"
CACHE_DIR="${SPANCOST_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/spancost}"
export PATH="$GOBIN:$VENV/bin:$PATH"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# run_quiet LABEL CMD...: keeps a build log quiet on success, prints it in full on failure.
run_quiet() {
  local label="$1"; shift
  local out; out="$(mktemp)"
  if ! "$@" >"$out" 2>&1; then
    printf 'error: %s failed; its output:\n' "$label" >&2
    cat "$out" >&2; rm -f "$out"; return 1
  fi
  rm -f "$out"
}

need() { command -v "$1" >/dev/null 2>&1 || die "$1 not found: $2"; }

# go_tool NAME MODULE@VERSION: installs a Go tool once per pinned version.
go_tool() {
  local name="$1" spec="$2" stamp="$CACHE_DIR/tools/$1.version"
  if [[ -x "$GOBIN/$name" && -f "$stamp" && "$(cat "$stamp")" == "$spec" ]]; then return; fi
  need go "install Go 1.26 (https://go.dev/doc/install)"
  log "installing $spec"
  run_quiet "go install $spec" go install "$spec"
  mkdir -p "$(dirname "$stamp")"; echo "$spec" >"$stamp"
}
