#!/usr/bin/env bash
# Runs `otelcol-spancost validate` on every collector config in configs/.
# Kubernetes manifests (configs/k8s) are not collector configs.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
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
exit $status
