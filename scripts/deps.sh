#!/usr/bin/env bash
# Debian packages the tests need, installed only when missing:
#   postgresql-15  the real PostgreSQL server the totals-store tests start
#                  (as a private process, never the system service).
#   openssl        the throw-away CA, certificates and keys of the test API server
#                  (tests/kube/harness.py).
#   prometheus     a real Prometheus (and promtool) that the cost-metric, dashboard
#                  and alert-rule tests start as a private process.
#   chromium       headless, for the HTML report's page test.
#   buildah        builds and runs the image without a Docker daemon (make image;
#                  vfs storage and chroot isolation, so no runc, no overlay).
#   mmdebstrap     makes the image's Python base from Debian's packages, since no
#                  container registry is reachable (scripts/image.sh).
source "$(dirname "$0")/lib.sh"
packages=(postgresql-15 openssl prometheus chromium buildah mmdebstrap)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0
[[ $(id -u) -eq 0 ]] || die "missing Debian packages: ${missing[*]} (install them: sudo apt-get install ${missing[*]})"
log "installing ${missing[*]}"
run_quiet "apt-get update" apt-get update
DEBIAN_FRONTEND=noninteractive run_quiet "apt-get install" apt-get install -y --no-install-recommends "${missing[@]}"
