#!/usr/bin/env bash
# `make test`: lint, Go unit tests, config validation, Python unit tests, the
# image (built and checked), end-to-end tests against the real built collector
# and sidecar.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
"$ROOT/scripts/deps.sh"
"$ROOT/scripts/build.sh"
"$ROOT/scripts/kube.sh" >/dev/null   # kube-apiserver + etcd for tests/kube (cached)
# AWS's EC2 instance metadata mock, for tests/e2e/test_host_facts.py (node_facts.ec2_metadata).
go_tool ec2-metadata-mock "github.com/aws/amazon-ec2-metadata-mock/cmd/ec2-metadata-mock@$EC2_METADATA_MOCK_VERSION"
# Helm, built from its module, for the spancost chart (tests/kube/test_helm_chart.py).
go_tool helm "helm.sh/helm/v4/cmd/helm@$HELM_VERSION"
"$ROOT/scripts/lint.sh"

log "go test (collector components)"
(cd collector && go test -race -count=1 ./...)

log "validating every collector config in configs/"
"$ROOT/scripts/validate-configs.sh"

# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
pytest_or_fail() {
  local rc=0
  "$VENV/bin/pytest" "$@" || rc=$?
  if [[ $rc -eq 5 ]]; then die "pytest collected no tests in: $*"; fi
  return $rc
}
log "python unit tests"
pytest_or_fail -q -p no:cacheprovider python_processor/tests
log "the image: build it with buildah (cached), then check it (tests/image)"
"$ROOT/scripts/image.sh" --check >/dev/null
log "end-to-end tests (real otelcol-spancost + sidecar)"
pytest_or_fail -q -p no:cacheprovider --ignore=tests/image tests
