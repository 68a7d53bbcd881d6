# subhost: build, test, install. See README.md for the two commands that
# matter (make demo, make test).
PREFIX  ?= /usr/local
DESTDIR ?=
GO      ?= go
BIN     := bin
PLUGINS := $(notdir $(wildcard plugins/*))
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/subhost/subhost/internal/version.Version=$(VERSION)
# Static binaries: nothing here needs cgo, a root tool should not depend on
# the host's libc, and each plugin starts half a millisecond sooner.
export CGO_ENABLED := 0
# grpcnotrace leaves out gRPC's x/net/trace (event tracing for a debug
# HTTP page nothing here serves) and with it html/template: a plugin is
# 3 MB smaller and takes 0.3 ms less CPU to start (internal/testbin
# builds the tests' binaries the same way).
BUILDFLAGS := -trimpath -tags grpcnotrace

.PHONY: all build deps test generate install demo bench clean vet deb

all: build

build:
	@mkdir -p $(BIN)/plugins
	@# bin/subhost is a small front: it boots `run --detach` itself and runs
	@# the full CLI, installed with the plugins as subhost-cli, for the rest.
	$(GO) build $(BUILDFLAGS) -ldflags '-s -w' -o $(BIN)/subhost ./cmd/subhost-front
	$(GO) build $(BUILDFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/plugins/subhost-cli ./cmd/subhost
	@for p in $(PLUGINS); do \
		echo "$(GO) build -o $(BIN)/plugins/$$p ./plugins/$$p"; \
		$(GO) build $(BUILDFLAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/plugins/$$p ./plugins/$$p || exit 1; \
	done
	@if [ -d cmd/subhost-init ]; then \
		echo "CGO_ENABLED=0 $(GO) build -o $(BIN)/plugins/subhost-init ./cmd/subhost-init"; \
		CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -ldflags '-s -w' -o $(BIN)/plugins/subhost-init ./cmd/subhost-init || exit 1; \
	fi
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -ldflags '-s -w' -o $(BIN)/plugins/subhost-monitor ./cmd/subhost-monitor
	CGO_ENABLED=0 $(GO) build $(BUILDFLAGS) -ldflags '-s -w' -o $(BIN)/plugins/subhost-launch ./cmd/subhost-launch
	@chmod 0755 $(BIN) $(BIN)/plugins

# What the tests use from Debian: a static busybox for guest roots,
# mkfs.ext4 -d, mkfs.btrfs (btrfs roots), ip, losetup/nsenter/unshare,
# pgrep; lintian for the
# package's test (dpkg-deb comes with dpkg).
TEST_DEBS := busybox-static e2fsprogs btrfs-progs iproute2 util-linux procps lintian

# ansible-core (and its python3) for the Ansible collection's tests.
TEST_DEBS += ansible-core

deps:
	@bash scripts/deps.sh $(TEST_DEBS)

# Tests touch the real kernel (mounts, loop devices, netns) and check that
# the host is left as it was, so packages run one at a time (-p 1).
test: deps build
	$(GO) vet ./...
	SUBHOST_BIN=$(CURDIR)/$(BIN) $(GO) test -p 1 -count=1 -timeout 25m ./...

vet:
	$(GO) vet ./...

# Generated code is committed; this reproduces it byte for byte with the
# pinned generator versions (protoc itself from Debian's protobuf-compiler).
PROTOC_GEN_GO      := google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
PROTOC_GEN_GO_GRPC := google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
# vtprotobuf's generator at the version go.mod requires (the one gRPC
# itself requires: another would move gRPC).
PROTOC_GEN_GO_VTPROTO := github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto@v0.6.1-0.20240319094008-0393e58bdf10
TOOLS := $(CURDIR)/.tools

generate:
	GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO)
	GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO_GRPC)
	GOBIN=$(TOOLS) $(GO) install $(PROTOC_GEN_GO_VTPROTO)
	PATH=$(TOOLS):$$PATH protoc -I sdk \
		--go_out=sdk/internal/stagepb --go_opt=paths=source_relative \
		--go-grpc_out=sdk/internal/stagepb --go-grpc_opt=paths=source_relative \
		--go-vtproto_out=sdk/internal/stagepb --go-vtproto_opt=paths=source_relative,features=marshal+unmarshal+size \
		sdk/stage.proto

install: build
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/subhost/plugins
	install -m 0755 $(BIN)/subhost $(DESTDIR)$(PREFIX)/bin/subhost
	ln -sf subhost $(DESTDIR)$(PREFIX)/bin/pretend-boot
	ln -sf subhost $(DESTDIR)$(PREFIX)/bin/control
	install -m 0755 $(BIN)/plugins/* $(DESTDIR)$(PREFIX)/lib/subhost/plugins/

# bin/subhost_VERSION_ARCH.deb, with dpkg-deb from a tree staged out of
# `make build` (scripts/mkdeb.sh says why not dpkg-buildpackage).
deb: build
	bash scripts/mkdeb.sh $(BIN) $(BIN) $(VERSION)

# Boots a busybox subhost, shows it serving over a bridge, cleans up (root).
demo:
	bash demo/demo.sh

clean:
	rm -rf $(BIN)

# Boot and stop latency of a busybox guest against a bare unshare +
# pivot_root floor, and the supervisor's memory (root; see bench/doc.go).
bench: build
	$(GO) run ./bench -bin $(BIN) $(BENCHFLAGS)
