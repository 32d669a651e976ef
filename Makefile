# The README's commands: `go run ./cmd/unstuck demo` and `make test`.
GO ?= go
# What the tests need on PATH, as BINARY:DEBIAN_PACKAGE:BREW_PACKAGE.
TEST_DEPS := redis-server:redis-server:redis redis-cli:redis-tools:redis redis-sentinel:redis-sentinel:redis chromium:chromium:--cask chromium node:nodejs:node npm:npm:node

# What `make stress` needs on top of TEST_DEPS (not installed by `make test`).
STRESS_DEPS := stress-ng:stress-ng:stress-ng
# How many times `make stress` runs the suite, and which packages.
RUNS ?= 5
PKGS ?= ./...

.PHONY: test deps fmt-check vet staticcheck gotest bench stress

## test: everything CI runs; fails on any formatting, vet, staticcheck or test failure.
test: deps fmt-check vet staticcheck gotest

deps:
	@scripts/ensure-deps.sh $(TEST_DEPS)

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt wants to rewrite:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

# staticcheck is pinned in go.mod as a tool dependency.
staticcheck:
	$(GO) tool staticcheck ./...

gotest:
	$(GO) test -race -count=1 -timeout 20m ./...

## bench: the Go benchmarks; bench/README.md lists the side-by-side scripts.
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...

## stress: the tests RUNS times (default 5) with stress-ng keeping the CPUs
## busy; reports which runs failed. PKGS narrows it, e.g.
## make stress RUNS=3 PKGS="./session/... ./jobs/... ./realtime/..."
stress:
	@scripts/ensure-deps.sh $(TEST_DEPS) $(STRESS_DEPS)
	@GO=$(GO) scripts/stress.sh $(RUNS) $(PKGS)
