# tunstack — see README.md.
GO      ?= go
BIN     := $(CURDIR)/bin/tunstack
PREFIX  ?= /usr/local
FUZZTIME ?= 15s
# Pinned so lint results do not change under us; 2026.2.2 supports Go 1.26.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

# The Debian packages the tests drive: without them the end-to-end tests
# that need them skip. The one list: .ci/run installs it with make deps.
DEPS := curl iperf3 iproute2 iputils-ping dnsutils tcpdump iptables slirp4netns passt \
	util-linux ca-certificates gcc python3 conntrack ipset podman rootlesskit runc uidmap busybox-static buildah socat

.PHONY: all build install test testdeps unit e2e fuzz bench demo lint clean deps

all: build

build:
	$(GO) build -o $(BIN) ./cmd/tunstack

# Copies the binary to $(DESTDIR)$(PREFIX)/bin.
install: build
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/tunstack

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...
	$(GO) mod tidy -diff

# Installs the missing DEPS with apt-get (as root, on Debian or Ubuntu).
deps:
	@missing=; for p in $(DEPS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	[ -z "$$missing" ] && exit 0; \
	echo "installing:$$missing"; \
	for attempt in 1 2 3; do \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null && exit 0; \
		echo "apt-get failed (attempt $$attempt); retrying" >&2; sleep 5; \
	done; exit 1

# Unit and end-to-end tests, then a short run of each fuzz target. As root
# on Debian it first installs the missing DEPS (make deps).
# End-to-end tests need root (or /dev/net/tun mode 0666) and skip otherwise;
# TUNSTACK_REQUIRE_TUN=1 turns those skips into failures (CI sets it).
test: lint testdeps unit fuzz

testdeps:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then $(MAKE) --no-print-directory deps; fi

# Library packages also run under the race detector; the end-to-end tests
# drive the built binary and run once. test/report prints go test's usual
# lines, then every skipped test with its reason.
unit:
	@mkdir -p bin; rm -f bin/.unit-failed; \
	{ $(GO) test -json -race -count=1 -timeout 15m $$($(GO) list ./... | grep -v /test$$) || touch bin/.unit-failed; \
	  $(GO) test -json -count=1 -timeout 15m ./test/ || touch bin/.unit-failed; } | $(GO) run ./test/report; \
	rc=$$?; if [ -e bin/.unit-failed ]; then rm -f bin/.unit-failed; exit 1; fi; exit $$rc

e2e:
	$(GO) test -count=1 -v ./test/

fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzInboundFrame$$' -fuzztime $(FUZZTIME) ./tun
	$(GO) test -run '^$$' -fuzz '^FuzzParseRule$$' -fuzztime $(FUZZTIME) ./netfilter
	$(GO) test -run '^$$' -fuzz '^FuzzRestore$$' -fuzztime $(FUZZTIME) ./netfilter
	$(GO) test -run '^$$' -fuzz '^FuzzParseAddrHeader$$' -fuzztime $(FUZZTIME) ./stack
	$(GO) test -run '^$$' -fuzz '^FuzzRequest$$' -fuzztime $(FUZZTIME) ./control
	$(GO) test -run '^$$' -fuzz '^FuzzFramesWithRules$$' -fuzztime $(FUZZTIME) ./netfilter

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
