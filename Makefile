# Berth. `make run` builds, installs and runs the daemon in the foreground;
# `make test` is what CI runs. Both work as root on a fresh Debian 12.
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH)
GO ?= go

PLUGINS := runc kata overlay cni monitor
# Small programs plugins run next to themselves, one per container or pod
# (each would otherwise be a re-executed plugin binary): DIR:NAME.
HELPERS := monitor:berth-conmon runc:berth-pod-init runc:berth-gvisor-keeper
PREFIX ?= /usr/local
LIBEXEC ?= $(PREFIX)/libexec/berth
CONFDIR ?= /etc/berth
# Keep cgo needs small for containers/image and containers/storage.
TAGS := containers_image_openpgp,exclude_graphdriver_btrfs,exclude_graphdriver_zfs,containers_image_docker_daemon_stub
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.1.0-dev)
COMMIT ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X github.com/berth-cri/berth/internal/version.Version=$(VERSION) -X github.com/berth-cri/berth/internal/version.Commit=$(COMMIT)
# cri-tools (crictl, critest), pinned, built from the Go module proxy.
CRI_TOOLS_VERSION := v1.37.0
CRICTL := build/tools/crictl-$(CRI_TOOLS_VERSION)
# No cgo: nothing Berth uses needs it (containers/image's sqlite blob-info
# cache falls back to memory), and static binaries use less memory per process.
GOBUILD := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
# Every go command run by make (and the builds tests run) gets the tags.
export GOFLAGS := -buildvcs=false -tags=$(TAGS)

.PHONY: all build build-standalone install run deps generate check-generate snapshot lint test test-unit test-integration memory bench-pull conformance bench bench-cycle test-conformance clean

all: build

## build: bin/berth (the host) and bin/berth-plugins, hard-linked as each plugin's name
build:
	$(GOBUILD) -o bin/berth ./cmd/berth
	$(GOBUILD) -o bin/berth-plugins ./cmd/berth-plugins
	@for p in $(PLUGINS); do ln -f bin/berth-plugins bin/berth-$$p; done
	@for h in $(HELPERS); do $(GOBUILD) -o bin/$${h#*:} ./plugins/$${h%%:*}/cmd/$${h#*:} || exit 1; done

## build-standalone: each plugin from its own main package, as a vendor builds one
build-standalone:
	@mkdir -p bin/standalone
	@for p in $(PLUGINS); do $(GOBUILD) -o bin/standalone/berth-$$p ./plugins/$$p || exit 1; done
	@for h in $(HELPERS); do $(GOBUILD) -o bin/standalone/$${h#*:} ./plugins/$${h%%:*}/cmd/$${h#*:} || exit 1; done

## deps: what Berth needs on a Debian 12 node (runc; runsc for the runsc runtime class; CNI plugins), protoc for `make generate`, busybox-static for the test images
deps:
	@missing=; for pair in runc:runc runsc:runsc protoc:protobuf-compiler; do \
	  command -v $${pair%%:*} >/dev/null || missing="$$missing $${pair#*:}"; done; \
	[ -x /usr/lib/cni/bridge ] || missing="$$missing containernetworking-plugins"; \
	[ -x /bin/busybox ] || missing="$$missing busybox-static"; \
	if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi

## install: binaries under $(PREFIX), plugins.toml in $(CONFDIR) with plugin_dir and checksums filled in
install: build
	install -d $(PREFIX)/bin $(LIBEXEC) $(CONFDIR)
	install -m 0755 bin/berth $(PREFIX)/bin/berth
	install -m 0755 bin/berth-plugins $(LIBEXEC)/berth-plugins
	@for p in $(PLUGINS); do ln -f $(LIBEXEC)/berth-plugins $(LIBEXEC)/berth-$$p; done
	@for h in $(HELPERS); do install -m 0755 bin/$${h#*:} $(LIBEXEC)/$${h#*:}; done
	@sum=$$(sha256sum $(LIBEXEC)/berth-plugins | cut -d' ' -f1); \
	sed -e 's|^plugin_dir = .*|plugin_dir = "$(LIBEXEC)"|' \
	    -e "s|^\(path = \"berth-[a-z]*\"\)$$|\1\nsha256 = \"$$sum\"|" plugins.toml > $(CONFDIR)/plugins.toml.new; \
	if [ -f $(CONFDIR)/plugins.toml ] && ! cmp -s $(CONFDIR)/plugins.toml $(CONFDIR)/plugins.toml.new; then \
	  cp $(CONFDIR)/plugins.toml $(CONFDIR)/plugins.toml.bak; echo "install: previous $(CONFDIR)/plugins.toml saved as plugins.toml.bak"; fi; \
	mv $(CONFDIR)/plugins.toml.new $(CONFDIR)/plugins.toml
	$(PREFIX)/bin/berth config --config $(CONFDIR)/plugins.toml >/dev/null

## run: set up this node, install, and run `berth serve` in the foreground (^C stops it)
run: deps install
	-$(PREFIX)/bin/berth check --config $(CONFDIR)/plugins.toml
	exec $(PREFIX)/bin/berth serve --config $(CONFDIR)/plugins.toml

## generate: regenerate the SDK's Go code from sdk/proto
generate:
	hack/generate.sh

## check-generate: fail when the committed generated code differs from sdk/proto
check-generate:
	@tmp=$$(mktemp -d); trap 'rm -rf $$tmp' EXIT; OUT=$$tmp hack/generate.sh; \
	cd sdk && for f in $$(cd $$tmp && find . -name '*.pb.go'); do \
	  cmp -s $$tmp/$$f $$f || { echo "generated code is stale: sdk/$$f (run make generate)"; exit 1; }; done; \
	n1=$$(find . -name '*.pb.go' | wc -l); n2=$$(cd $$tmp && find . -name '*.pb.go' | wc -l); \
	[ $$n1 = $$n2 ] || { echo "sdk has $$n1 generated files, sdk/proto generates $$n2 (run make generate)"; exit 1; }
	@echo "generated code is up to date"

## snapshot: record the current protos as the released wire (only when releasing)
snapshot:
	SNAPSHOT=1 hack/generate.sh

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); [ -z "$$out" ] || { echo "gofmt needed:"; echo "$$out"; exit 1; }
	$(GO) vet ./...
	cd sdk && $(GO) vet ./...

## test: everything CI runs (integration tests need root)
test: deps check-generate lint test-unit test-integration test-conformance

# The critest specs that pass today, run by CI so a regression in one fails
# the build: the whole suite but the parts whose issues have not landed yet
# (image volumes, CNI networking, the streaming server, NetworkReady). Shrink
# the skip list as they land; the full suite is `make conformance`.
CONFORMANCE_CI_SKIP := Image Volume|Networking runtime|Multiple Containers.*network|Streaming runtime|should return runtime conditions
test-conformance:
	SKIP='$(CONFORMANCE_CI_SKIP)' hack/conformance.sh validate

test-unit:
	$(GO) test -race -short ./...
	cd sdk && $(GO) test -race ./...

test-integration: $(CRICTL)
	CRICTL=$(abspath $(CRICTL)) $(GO) test -race -count=1 -timeout 40m -run Integration -v ./... 2>&1 | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)' ; exit $${PIPESTATUS[0]}

## crictl from cri-tools, pinned, built from the Go module proxy
$(CRICTL):
	@mkdir -p build/tools
	GOFLAGS= GOBIN=$(abspath build/tools) $(GO) install sigs.k8s.io/cri-tools/cmd/crictl@$(CRI_TOOLS_VERSION)
	mv build/tools/crictl $@

## memory: PSS of an idle host and its plugins, 3 s and 30 s after start (see README)
memory: build
	SETTLE=3 hack/memory.sh
	SETTLE=30 hack/memory.sh

## conformance: critest v1.37.0 offline against a private berth serve; FOCUS= and SKIP= pass through (root)
conformance:
	hack/conformance.sh validate

## bench: critest's benchmark mode (20 pods, 20 containers, 20 pulls, sequential) and runc run for scale (root)
bench:
	hack/conformance.sh bench

## bench-cycle: crictl pod cycle (runp..rmp) on Berth vs a private containerd in the same run, runc run for scale, monitor PSS per pod; N= and M= pass through (root)
bench-cycle:
	hack/cycle-bench.sh

## bench-pull: pull of a 50 MB, 10-layer image from a registry on 127.0.0.1, Berth against skopeo (root)
bench-pull:
	$(GO) test -run '^$$' -bench Pull50MB -benchtime 5x -count 3 ./plugins/overlay/internal/images/

clean:
	rm -rf bin build
