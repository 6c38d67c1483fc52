# u7s: build, provision and test a rootless Kubernetes node.
# Every pinned version comes from internal/version/versions.env.

SHELL := /bin/bash
.DEFAULT_GOAL := all

include internal/version/versions.env

GO ?= go
OUTPUT := _output
BIN := $(OUTPUT)/bin
U7S := $(BIN)/u7s
REGISTRY ?= registry.local/k8s-p10
# `make components COMPONENTS="crio runc"` builds only those.
COMPONENTS ?=
# Build tags of u7s, for every build and test of its packages (scripts/test.sh reads them with
# `make print-u7s-tags`): containers/image's signature package (internal/signing) with its pure-Go
# OpenPGP code instead of gpgme, which needs cgo and libgpgme-dev; u7s uses sigstore signatures only.
U7S_TAGS := containers_image_openpgp
# The key pair `make images` signs with, made once (u7s images keygen): its .pub is what the
# test nodes trust; the passphrase is $U7S_SIGNING_PASSPHRASE (empty unless set).
SIGNING_DIR := $(OUTPUT)/signing
SIGN_KEY := $(SIGNING_DIR)/u7s-signing.key
SIGN_PUB := $(SIGNING_DIR)/u7s-signing.pub

# The one version of u7s: the release of versions.env, plus the commit when built from git.
U7S_COMMIT := $(shell git rev-parse --short HEAD 2>/dev/null)
U7S_VERSION ?= $(U7S_RELEASE)$(if $(U7S_COMMIT),+git$(U7S_COMMIT))

# Kubernetes' version stamps, the same for every Kubernetes binary and for u7s itself: u7s links
# kubeadm, and kubeadm picks its image tags and checks from component-base's version.
# buildDate is the release's own (the module proxy's commit time), so builds are reproducible. The
# proxy gives the release's commit (Origin.Hash) only for some modules, and not for k8s.io/kubernetes
# here: without it gitCommit is not stamped and keeps upstream's marker for a build from a source
# archive ($$Format:%H$$, with gitTreeState=archive), never an empty or made-up commit.
# Evaluated once, and only by targets that use it.
KUBE_RELEASE_INFO = $(eval KUBE_RELEASE_INFO := $$(shell $(GO) mod download -json k8s.io/kubernetes@$(KUBERNETES_VERSION) 2>/dev/null \
	| jq -r '(.Info // empty), (.Origin.Hash // empty)' | { read -r info; read -r hash; jq -r .Time "$$$$info"; echo "$$$$hash"; } 2>/dev/null))$(KUBE_RELEASE_INFO)
KUBE_VERSION_PARTS = $(subst ., ,$(patsubst v%,%,$(KUBERNETES_VERSION)))
KUBE_VERSION_PKGS := k8s.io/component-base/version k8s.io/client-go/pkg/version
KUBE_LDFLAGS = $(foreach p,$(KUBE_VERSION_PKGS),\
	-X $(p).gitVersion=$(KUBERNETES_VERSION) \
	-X $(p).gitMajor=$(word 1,$(KUBE_VERSION_PARTS)) \
	-X $(p).gitMinor=$(word 2,$(KUBE_VERSION_PARTS)) \
	-X $(p).gitTreeState=archive \
	$(if $(word 2,$(KUBE_RELEASE_INFO)),-X $(p).gitCommit=$(word 2,$(KUBE_RELEASE_INFO))) \
	-X $(p).buildDate=$(or $(word 1,$(KUBE_RELEASE_INFO)),1970-01-01T00:00:00Z))

# -s -w: no symbol tables or DWARF; the binary links kubeadm and is large enough.
U7S_LDFLAGS = -s -w -X github.com/u7s/u7s/internal/version.U7s=$(U7S_VERSION) $(KUBE_LDFLAGS)

.PHONY: all host-deps u7s components install images registry unit cluster test e2e bench conformance clean print-kube-ldflags print-u7s-tags print-unit-packages deb rpm images-archive previous-release

all: u7s components

host-deps:
	@scripts/host-deps.sh

u7s:
	$(GO) build -trimpath -tags '$(U7S_TAGS)' -ldflags '$(strip $(U7S_LDFLAGS))' -o $(U7S) ./cmd/u7s

components:
	@KUBE_LDFLAGS='$(strip $(KUBE_LDFLAGS))' scripts/build-components.sh $(COMPONENTS)

install:
	@scripts/install.sh

images: u7s components registry
	@[ -e $(SIGN_KEY) ] && [ -e $(SIGN_PUB) ] || $(U7S) images keygen --dir $(SIGNING_DIR)
	$(U7S) images build --bin-dir $(BIN) --registry $(REGISTRY) --push --test-images --sign-key $(SIGN_KEY)

registry:
	scripts/local-registry.sh start

# The packages of the unit tests (scripts/test.sh reads them with `make print-unit-packages`).
UNIT_PACKAGES := ./cmd/... ./internal/... ./images/... ./manifests/... ./test/conformance/... ./test/hosts/...

unit:
	$(GO) test -tags '$(U7S_TAGS)' $(UNIT_PACKAGES)

cluster:
	scripts/cluster.sh

test:
	scripts/test.sh

e2e:
	scripts/test.sh e2e

# BENCH=node|hosts|day2 measures one part (scripts/bench.sh).
bench:
	scripts/bench.sh $(or $(BENCH),all)

# Upstream's [Conformance] tests against this host's node (make cluster); CONFORMANCE_FOCUS
# narrows them (a regexp of spec names), CONFORMANCE_NODES sets the parallel processes.
conformance:
	scripts/conformance.sh

# Packages from the one install layout (scripts/install.sh), under _output.
deb: u7s components
	@U7S_VERSION=$(U7S_VERSION) scripts/package.sh deb

rpm:
	@U7S_VERSION=$(U7S_VERSION) scripts/package.sh rpm

images-archive: u7s components
	@U7S_VERSION=$(U7S_VERSION) scripts/package.sh images

# The releases the upgrade test goes through (UPGRADE_PATH in versions.env): this tree with each
# one's versions, as _output/previous/VERSION/u7s_*.deb, their node images pushed to $(REGISTRY).
previous-release: images
	@REGISTRY=$(REGISTRY) scripts/previous-release.sh

clean:
	rm -rf $(OUTPUT)

# For scripts/build-components.sh run by hand.
print-kube-ldflags:
	@echo '$(strip $(KUBE_LDFLAGS))'

# For scripts/test.sh.
print-u7s-tags:
	@echo '$(U7S_TAGS)'

print-unit-packages:
	@echo '$(UNIT_PACKAGES)'
