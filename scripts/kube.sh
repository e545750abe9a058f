#!/usr/bin/env bash
# Builds the real kube-apiserver and etcd that tests/kube runs as processes,
# from the Go module pinned in tools/kube (Kubernetes and etcd through the Go
# module proxy; no images, no downloads of prebuilt binaries).
# The pair is cached by the hash of everything it is built from, so a warm run
# only links _build/kube/ to the cache; a cold one compiles for about 7 minutes
# on 2 cores. Prints KUBE_APISERVER=... and ETCD=... (eval-able) on stdout;
# tests/kube/harness.py finds the binaries in _build/kube/ or through those
# variables.
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
need go "install Go 1.26 (https://go.dev/doc/install)"

module="$ROOT/tools/kube"
kube_version="$(sed -nE 's#^[[:space:]]*k8s\.io/kubernetes (v[0-9]+\.[0-9]+\.[0-9]+)( .*)?$#\1#p' "$module/go.mod")"
[[ -n "$kube_version" ]] || die "tools/kube/go.mod does not require k8s.io/kubernetes at a release"
kube_minor="$(cut -d. -f2 <<<"$kube_version")"
# Stamp the version a release build would carry, so /version (and clients that
# read it) see v1.N.M instead of v0.0.0-master.
ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$kube_version \
-X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$kube_minor \
-X k8s.io/component-base/version.gitTreeState=clean"

# Relative paths: a clone elsewhere (CI's) finds the same cache entry.
key="$( { echo "$ldflags"; go version; cd "$module" && sha256sum go.mod go.sum; } | sha256sum | cut -c1-16)"
cached="$CACHE_DIR/kube/$key"
link="$ROOT/_build/kube"

if [[ -x "$cached/kube-apiserver" && -x "$cached/etcd" ]]; then
  log "kube-apiserver $kube_version and etcd are up to date ($key)"
else
  rm -rf "$cached"   # an incomplete pair (pruned or interrupted by hand) is rebuilt
  log "compiling kube-apiserver $kube_version and etcd (a cold build takes about 7 minutes on 2 cores)"
  mkdir -p "$CACHE_DIR/kube"
  tmp="$(mktemp -d "$CACHE_DIR/kube/.build-XXXXXX")"; chmod 755 "$tmp"
  trap 'rm -rf "$tmp"' EXIT
  ( cd "$module"
    export CGO_ENABLED=0
    run_quiet "go build kube-apiserver" go build -trimpath -ldflags "$ldflags" -o "$tmp/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
    run_quiet "go build etcd" go build -trimpath -ldflags "-s -w" -o "$tmp/etcd" go.etcd.io/etcd/server/v3 )
  # Another checkout may have finished the same build meanwhile: keep theirs.
  mv -T "$tmp" "$cached" 2>/dev/null || rm -rf "$tmp"
  # The three newest builds are enough (each pair is about 145 MB).
  ls -1dt "$CACHE_DIR"/kube/*/ 2>/dev/null | tail -n +4 | xargs -r rm -rf
  log "built $cached"
fi

mkdir -p "$ROOT/_build"
ln -sfn "$cached" "$link"
echo "KUBE_APISERVER=$link/kube-apiserver"
echo "ETCD=$link/etcd"
