# cri-mini: `make run` starts the daemon with defaults, `make test` runs every test.
# Both install what they need on a fresh Debian 12 machine (run as root).

GO ?= go
BIN := _output/bin
VERSION ?= $(shell git describe --tags --dirty 2>/dev/null || echo 0.1.0-dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.gitCommit=$(COMMIT)
PREFIX ?= /usr/local
CNI_CONF_DIR ?= /etc/cni/net.d
CNI_BIN_DIR ?= /opt/cni/bin

.PHONY: all build test unit integration critest cgroupv2 bench run lint install clean deps

all: build

# Debian packages, and the CNI plugins that root tests use (built into _output/cni/bin only).
deps:
	hack/install-deps.sh
	hack/build-cni-plugins.sh ""

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/cri-mini ./cmd/cri-mini
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/cri-mini-monitor ./cmd/cri-mini-monitor

# Unit tests (everything not needing a running daemon), with the race detector.
unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v -e /test/e2e -e /test/critest)

# Root integration tests that drive a real daemon over its socket, one of them through a
# standalone kubelet (built from the Go module proxy by hack/build-kubelet.sh).
integration: build
	hack/build-kubelet.sh
	CRI_MINI_BIN=$(CURDIR)/$(BIN)/cri-mini KUBELET_BIN=$(CURDIR)/$(BIN)/kubelet \
		$(GO) test -count=1 -timeout 20m ./test/e2e/... ./test/critest/...

critest:
	test/critest/run.sh

# The isolation and resource tests again on cgroup v2, in a QEMU guest (TCG) booted from
# Debian's kernel: this host's cgroup v1 cannot show them.
cgroupv2:
	hack/cgroupv2-vm.sh

test: deps lint unit critest integration cgroupv2

bench:
	test/critest/run.sh --benchmark

run: deps build
	hack/install-cni.sh --conf-dir $(CNI_CONF_DIR) --bin-dir $(CNI_BIN_DIR)
	$(BIN)/cri-mini

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

install: build
	install -D -m 0755 $(BIN)/cri-mini $(DESTDIR)$(PREFIX)/bin/cri-mini
	install -D -m 0755 $(BIN)/cri-mini-monitor $(DESTDIR)$(PREFIX)/bin/cri-mini-monitor

clean:
	rm -rf _output
