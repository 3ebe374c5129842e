# kvgate: build, generate, lint, run and test.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DELETE_ON_ERROR:
.DEFAULT_GOAL := build
MAKEFLAGS += --no-builtin-rules

BIN := $(CURDIR)/bin
# buf and grpcurl are Go tools pinned in tools/go.mod, a module of their own
# so that their dependencies never decide the product's versions.
BUF := $(BIN)/buf
GRPCURL := $(BIN)/grpcurl
LISTEN ?= 127.0.0.1:8080
DATA ?= ./data
GO_TEST_FLAGS ?= -race -count=1
# The browser test drives Debian's Chromium; nothing may download a browser.
CHROMIUM := /usr/bin/chromium
# The Python client test uses Debian's protoc, gRPC plugin and Python
# packages (test/polyglot).
PYTHON_DEPS := /usr/bin/protoc /usr/bin/grpc_python_plugin \
	/usr/lib/python3/dist-packages/grpc/__init__.py \
	/usr/lib/python3/dist-packages/google/protobuf/__init__.py
# The README's "Try it" commands, run by test/interop, use curl.
CURL := /usr/bin/curl
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD := 1

.PHONY: deps
deps: node_modules/.stamp $(BUF) $(GRPCURL) $(CHROMIUM) $(PYTHON_DEPS) $(CURL) ## Install everything the build and tests need
	go mod download

$(CHROMIUM):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium

$(CURL):
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y curl

$(PYTHON_DEPS) &:
	$(SUDO) apt-get update
	$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y \
		protobuf-compiler protobuf-compiler-grpc python3-grpcio python3-protobuf

node_modules/.stamp: package.json package-lock.json
	npm ci --no-audit --no-fund
	@touch $@

$(BUF) $(GRPCURL) &: tools/go.mod tools/go.sum
	cd tools && go build -o $(BIN)/ tool

.PHONY: generate
generate: node_modules/.stamp $(BUF) ## Regenerate gen/, packages/client/dist, the test-only grpc-go stubs and the browser app's bundle
	$(BUF) generate
	$(BUF) generate --template buf.gen.grpc.yaml
	$(MAKE) web

# The browser app's bundle, committed like gen/ so building kvgate needs
# only Go. esbuild's output is the same for the same sources and version.
WEB_BUNDLE = node_modules/.bin/esbuild web/src/main.ts --bundle --platform=browser --format=esm \
	--target=es2022 --minify --legal-comments=none --log-level=warning --outfile=$(1)

.PHONY: web
web: node_modules/.stamp ## Rebuild the browser app's bundle (web/dist) from web/src
	$(call WEB_BUNDLE,web/dist/app.js)

.PHONY: checkgenerate
checkgenerate: node_modules/.stamp $(BUF) ## Fail when gen/, packages/client/dist or web/dist is not what proto/ and web/src generate
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(BUF) generate -o "$$tmp"; \
	$(BUF) generate --template buf.gen.grpc.yaml -o "$$tmp"; \
	$(call WEB_BUNDLE,$$tmp/web/dist/app.js); \
	if ! diff -r "$$tmp/gen" gen || ! diff -r "$$tmp/test/interop/gen" test/interop/gen || \
		! diff -r "$$tmp/packages/client/dist" packages/client/dist || \
		! diff -rq "$$tmp/web/dist" web/dist; then \
		echo "generated code is stale: run 'make generate' and commit the result" >&2; exit 1; \
	fi

.PHONY: lint
lint: node_modules/.stamp $(BUF) breaking ## buf lint, buf format, buf breaking, gofmt, go vet, tsc
	$(BUF) lint
	$(BUF) format -d --exit-code
	@unformatted=$$(gofmt -l $$(git ls-files '*.go')); \
	if [[ -n "$$unformatted" ]]; then echo "gofmt needed: $$unformatted" >&2; exit 1; fi
	go vet ./...
	node_modules/.bin/tsc -p tsconfig.json

# The last release whose API clients depend on: buf breaking compares
# proto/ against it, so that new versions only add fields and RPCs. The
# commit is named as well as the tag so that a clone without tags checks
# the same thing.
RELEASE_TAG = v0.1.0
RELEASE_COMMIT = 40750b33332a8e11d5918d5c7a63e419435f3b7e
.PHONY: breaking
breaking: $(BUF) ## Fail when proto/ breaks the wire or JSON form of the last release
	@ref=$$(git rev-parse -q --verify "$(RELEASE_TAG)^{commit}" || git rev-parse -q --verify "$(RELEASE_COMMIT)^{commit}") || \
		{ echo "breaking: neither $(RELEASE_TAG) nor $(RELEASE_COMMIT) is in this clone's history" >&2; exit 1; }; \
	$(BUF) breaking --against ".git#ref=$$ref"

.PHONY: build
build: ## Build kvgate and kvlocal into bin/
	go build -o $(BIN)/ ./cmd/...

.PHONY: run
run: build ## Build and start kvgate on the embedded local store
	$(BIN)/kvgate -listen $(LISTEN) -data $(DATA)

.PHONY: test
test: deps checkgenerate lint build ## The whole suite
	KVGATE_GRPCURL=$(GRPCURL) KVGATE_BUF=$(BUF) go test $(GO_TEST_FLAGS) ./...

.PHONY: bench
bench: ## Go benchmarks: kvgate beside direct REST calls on the same local store
	go test -run '^$$' -bench . -benchmem -count=1 ./bench/...

.PHONY: bench-streams
bench-streams: ## The full streaming run: 100,000 items and 200,000 keys at 20 ms per request, and 10,000 keys with include_metadata at 20 ms and 0
	go run ./cmd/kvbench

.PHONY: bench-group-commit
bench-group-commit: ## PutItem group commit: 1 to 1,000 concurrent writers at 20 ms per request, with and without it: upstream requests per item, throughput, p50 and p99
	go run ./cmd/kvgcbench

.PHONY: bench-hop
bench-hop: ## kvgate's unary calls beside httputil.ReverseProxy in front of the same local store: throughput, hop CPU and allocations per request, latency (about 11 minutes)
	go run ./cmd/kvhop

.PHONY: soak
soak: ## The full fault soak: 100,000 items, 10,000 unary calls and 1,000 GetItems calls through 10% 429/5xx and 1% dropped connections; the watch, listing, group commit, DeleteKeys and CopyItems phases at their own sizes
	go test -count=1 -timeout 60m -v -run TestSoak ./soak/ -soak.items=100000 -soak.unary=10000 -soak.getitems=1000

.PHONY: soak-memory
soak-memory: ## The memory budget test with the upstream at 500 ms: 200 streams of 1 MiB items and 50 PutItems of 25 MiB through a 256 MiB budget
	go test -count=1 -timeout 15m -v -run TestMemoryBudgetRSS ./test/interop/ -memory.full

FUZZTIME ?= 1m
.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 1m) each
	scripts/fuzz.sh $(FUZZTIME)

.PHONY: clean
clean:
	rm -rf $(BIN) node_modules

.PHONY: help
help:
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'
