#!/usr/bin/env bash
# Runs `otelcol-spancost validate` on every collector config in configs/.
# Kubernetes manifests (configs/k8s) are not collector configs.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
mkdir -p "$CACHE_DIR"
# Values for the ${env:...} references the deployment configs make.
export K8S_NODE_NAME="${K8S_NODE_NAME:-node-1}" OTLP_ENDPOINT="${OTLP_ENDPOINT:-tracing-backend:4317}"
status=0
for f in configs/*.yaml; do
  if _build/otelcol-spancost validate --config "$f" >/dev/null 2>"$CACHE_DIR/validate.err"; then
    printf '  ok   %s\n' "$f" >&2
  else
    printf '  FAIL %s\n' "$f" >&2; cat "$CACHE_DIR/validate.err" >&2; status=1
  fi
done
# Overlays, each after the config it completes (the collector merges them).
for pair in "configs/gateway.yaml configs/tiers/gateway-tls.yaml"; do
  read -r base overlay <<<"$pair"
  if _build/otelcol-spancost validate --config "$base" --config "$overlay" >/dev/null 2>"$CACHE_DIR/validate.err"; then
    printf '  ok   %s + %s\n' "$base" "$overlay" >&2
  else
    printf '  FAIL %s + %s\n' "$base" "$overlay" >&2; cat "$CACHE_DIR/validate.err" >&2; status=1
  fi
done
[[ $status -eq 0 ]] || exit $status

# The README's full configuration example must stay valid too.
readme_config="$CACHE_DIR/readme-config.yaml"
awk '/^## A full configuration/{f=1} f&&/^```yaml/{p=1;next} p&&/^```/{exit} p' README.md >"$readme_config"
[[ -s "$readme_config" ]] || { echo "  FAIL README.md: no yaml block under '## A full configuration'" >&2; exit 1; }
if _build/otelcol-spancost validate --config "$readme_config" >/dev/null 2>"$CACHE_DIR/validate.err"; then
  printf '  ok   README.md (A full configuration)\n' >&2
else
  printf '  FAIL README.md (A full configuration)\n' >&2; cat "$CACHE_DIR/validate.err" >&2; exit 1
fi

# configs/k8s/*configmap.yaml carry the collector configs; they must agree.
if "$VENV/bin/python" scripts/configmap.py --check; then
  printf '  ok   configs/k8s ConfigMaps match the collector configs they carry\n' >&2
else
  exit 1
fi
