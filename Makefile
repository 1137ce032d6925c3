# flatmesh: `make help` lists the targets. Root tests (network namespaces,
# real agents) run when make runs as root and skip themselves otherwise.

GO           ?= go
# Go is often installed in /usr/local/go and missing from sudo's PATH.
export PATH  := $(PATH):/usr/local/go/bin
BIN          := $(CURDIR)/bin/flatmesh
# What `flatmesh version` prints: the git description of the checkout.
VERSION      ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS      := -X main.version=$(VERSION)
PKGS         := ./...
TEST_TIMEOUT ?= 30m
TEST_FLAGS   ?=
FUZZTIME     ?= 15s
BENCH_ARGS   ?=
SCALE_HOSTS  ?= 50
# The lab: make lab HOSTS=5 MODE=flat CONTAINERS=1 NAME=mylab
HOSTS        ?= 3
MODE         ?= vxlan
CONTAINERS   ?= 2
NAME         ?= fmlab
LAB_ARGS     ?=
# make deb: Debian version from a v* tag, else 0.0.0~git<date>.<commit>.
DEB_VERSION  ?= $(shell v=$$(git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//;s/-/+/g'); \
	[ -n "$$v" ] && echo "$$v" || echo "0.0.0~git$$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date +%Y%m%d).$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)")
DEB_ARCH     ?= $(shell dpkg --print-architecture 2>/dev/null || $(GO) env GOARCH)
DEB          := $(CURDIR)/bin/flatmesh_$(DEB_VERSION)_$(DEB_ARCH).deb
# The systemd rig: make rig RIG_NAME=fmrig
RIG_NAME     ?= fmrig

.DEFAULT_GOAL := help
.PHONY: help build test test-unit lint vet fmt lab lab-down lab-status lab-ping bench bench-go fuzz clean bench-scale deb rig rig-down

help: ## list the targets
	@echo "flatmesh make targets:"
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-11s %s\n", $$1, $$2}' $(MAKEFILE_LIST)
	@echo "variables: HOSTS=$(HOSTS) MODE=$(MODE) CONTAINERS=$(CONTAINERS) NAME=$(NAME) TEST_TIMEOUT=$(TEST_TIMEOUT) FUZZTIME=$(FUZZTIME) BENCH_ARGS=$(BENCH_ARGS)"

build: ## build bin/flatmesh and bin/flatmesh-cni (the CNI plugin)
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/flatmesh
	$(GO) build -ldflags '$(LDFLAGS)' -o $(CURDIR)/bin/flatmesh-cni ./cmd/flatmesh-cni

test: vet ## go vet, then every test with -race (root tests too when run as root)
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(TEST_FLAGS) $(PKGS)

test-unit: ## unit tests only (-short: root lab tests skip), with -race
	$(GO) test -race -short -timeout 10m $(TEST_FLAGS) $(PKGS)

vet: ## go vet
	$(GO) vet $(PKGS)

lint: vet ## gofmt (must list nothing) and go vet
	@out="$$(find . -name '*.go' -not -path './.git/*' -not -path './bin/*' -exec gofmt -l {} +)"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

fmt: ## gofmt -w every Go file
	gofmt -w $$(find . -name '*.go' -not -path './.git/*')

lab: build ## build, then bring up the lab (root): HOSTS=3 MODE=vxlan|flat CONTAINERS=2 NAME=fmlab
	$(BIN) lab up --name $(NAME) --hosts $(HOSTS) --mode $(MODE) --containers $(CONTAINERS) $(LAB_ARGS)

lab-down: ## tear the lab down (NAME=fmlab)
	@if [ -x $(BIN) ]; then $(BIN) lab down --name $(NAME); else $(GO) run ./cmd/flatmesh lab down --name $(NAME); fi

lab-status: ## show the lab's hosts, agents and containers
	$(BIN) lab status --name $(NAME)

lab-ping: ## ping every container from every other one and from the other hosts
	$(BIN) lab ping --name $(NAME)

bench: build ## lab benchmarks (root): flatmesh vs hand-built paths, attach, join, switch-over; BENCH_ARGS=--json|--only vxlan|--repeat N
	$(GO) run ./deploy/bench --binary $(BIN) $(BENCH_ARGS)

bench-scale: build ## scale lab (root): SCALE_HOSTS agent hosts (default 50), LAN gossip timing; BENCH_ARGS=--json
	$(GO) run ./deploy/bench --binary $(BIN) --scale $(SCALE_HOSTS) $(BENCH_ARGS)

bench-go: ## Go micro-benchmarks (go test -bench): IPAM allocation, gossip state size, first block
	$(GO) test -run '^$$' -bench . -benchmem -timeout $(TEST_TIMEOUT) $(PKGS)

fuzz: ## run every fuzz target for FUZZTIME (default 15s) each
	@set -e; found=0; \
	for dir in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -r -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$dir/*_test.go | sed 's/^func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			found=1; echo "==> $$dir $$f ($(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$dir; \
		done; \
	done; \
	[ $$found = 1 ] || echo "no fuzz targets found"

deb: ## bin/flatmesh_<version>_<arch>.deb (static binaries, flatmesh-cni too when cmd/flatmesh-cni exists)
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(DEB_VERSION)" -o $(BIN) ./cmd/flatmesh
	@if [ -d cmd/flatmesh-cni ]; then echo "building bin/flatmesh-cni"; \
		CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(DEB_VERSION)" -o bin/flatmesh-cni ./cmd/flatmesh-cni; \
	else rm -f bin/flatmesh-cni; fi
	deploy/deb/build.sh $(DEB_VERSION) $(DEB_ARCH) bin bin

rig: deb ## (root) 3 systemd-nspawn machines on a lab switch, the .deb installed in each (RIG_NAME=fmrig)
	$(GO) run ./deploy/rig/rigctl up --name $(RIG_NAME) --deb $(DEB)

rig-down: ## remove the rig's machines, namespaces and mounts (RIG_NAME=fmrig)
	$(GO) run ./deploy/rig/rigctl down --name $(RIG_NAME)

clean: ## remove bin/
	rm -rf bin
