# Qinba: `make run` and `make test` are all a newcomer needs.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
BIN := bin/qinba
ADDR ?= 127.0.0.1:8080

.PHONY: run build test lint bench soak fuzz tools clean

build:
	$(GO) build -o $(BIN) ./cmd/qinba

## run: private database, migrations, demo data, server and UI on $(ADDR); demo logins printed.
run: build
	$(BIN) serve --addr $(ADDR) --migrate --seed-demo

## lint: go vet and gofmt.
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './var/*')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## test: lint, then every test with the race detector against a real PostgreSQL (and Chromium).
test: lint
	@bash scripts/ensure-test-deps.sh
	@set -o pipefail; status=0; \
	$(GO) test -race -count=1 -timeout 12m ./... || status=$$?; \
	$(GO) run ./cmd/qinba devdb stop --dir var/pgtest >/dev/null 2>&1 || true; \
	exit $$status

## bench: the benchmarks reported in the README (see there for what each measures).
bench:
	@bash scripts/bench.sh

## soak: the long reliability tests.
soak:
	$(GO) test -race -count=1 -timeout 60m -run 'Soak' -tags soak ./...

clean:
	rm -rf bin
	-$(GO) run ./cmd/qinba devdb stop --dir var/pgtest
	-$(GO) run ./cmd/qinba devdb stop --dir var/pg
