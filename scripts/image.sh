#!/usr/bin/env bash
# `make image`: builds the Dockerfile without a Docker daemon (buildah, vfs storage,
# chroot isolation; as root) into localhost/otelcol-spancost:<key>, and with --check
# runs the image's checks (tests/image) on it.
#
# No container registry is reachable here, so the Dockerfile's public bases are
# replaced through its ARGs, never by editing it:
#   PYTHON_IMAGE  python:3.11-slim -> a Debian bookworm minbase made here with
#                 mmdebstrap, with Debian's python3.11 (the same Python minor, the
#                 same Debian family as the slim image, pip and venv included).
#   COLLECTOR     the Dockerfile's `collector` stage (golang:1.26, ocb, go build) ->
#                 an image holding the static binary scripts/build.sh compiled with
#                 the same ocb and go build steps (tests/image/test_dockerfile.py
#                 holds the two alike), so the stage and its golang base are skipped.
# Every other step of the Dockerfile runs as written.
#
# Images live in one containers-storage under $CACHE_DIR/image (outside the clone),
# each cached by the hash of what it is made from: the base by its recipe below, the
# image by the Dockerfile, .dockerignore, what its COPY steps read (the collector
# binary, configs/gateway.yaml, the spancost package's sources) and its bases. A warm
# run builds nothing. Prints SPANCOST_IMAGE=..., CONTAINERS_STORAGE_CONF=... and
# BUILDAH_ISOLATION=... on stdout and writes them to _build/image.env, where
# tests/image finds them (`set -a; . _build/image.env` for buildah by hand).
source "$(dirname "$0")/lib.sh"
cd "$ROOT"
[[ $# -eq 0 || "$1" == --check ]] || die "usage: scripts/image.sh [--check]"
need buildah "install Debian's buildah (scripts/deps.sh does, as root)"
need mmdebstrap "install Debian's mmdebstrap (scripts/deps.sh does, as root)"
# Rootless buildah needs subordinate IDs and mmdebstrap its unshare mode: not set up here.
[[ $(id -u) -eq 0 ]] || die "make image runs buildah and mmdebstrap as root"

"$ROOT/scripts/build.sh" >&2   # the collector binary (cached)

store="$CACHE_DIR/image"
mkdir -p "$store"
export CONTAINERS_STORAGE_CONF="$store/storage.conf" BUILDAH_ISOLATION=chroot
storage_conf="$(printf '[storage]\ndriver = "vfs"\ngraphroot = "%s"\nrunroot = "%s"' \
  "$store/storage" "$store/run")"
[[ -f "$CONTAINERS_STORAGE_CONF" && "$(cat "$CONTAINERS_STORAGE_CONF")" == "$storage_conf" ]] \
  || echo "$storage_conf" >"$CONTAINERS_STORAGE_CONF"
exists() { buildah inspect --type image "$1" >/dev/null 2>&1; }
hash16() { sha256sum | cut -c1-16; }

# --- The Python base: python:3.11-slim's part, made from Debian's packages --------
python_version="$(sed -n 's/^ARG PYTHON_VERSION=//p' Dockerfile)"
[[ -n "$python_version" ]] || die "Dockerfile has no ARG PYTHON_VERSION"
base_suite=bookworm   # its python3 is 3.11, the Dockerfile's PYTHON_VERSION
base_packages="ca-certificates,netbase,tzdata,python$python_version,python$python_version-venv,python3-pip,python-is-python3"
# Merged /usr without the usrmerge package (and the perl it brings), no device nodes
# in the tarball, no manuals or locales: what the slim images leave out too.
base_options=(--variant=minbase --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr
  --skip=output/dev --dpkgopt='path-exclude=/usr/share/man/*'
  --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
  --dpkgopt='path-exclude=/usr/share/locale/*' "--include=$base_packages")
# The slim image's own settings (python:3.11-slim sets LANG and runs python3).
base_config=(--env LANG=C.UTF-8 --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  --cmd python3)
base_key="$(echo "$base_suite ${base_options[*]} ${base_config[*]}" | hash16)"
base_image="localhost/spancost-base-python:$base_key"
if exists "$base_image"; then
  log "the Python base is up to date ($base_key)"
else
  log "making the Python base: Debian $base_suite with python$python_version (mmdebstrap, about 30 s)"
  tmp="$(mktemp -d "$store/.base-XXXXXX")"
  trap 'rm -rf "$tmp"' EXIT
  run_quiet "mmdebstrap" mmdebstrap "${base_options[@]}" "$base_suite" "$tmp/rootfs.tar"
  ctr="$(buildah from scratch)"
  run_quiet "buildah add (the base)" buildah add "$ctr" "$tmp/rootfs.tar" /
  buildah config "${base_config[@]}" "$ctr"
  buildah commit --quiet --rm "$ctr" "$base_image" >/dev/null
  rm -rf "$tmp"
fi

# --- The collector: the binary scripts/build.sh made, where the stage puts it -------
binary="$ROOT/_build/otelcol-spancost"
collector_image="localhost/spancost-collector-binary:$(hash16 <"$binary")"
if ! exists "$collector_image"; then
  ctr="$(buildah from scratch)"
  buildah copy --quiet --chmod 0755 "$ctr" "$binary" /out/otelcol-spancost >/dev/null
  buildah commit --quiet --rm "$ctr" "$collector_image" >/dev/null
fi

# --- The image -----------------------------------------------------------------------
build=(buildah build --pull=never --layers=false
  --build-arg "PYTHON_IMAGE=$base_image" --build-arg "COLLECTOR=$collector_image")
# The machine's trust store for the RUN steps' downloads (pip wheel from PyPI, maybe
# through a TLS-inspecting proxy whose CA only the host knows); mounted, so it never
# lands in a layer.
bundle=/etc/ssl/certs/ca-certificates.crt
[[ -f "$bundle" ]] && build+=(--volume "$bundle:$bundle:ro")
key="$( { cat Dockerfile .dockerignore configs/gateway.yaml; echo "${build[*]}"; buildah --version
          buildah inspect --type image --format '{{.FromImageID}}' "$base_image"
          find python_processor/pyproject.toml python_processor/README.md python_processor/src \
            -type f ! -path '*/__pycache__/*' ! -path '*.egg-info/*' ! -name '*.py[cod]' -print \
            | LC_ALL=C sort | xargs sha256sum; } | hash16)"
image="localhost/otelcol-spancost:$key"
if exists "$image"; then
  log "otelcol-spancost image is up to date ($key)"
else
  log "building $image (buildah, vfs, chroot; about 30 s)"
  started=$SECONDS
  run_quiet "buildah build" "${build[@]}" --tag "$image" .
  log "built $image in $((SECONDS - started)) s"
fi
buildah tag "$image" localhost/otelcol-spancost:latest
# A stage that is only a FROM (collector-binary) keeps its working container in
# buildah 1.28; nothing else runs from this image, so its containers are leftovers.
buildah containers --noheading --format '{{.ContainerName}} {{.ImageName}}' \
  | awk -v img="$collector_image" '$2 == img {print $1}' | xargs -r buildah rm >/dev/null
log "$image: $(buildah images --noheading --format '{{.Size}}' "$image" | head -n1) (uncompressed, buildah images)"

# Keep the store from growing without bound: the three newest images, two of the rest.
prune() {
  buildah images --noheading --format '{{.CreatedAtRaw}}|{{.Name}}:{{.Tag}}' --filter "reference=$1" \
    | grep -v ':latest$' | LC_ALL=C sort -r | tail -n +"$(($2 + 1))" | cut -d'|' -f2 \
    | xargs -r buildah rmi >/dev/null
}
prune localhost/otelcol-spancost 3
prune localhost/spancost-collector-binary 2
prune localhost/spancost-base-python 2

mkdir -p "$ROOT/_build"
printf 'SPANCOST_IMAGE=%s\nCONTAINERS_STORAGE_CONF=%s\nBUILDAH_ISOLATION=%s\n' \
  "$image" "$CONTAINERS_STORAGE_CONF" "$BUILDAH_ISOLATION" | tee "$ROOT/_build/image.env"

if [[ "${1:-}" == --check ]]; then
  log "checking the image (tests/image)"
  rc=0
  SPANCOST_IMAGE="$image" "$VENV/bin/pytest" -q -p no:cacheprovider tests/image >&2 || rc=$?
  # pytest exits 5 when it collected nothing: a failure, not a pass.
  [[ $rc -ne 5 ]] || die "pytest collected no tests in tests/image"
  exit "$rc"
fi
