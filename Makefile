# tunstack — see README.md.
GO      ?= go
BIN     := $(CURDIR)/bin/tunstack
FUZZTIME ?= 15s

.PHONY: all build test unit e2e fuzz bench demo lint clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/tunstack

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Unit and end-to-end tests, then a short run of each fuzz target.
# End-to-end tests need root (or /dev/net/tun mode 0666) and skip otherwise;
# TUNSTACK_REQUIRE_TUN=1 turns those skips into failures (CI sets it).
test: lint unit fuzz

# Library packages also run under the race detector; the end-to-end tests
# drive the built binary and run once.
unit:
	$(GO) test -race -count=1 -timeout 15m $$($(GO) list ./... | grep -v /test$$)
	$(GO) test -count=1 -timeout 15m ./test/

e2e:
	$(GO) test -count=1 -v ./test/

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzInboundFrame$$' -fuzztime $(FUZZTIME) ./tun
	$(GO) test -run '^$$' -fuzz '^FuzzParseRule$$' -fuzztime $(FUZZTIME) ./netfilter
	$(GO) test -run '^$$' -fuzz '^FuzzRestore$$' -fuzztime $(FUZZTIME) ./netfilter

# Side-by-side throughput and latency against slirp4netns, pasta and the
# kernel's veth (root; see bench/README.md).
bench: build
	BIN=$(BIN) bash bench/run.sh

# Builds tunstack, serves HTTP on the host's 127.0.0.1 and fetches it from
# inside a sandbox through the gateway address 10.0.2.2.
demo: build
	@$(GO) build -o bin/demoserver ./test/demoserver
	@bin/demoserver -lifetime 30s > bin/demo.port & pid=$$!; \
	for i in $$(seq 50); do [ -s bin/demo.port ] && break; sleep 0.1; done; \
	port=$$(cat bin/demo.port); rc=0; \
	echo "+ tunstack run -- curl -sS http://10.0.2.2:$$port/"; \
	$(BIN) run -- curl -sS http://10.0.2.2:$$port/ || rc=$$?; \
	kill $$pid 2>/dev/null; rm -f bin/demo.port; exit $$rc

clean:
	rm -rf bin

# Longer differential run of tunstack's iptables against the real
# iptables-legacy (root; make test runs the short one): DIFFTEST_N
# commands from seed DIFFTEST_SEED, disagreements written to
# DIFFTEST_RECORD as corpus lines.
.PHONY: difftest
difftest:
	DIFFTEST_N=$${DIFFTEST_N:-5000} DIFFTEST_SEED=$${DIFFTEST_SEED:-$$(date +%s)} \
	$(GO) test -count=1 -timeout 30m -v -run Against ./netfilter/internal/difftest/
