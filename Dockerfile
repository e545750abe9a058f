# syntax=docker/dockerfile:1
#
# otelcol-spancost: the collector (built with ocb from builder-config.yaml) and
# the spancost Python sidecar in one image. The collector is the ENTRYPOINT; the
# same image runs the sidecar container with `command: ["spancost", "sidecar"]`.
#
#   docker build -t ghcr.io/spancost/otelcol-spancost:0.1.0 .
#   docker run --rm -e OTLP_ENDPOINT=backend:4317 -p 4317:4317 -p 4318:4318 \
#     ghcr.io/spancost/otelcol-spancost:0.1.0
#
# Multi-arch (the collector cross-compiles; the Python stages run per platform):
#   docker buildx build --platform linux/amd64,linux/arm64 -t ... .
# BuildKit is required (the default builder since Docker 23), or buildah.
#
# The bases are ARGs so that a build without a registry can bring its own; the
# defaults are the public images, and a plain build uses them. `make image`
# (scripts/image.sh) builds this file with buildah, no daemon, where no registry
# is reachable: PYTHON_IMAGE is a Debian bookworm base with Debian's python3.11
# made with mmdebstrap, and COLLECTOR an image holding the binary scripts/build.sh
# compiled with the collector stage's own steps (so that stage is skipped).
# Every other step runs as written. README.md, "The image", says how the two
# builds stay alike and what make image checks.

ARG GO_VERSION=1.26
ARG PYTHON_VERSION=3.11
ARG GOLANG_IMAGE=golang:${GO_VERSION}
ARG PYTHON_IMAGE=python:${PYTHON_VERSION}-slim
# Where /out/otelcol-spancost comes from: the `collector` stage below, or an image
# that already holds it there.
ARG COLLECTOR=collector

# ---------------------------------------------------------------------------
# 1. The collector: the same ocb + go build steps as scripts/build.sh. That
#    script is not reused as is: it also builds .venv (needs Python here) and
#    keeps a cache outside the build.
FROM --platform=$BUILDPLATFORM ${GOLANG_IMAGE} AS collector
# Keep in step with OTELCOL_VERSION in scripts/lib.sh and builder-config.yaml.
ARG OTELCOL_VERSION=v0.161.0
ARG TARGETOS
ARG TARGETARCH
WORKDIR /src
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    go install "go.opentelemetry.io/collector/cmd/builder@${OTELCOL_VERSION}"
COPY builder-config.yaml ./
COPY collector/ collector/
# ocb's own `go mod tidy` fails on a test-only import of k8sattributesprocessor
# that is not served everywhere (see scripts/build.sh); the sources and go.mod
# are written before that, so tidy tolerantly here and let `go build` judge.
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    set -eu; \
    builder --config builder-config.yaml --skip-compilation >/tmp/ocb.log 2>&1 || true; \
    if [ ! -f _build/go.mod ]; then cat /tmp/ocb.log >&2; exit 1; fi; \
    go -C _build mod tidy -e; \
    CGO_ENABLED=0 GOOS="$TARGETOS" GOARCH="$TARGETARCH" \
      go -C _build build -trimpath -ldflags "-s -w" -o /out/otelcol-spancost .

FROM ${COLLECTOR} AS collector-binary

# ---------------------------------------------------------------------------
# 2. Wheels of the spancost package and of its pinned runtime dependencies
#    (grpcio, protobuf with its upb backend, ...), built for the target platform.
FROM ${PYTHON_IMAGE} AS wheels
WORKDIR /src
COPY python_processor/ python_processor/
RUN --mount=type=cache,target=/root/.cache/pip \
    pip wheel --disable-pip-version-check --wheel-dir /wheels ./python_processor

# ---------------------------------------------------------------------------
# 3. Runtime. Python's slim image, because the sidecar needs CPython; the
#    collector itself is a static binary.
FROM ${PYTHON_IMAGE}
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="otelcol-spancost" \
      org.opencontainers.image.description="OpenTelemetry Collector that prices every span (spancost)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"

# The sidecar's own virtualenv, installed only from the wheels of stage 2 (no
# index: what was built is what runs). The wheels are bind-mounted, not copied,
# so they do not stay in a layer.
RUN --mount=type=bind,from=wheels,source=/wheels,target=/wheels \
    python -m venv /opt/spancost \
 && /opt/spancost/bin/pip install --disable-pip-version-check --no-cache-dir \
      --no-index --find-links=/wheels spancost

# UID/GID 10001, as the Kubernetes manifests expect (configs/k8s: runAsUser and
# fsGroup 10001; the sidecar's 0600 socket is only usable by the same UID).
# /var/lib/otelcol/file_storage is the persistent queue of both configs; it is
# owned by 10001 so that a plain `docker run` works without a volume.
# /otelcol-spancost: the official Helm chart runs `/<command.name>`, so with
# command.name: otelcol-spancost the binary must be reachable at the root.
RUN groupadd --gid 10001 spancost \
 && useradd --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin spancost \
 && mkdir -p /var/lib/otelcol/file_storage /etc/otelcol-spancost /var/lib/spancost \
      /var/run/spancost \
 && chown 10001:10001 /var/lib/otelcol/file_storage /var/lib/spancost /var/run/spancost \
 && chmod 0700 /var/lib/spancost /var/run/spancost \
 && ln -s /usr/local/bin/otelcol-spancost /otelcol-spancost

COPY --from=collector-binary /out/otelcol-spancost /usr/local/bin/otelcol-spancost
# Default config: the gateway, which spawns the sidecar itself, so the image
# works on its own (one container, only OTLP_ENDPOINT to set). configs/local.yaml
# listens on 127.0.0.1 only, unreachable from outside a container. The agent
# DaemonSet passes --config for configs/daemonset.yaml instead.
COPY configs/gateway.yaml /etc/otelcol-spancost/config.yaml

# /opt/spancost/bin first: `spancost` (the sidecar, spawned by the gateway
# config or run as the sidecar container's command) and its `python`.
# No .pyc writes: the root filesystem is read-only in Kubernetes.
# SPANCOST_DATA_DIR: the SQLite totals store when no DATABASE_URL is given.
ENV PATH="/opt/spancost/bin:${PATH}" \
    SPANCOST_DATA_DIR=/var/lib/spancost \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1

USER 10001

# 4317  OTLP gRPC receiver
# 4318  OTLP HTTP receiver
# 4319  OTLP gRPC from spancost agents only (bearer token; their prices are kept)
# 13133 health_check extension (liveness/readiness)
# 8888  the collector's own metrics (Prometheus)
EXPOSE 4317 4318 4319 13133 8888

ENTRYPOINT ["/usr/local/bin/otelcol-spancost"]
CMD ["--config=/etc/otelcol-spancost/config.yaml"]
