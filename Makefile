# otelcol-spancost: a thin list of verbs; the logic lives in scripts/.
.PHONY: all build run test image bench generate lint clean

all: build

build: ## build _build/otelcol-spancost (ocb) and .venv with the spancost package
	@scripts/build.sh

run: ## the collector with the sidecar on configs/local.yaml (CONFIG=... to change)
	@scripts/run.sh

test: ## lint, Go and Python unit tests, the image, end-to-end tests against the real binary
	@scripts/test.sh

image: ## build the Dockerfile with buildah (no daemon) from Debian-made bases, then check it
	@scripts/image.sh --check

bench: ## throughput, CPU, latency and RSS with and without the python processor
	@scripts/bench.sh

generate: ## regenerate gRPC code (Go, Python) from proto/ and mdatagen code
	@scripts/generate.sh

lint: ## gofmt, go vet, ruff, mypy
	@scripts/lint.sh

clean:
	rm -rf _build .venv
