# shadowcube — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
STATICCHECK_VERSION ?= v0.8.2
TEST_TIMEOUT ?= 25m
PKGS ?= ./...
IMAGE ?= shadowcube:$(VERSION)

.PHONY: help build test test-short test-race test-faults bench bench-short soak lint fmt demo clean image

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*## "}; {printf "  %-12s %s\n", $$1, $$2}'

build: ## build bin/shadowcube
	$(GO) build -ldflags "$(LDFLAGS)" -o bin/shadowcube ./cmd/shadowcube

test: ## all unit and integration tests, race detector on (needs PostgreSQL binaries)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(TESTFLAGS) $(PKGS)

test-race: test ## same as test (the race detector is always on)

FAULT_BIRTHS ?= 800
FAULT_RATE ?= 40

test-faults: ## the 3-node cluster fault test, long version (FAULT_BIRTHS births at FAULT_RATE/s, node losses round after round while load runs; make test runs a short one)
	SHADOWCUBE_TEST_CLUSTER_BIRTHS=$(FAULT_BIRTHS) SHADOWCUBE_TEST_CLUSTER_RATE=$(FAULT_RATE) $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) -v -run '^TestClusterPipelineSurvivesNodeLoss$$' ./cmd/shadowcube/

test-short: ## the quicker subset: -short skips the slowest tests (large transactions, long property runs, benchmarks' full sizes); integration tests still run
	$(GO) test -short -count=1 $(PKGS)

bench: ## benchmarks with ratios against limits measured in the same run
	set -o pipefail; $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 60m $(PKGS) | grep -E --line-buffered '^(bench |ok|FAIL|---|panic)'

bench-short: ## benchmarks in short mode (proves they run; CI)
	$(GO) test -short -run '^$$' -bench . -benchtime 1x -timeout 20m $(PKGS)

SOAK_DURATION ?= 10m
SOAK_RATE ?= 100

soak: ## B8: tap, cdc, sync, shadow and compare as separate processes of the built binary under SOAK_RATE req/s for SOAK_DURATION; peak RSS and flatness per component (build tag soak)
	set -o pipefail; SOAK_DURATION=$(SOAK_DURATION) SOAK_RATE=$(SOAK_RATE) $(GO) test -tags soak -count=1 -run '^$$' -bench '^BenchmarkB8Soak$$' -benchtime 1x -timeout 60m ./cmd/shadowcube/ | grep -E --line-buffered '^(bench |soak |ok|FAIL|---|panic)'

lint: ## gofmt, go vet, staticcheck (pinned)
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')

clean: ## remove build output
	rm -rf bin

demo: build ## run the whole pipeline on embedded infrastructure and print the verdict
	SHADOWCUBE_METRICS_ADDR=127.0.0.1:0 bin/shadowcube demo $(DEMOFLAGS)

image: ## container image shadowcube:<version> from the Dockerfile (needs docker)
	@command -v docker >/dev/null || { echo "make image: docker not found (deploy/docker_test.go checks the Dockerfile's build without it)"; exit 1; }
	docker build --build-arg VERSION=$(VERSION) --build-arg COMMIT=$(COMMIT) -t $(IMAGE) .
