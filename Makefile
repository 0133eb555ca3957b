# OneOffice provisioner. `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
GO ?= go
BIN := bin
K6_VERSION := v1.8.1

.PHONY: help build services migrate run test test-faults smoke load bench fuzz prom-check cluster-test chaos images fmt vet clean

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

build: ## build bin/gateway and bin/worker
	$(GO) build -o $(BIN)/ ./gateway ./worker

services: ## make sure PostgreSQL, Redis and RabbitMQ answer on loopback (start or install them)
	bash scripts/services.sh

migrate: build ## apply the database migrations
	$(BIN)/gateway migrate

run: services build ## everything up: migrate, print a demo key, one gateway and two workers (Ctrl-C stops all; TRACES=1: and Jaeger)
	TRACES=$(TRACES) bash scripts/run.sh

# The fault tests: brokers, databases and endpoints cut, killed or alarmed,
# private servers. `make test` leaves them to `make test-faults`, which CI runs
# after it; a test named here runs there, every other test in `make test`.
FAULT_TESTS := ^(TestWebhookReceiverDownForAMinuteLosesNothing|TestWebhookDispatcherKilledMidDeliveryLosesNothing|TestMemoryAlarm|TestDatabaseOutageLosesNoCommand|TestDatabaseOutageDuringConcurrentCreatesLosesNoCommand|TestRedisDownAnswers503AndEnqueuesNothing|TestBrokerDownAnswers503|TestCancelledConsumer|TestWorkerWaitsForTheDatabaseAtStart|TestCustomerCreatedWhileTheDiskIsReadOnly|TestStalledWriteHoldsNoCaller|TestACommandAnswered202IsCarriedUntilConfirmed|TestOpenRedisFollowsSentinel)$$
FAULT_PACKAGES := ./gateway/e2e ./gateway/internal/rpc ./shared/deps

test: services ## everything the tests need, then all the tests but the fault tests (under 5 minutes)
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 20m -skip '$(FAULT_TESTS)' ./...

test-faults: services ## the fault tests: services cut, killed or alarmed under the gateway and workers
	@want=$$(tr '|' '\n' <<< '$(FAULT_TESTS)' | wc -l); \
	got=$$(sed -nE 's/^func (Test\w+)\(.*/\1/p' $(addsuffix /*_test.go,$(FAULT_PACKAGES)) | grep -cE '$(FAULT_TESTS)'); \
	[ "$$got" -eq "$$want" ] || { echo "FAULT_TESTS names $$want tests, $(FAULT_PACKAGES) hold $$got of them" >&2; exit 1; }
	$(GO) test -count=1 -timeout 20m -run '$(FAULT_TESTS)' $(FAULT_PACKAGES)

smoke: services ## the operations-contract smoke check (needs ../shared/tools)
	bash ../shared/tools/contract-smoke.sh

load: services ## k6 load test against an isolated stack (builds k6 into bin/ if missing; SCRIPT=, PROFILE=load|soak|spike, RATE=, DURATION=)
	bash scripts/load.sh $(or $(SCRIPT),scripts/k6/load.js)

bench: services ## raw broker ceiling vs end-to-end throughput and latency, own CPU per request, the asynq peer beside it
	. scripts/lib/godebug.sh && $(GO) run ./scripts/lab bench $(BENCH_FLAGS)

.PHONY: soak
soak: services ## the partner mix in an open loop at 80% of its peak for 10 minutes: throughput, p50/p99, RSS and goroutines per minute (SOAK_FLAGS=)
	. scripts/lib/godebug.sh && $(GO) run ./scripts/lab soak $(SOAK_FLAGS)

.PHONY: preauth-bench
preauth-bench: services ## a valid partner's latency, quiet and under 5,000 random-key calls a second (PREAUTH_FLAGS=)
	. scripts/lib/godebug.sh && $(GO) run ./scripts/lab preauth $(PREAUTH_FLAGS)

# Fuzz targets, package:name. Each runs FUZZTIME; a crash is written to the
# package's testdata/fuzz/ as a new corpus entry, which `make test` replays.
FUZZTIME ?= 5m
FUZZ_TARGETS := ./gateway/internal/api:FuzzParseEnvelope ./shared/protocol:FuzzDecodeParams ./shared/protocol:FuzzDecodeCommand

fuzz: ## run every fuzz target for FUZZTIME (default 5m; CI runs 20000 inputs each)
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; echo "fuzz $$name in $$pkg for $(FUZZTIME)"; \
	  $(GO) test -run '^$$' -fuzz "^$$name$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	done

.PHONY: console-test
console-test: services ## the partner console in headless Chromium against an isolated stack; screenshots in bin/console-*.png
	bash scripts/console-test.sh

.PHONY: openapi openapi-lint
openapi: ## write gateway/internal/openapi/openapi.json again from the method registry (commit it)
	$(GO) generate ./gateway/internal/openapi

openapi-lint: ## lint the OpenAPI document with Redocly CLI (installed once from npm into bin/redocly)
	bash scripts/openapi-lint.sh

prom-check: services ## promtool checks, then every dashboard query and alert against a real Prometheus
	bash scripts/prom-check.sh

cluster-test: services ## three-node RabbitMQ cluster on this host, nodes lost under load, effects checked in PostgreSQL (CLUSTER_FLAGS=, KEEP=1)
	. scripts/lib/godebug.sh && $(GO) run ./scripts/lab cluster $(if $(filter 1,$(KEEP)),-keep) $(CLUSTER_FLAGS)

chaos: services ## the fault suite: workers killed, frozen and stopped, broker, Redis and PostgreSQL restarted, links cut 20 s (root), under load; effects checked (CHAOS_FLAGS=, KEEP=1)
	. scripts/lib/godebug.sh && $(GO) run ./scripts/lab chaos $(if $(filter 1,$(KEEP)),-keep) $(CHAOS_FLAGS)

# The image of deploy/Dockerfile (both binaries); needs a Docker engine with BuildKit.
IMAGE ?= oneoffice/provisioner
IMAGE_TAG ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)

images: ## build the image oneoffice/provisioner (IMAGE=, IMAGE_TAG=) from deploy/Dockerfile; needs a Docker engine
	docker build -f deploy/Dockerfile -t $(IMAGE):$(IMAGE_TAG) -t $(IMAGE):latest .

vet: ## go vet
	$(GO) vet ./...

fmt: ## gofmt the tree
	gofmt -w $$(git ls-files '*.go')

clean: ## remove build output
	rm -rf $(BIN)/gateway $(BIN)/worker
