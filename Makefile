# sqlws — see README.md. `make run` and `make test` do all their own set-up.
GO        ?= go
BIN       ?= bin/sqlws
BENCH_BIN ?= bin/sqlws-bench
CLUSTER_BIN ?= bin/sqlws-cluster
NATS_BIN  ?= bin/nats-server
DEMO_DB   ?= sqlws-demo.db
ADDR      ?= 127.0.0.1:8080
NATS_ADDR ?= 127.0.0.1:4222
EDGE_ADDRS ?= 127.0.0.1:8081,127.0.0.1:8082
CLUSTER_DIR ?= .cluster
STATICCHECK_VERSION ?= v0.8.2
GOIMPORTS_VERSION   ?= v0.52.0

.PHONY: build run run-cluster nats-server test test-go fuzz bench bench-go bench-load lint check screenshot deps deps-test clean

build:
	$(GO) build -o $(BIN) ./cmd/sqlws
	$(GO) build -o $(BENCH_BIN) ./cmd/sqlws-bench
	$(GO) build -o $(CLUSTER_BIN) ./cmd/sqlws-cluster

# Serves a demo database created on first run (a `todos` table with a few rows).
run: build
	./$(BIN) serve --db $(DEMO_DB) --addr $(ADDR) --demo

# nats-server at the version go.mod requires, built from the Go module proxy.
nats-server:
	$(GO) build -o $(NATS_BIN) github.com/nats-io/nats-server/v2

# The demo database scaled out (docs/scaling.md): nats-server with JetStream on
# $(NATS_ADDR) (store and logs in $(CLUSTER_DIR)), a source publishing to it on $(ADDR)
# and two edges on $(EDGE_ADDRS). Prints the URLs; Ctrl-C stops all of them.
# FRESH=1 starts with an empty JetStream store (the source publishes its changelog again).
run-cluster: build nats-server
	./$(CLUSTER_BIN) --sqlws $(BIN) --nats-server $(NATS_BIN) --db $(DEMO_DB) --demo \
	  --dir $(CLUSTER_DIR) --nats-addr $(NATS_ADDR) --source-addr $(ADDR) --edge-addrs $(EDGE_ADDRS) \
	  $(if $(FRESH),--fresh)

# Everything CI runs. Installs the sqlite3 CLI, Chromium, Node.js and Node's ws
# package (an independent WebSocket client for the protocol tests) when missing.
test: deps-test
	$(GO) vet ./...
	@unformatted=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$unformatted" ]; then echo "gofmt needed: $$unformatted"; exit 1; fi
	$(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) fuzz

# A count, not a duration: with a duration, Go 1.26's fuzz coordinator can fail a
# healthy target with "context deadline exceeded" as the time runs out on a busy
# machine (golang/go#75804, fixed in Go 1.27). 50,000 inputs take about 5–15 s here.
FUZZTIME ?= 50000x
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseFilter$$' -fuzztime $(FUZZTIME) ./query
	$(GO) test -run '^$$' -fuzz '^FuzzParseWhere$$' -fuzztime $(FUZZTIME) ./query
	$(GO) test -run '^$$' -fuzz '^FuzzKeyFromImage$$' -fuzztime $(FUZZTIME) ./capture
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeImage$$' -fuzztime $(FUZZTIME) ./capture
	$(GO) test -run '^$$' -fuzz '^FuzzParseFrame$$' -fuzztime $(FUZZTIME) ./client

deps-test:
	@command -v sqlite3 >/dev/null 2>&1 || { apt-get update && apt-get install -y sqlite3; }
	@command -v chromium >/dev/null 2>&1 || test -x /usr/bin/chromium || { apt-get update && apt-get install -y chromium; }
	@command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || { apt-get update && apt-get install -y nodejs npm; }
	@test -f e2e/testdata/nodews/node_modules/ws/package.json || (cd e2e/testdata/nodews && npm ci --no-audit --no-fund)

bench: bench-go bench-load

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./models ./store ./capture ./changelog ./query ./crud ./fanout ./ws ./web ./client ./cmd/sqlws-bench

bench-load: build nats-server
	./$(BENCH_BIN) --sqlws $(BIN) --short

lint:
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) ./...

# What CI checks besides the tests: go.mod and go.sum tidy (no direct requirement
# marked indirect), staticcheck clean, and every file formatted with its imports
# grouped (standard library, others, this module), as goimports -local writes them.
check: lint
	$(GO) mod tidy -diff
	@bad=$$($(GO) run golang.org/x/tools/cmd/goimports@$(GOIMPORTS_VERSION) -local github.com/sqlws/sqlws -l $$(git ls-files '*.go')); \
	  if [ -n "$$bad" ]; then echo "goimports -local github.com/sqlws/sqlws needed: $$bad"; exit 1; fi

screenshot: deps-test
	SQLWS_SCREENSHOT=1 $(GO) test -count=1 -run 'TestBrowserScreenshot' ./e2e

clean:
	rm -rf bin $(DEMO_DB) $(DEMO_DB)-wal $(DEMO_DB)-shm $(CLUSTER_DIR)
