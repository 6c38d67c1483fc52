#!/usr/bin/env bash
# Builds every third-party binary of a u7s node into _output/bin, from source fetched through the Go
# module proxy, at the versions pinned in internal/version/versions.env.
#
#   scripts/build-components.sh [component...]      (default: all; see COMPONENTS below)
#
# kube-bench also leaves its upstream cfg/ (the benchmarks' YAML) in _output/share/kube-bench/cfg.
# Kubernetes binaries (and agnhost) build from u7s's own module: go.mod pins them with `tool`
# directives. Other projects build in a writable copy of their module under _output/src with their
# own go.mod/go.sum. A component is skipped when its stamp (_output/stamps) records the same inputs:
# version, build recipe, Go version (and for our module, go.mod). Build logs go to _output/logs.
# What a build made is also kept in a cache of this machine keyed by those inputs, as Go's build
# cache is (U7S_BUILD_CACHE, default ~/.cache/u7s/components; `off` turns it off): a fresh clone
# (CI) copies a component from there instead of building it again.
# KUBE_LDFLAGS comes from the Makefile (`make components`); run by hand, it is asked from make.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../internal/version/versions.env
. internal/version/versions.env

OUT=$ROOT/_output
BIN=$OUT/bin
SRC=$OUT/src
SHARE=$OUT/share
STAMPS=$OUT/stamps
LOGS=$OUT/logs
CACHE=${U7S_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/u7s/components}
# How many builds of one component the cache keeps (this tree's and the upgrade test's releases).
CACHE_KEEP=4
GO=${GO:-go}
GOVERSION=$($GO env GOVERSION)
# Only the project's own builds use the repository's settings; every build here is by explicit version.
export GOWORK=off GOTOOLCHAIN=${GOTOOLCHAIN:-local}

COMPONENTS=(kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl agnhost
	crio pinns runc cni-plugins etcd coredns flanneld pause kube-bench busybox nnp nginx sample-apiserver u7s-netpol
	u7s-local-path metrics-server)
CNI_PLUGINS=(bridge host-local loopback portmap)
# Built only when named (make conformance): upstream's e2e suite and the ginkgo runner of it.
EXTRA_COMPONENTS=(e2e.test ginkgo)
# Those built by Go alone (CGO_ENABLED=0: no C compiler, library or other host tool): the fresh
# host of the end-to-end tests takes them from this machine's cache, as it takes Go's caches, and
# builds the others (cgo, C, Debian's packages), whose needs are the host's.
GO_ONLY=(kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl agnhost
	cni-plugins etcd coredns pause kube-bench nnp sample-apiserver u7s-netpol u7s-local-path metrics-server)

log() { printf '[components] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# --go-only-caches: prints the cache directory of each GO_ONLY component this machine has built.
if [[ ${1:-} == --go-only-caches ]]; then
	for c in "${GO_ONLY[@]}"; do
		[[ ! -d $CACHE/$c ]] || echo "$CACHE/$c"
	done
	exit 0
fi
# --host-built: prints the components that are not GO_ONLY, which a host builds with its own
# packages (the fresh host keeps a cache of its own of them).
if [[ ${1:-} == --host-built ]]; then
	for c in "${COMPONENTS[@]}"; do
		[[ " ${GO_ONLY[*]} " == *" $c "* ]] || echo "$c"
	done
	exit 0
fi

# Everything the recipes need, checked before the first (long) build starts, so that a missing
# library is named in the first second and not after the Kubernetes binaries took a quarter hour.
preflight() {
	local missing=() c
	for c in jq gcc make pkg-config ld strip; do
		command -v "$c" >/dev/null 2>&1 || missing+=("command $c")
	done
	command -v "$GO" >/dev/null 2>&1 || missing+=("Go ($GO; install it from https://go.dev/dl and put it on PATH)")
	command -v pkg-config >/dev/null 2>&1 && { pkg-config --exists libseccomp || missing+=("libseccomp (libseccomp-dev)"); }
	# runc links static-pie, flanneld static: both need the static C library.
	[[ -e $(gcc -print-file-name=libc.a 2>/dev/null) && $(gcc -print-file-name=libc.a) == /* ]] || missing+=("static libc (libc6-dev)")
	((${#missing[@]} == 0)) || die "cannot build the components, missing: ${missing[*]}; fix: make host-deps (as root)"
}
preflight

if [[ -z ${KUBE_LDFLAGS:-} ]]; then
	KUBE_LDFLAGS=$(make -s --no-print-directory -C "$ROOT" print-kube-ldflags)
fi
[[ $KUBE_LDFLAGS == *"gitVersion=$KUBERNETES_VERSION"* ]] ||
	die "KUBE_LDFLAGS does not stamp $KUBERNETES_VERSION; run through: make components"

# --- module sources -------------------------------------------------------------------------------

# module_src NAME MODULE VERSION: downloads MODULE@VERSION through the proxy and copies it to a
# writable _output/src/NAME (the module cache is read-only). Sets MOD_DIR, MOD_TIME (commit time,
# RFC 3339) and MOD_HASH (commit hash when the proxy knows it, else the version).
# A module the checksum database lacks is fetched with GONOSUMDB for that module only, and listed
# in _output/gonosumdb.txt.
module_src() {
	local name=$1 mod=$2 ver=$3 json info nosumdb=
	if ! json=$($GO mod download -json "$mod@$ver" 2>&1); then
		if grep -qiE 'sum\.golang\.org|checksum database|verifying' <<<"$json"; then
			log "$mod@$ver is not in the checksum database; fetching it with GONOSUMDB=$mod"
			nosumdb=$mod
			json=$(GONOSUMDB=$mod $GO mod download -json "$mod@$ver") ||
				die "cannot download $mod@$ver even without the checksum database: $json"
			grep -qxF "$mod@$ver" "$OUT/gonosumdb.txt" 2>/dev/null || echo "$mod@$ver" >>"$OUT/gonosumdb.txt"
		else
			die "cannot download $mod@$ver through the module proxy ($($GO env GOPROXY)): $json"
		fi
	fi
	info=$(jq -r .Info <<<"$json")
	MOD_TIME=$(jq -r '.Time' "$info")
	MOD_HASH=$(jq -r --arg v "$ver" '.Origin.Hash // $v' <<<"$json")
	MOD_DIR=$SRC/$name
	MOD_NOSUMDB=$nosumdb
	# Reuse the copy when it is of this version (crio and pinns share one).
	if [[ $(cat "$MOD_DIR/.u7s-module" 2>/dev/null) != "$mod@$ver" ]]; then
		rm -rf "$MOD_DIR"
		cp -a "$(jq -r .Dir <<<"$json")" "$MOD_DIR"
		chmod -R u+w "$MOD_DIR"
		echo "$mod@$ver" >"$MOD_DIR/.u7s-module"
	fi
}

# mod_go ARGS...: go in a copied module, resolving with its own go.mod/go.sum.
mod_go() {
	GOFLAGS="-mod=mod -buildvcs=false" GONOSUMDB=${MOD_NOSUMDB:-${GONOSUMDB:-}} $GO "$@"
}

# put NAME FILE: moves a freshly built FILE into _output/bin/NAME in one rename.
put() {
	mv -f "$2" "$BIN/$1"
}

# --- recipes (each runs in its own subshell with set -e, output to _output/logs/NAME.log) ---------

kube_build() { # NAME PACKAGE [LDFLAGS]: a static Kubernetes binary from our module, pinned by go.mod's tools.
	CGO_ENABLED=0 $GO build -trimpath -ldflags "-s -w $KUBE_LDFLAGS ${3:-}" -o "$BIN/.$1.tmp" "$2"
	put "$1" "$BIN/.$1.tmp"
}
build_kubelet() { kube_build kubelet k8s.io/kubernetes/cmd/kubelet; }
build_kube_apiserver() { kube_build kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver; }
build_kube_controller_manager() { kube_build kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager; }
build_kube_scheduler() { kube_build kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler; }
build_kube_proxy() { kube_build kube-proxy k8s.io/kubernetes/cmd/kube-proxy; }
build_kubectl() { kube_build kubectl k8s.io/kubernetes/cmd/kubectl; }
# NetworkPolicy: kube-router's controller (go.mod pins it) behind u7s's own main.
build_u7s_netpol() { kube_build u7s-netpol ./cmd/u7s-netpol; }
# The default StorageClass's provisioner: sig-storage's library (go.mod pins it) behind u7s's main.
build_u7s_local_path() { kube_build u7s-local-path ./cmd/u7s-local-path; }
# The Metrics API: metrics-server's module at its own dependencies (its go.mod), static, stamped
# as its Makefile does (client-go's version package).
build_metrics_server() {
	module_src metrics-server sigs.k8s.io/metrics-server "$METRICS_SERVER_VERSION"
	cd "$MOD_DIR"
	CGO_ENABLED=0 mod_go build -trimpath \
		-ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$METRICS_SERVER_VERSION -X k8s.io/client-go/pkg/version.buildDate=$MOD_TIME" \
		-o "$BIN/.metrics-server.tmp" ./cmd/metrics-server
	put metrics-server "$BIN/.metrics-server.tmp"
}
# agnhost is versioned apart from Kubernetes (its VERSION file); the image tag must match it.
build_agnhost() {
	local kube want porter f img
	kube=$($GO list -m -f '{{.Dir}}' k8s.io/kubernetes)
	want=$(cat "$kube/test/images/agnhost/VERSION")
	[[ $want == "$AGNHOST_IMAGE_TAG" ]] ||
		die "Kubernetes $KUBERNETES_VERSION ships agnhost $want but versions.env pins AGNHOST_IMAGE_TAG=$AGNHOST_IMAGE_TAG; make them equal"
	kube_build agnhost k8s.io/kubernetes/test/images/agnhost "-X main.Version=$AGNHOST_IMAGE_TAG"
	# porter's TLS pair, which upstream's Dockerfile adds at / (images.AgnhostPorterCert/Key).
	porter=$kube/test/images/agnhost/porter
	for f in crt key; do
		install -m 0644 "$porter/localhost.$f" "$BIN/.agnhost-localhost.$f.tmp"
		put "agnhost-localhost.$f" "$BIN/.agnhost-localhost.$f.tmp"
	done
	# The pages of the kitten and nautilus images, which are agnhost's test-webserver serving them
	# (images.ImagePage).
	for img in kitten nautilus; do
		f=$kube/test/images/$img/html
		install -m 0644 "$f/$img.jpg" "$BIN/.$img.jpg.tmp"
		install -m 0644 "$f/data.json" "$BIN/.$img-data.json.tmp"
		put "$img.jpg" "$BIN/.$img.jpg.tmp"
		put "$img-data.json" "$BIN/.$img-data.json.tmp"
	done
}
# nnp of upstream's e2e-test-images/nonewprivs: it prints its effective uid, set-uid root in the image.
build_nnp() { kube_build nnp k8s.io/kubernetes/test/images/nonewprivs; }

# The aggregated API server of upstream's e2e-test-images/sample-apiserver, from the staging module
# of the pinned Kubernetes (upstream's image at its tag is an older build of the same program).
build_sample_apiserver() {
	module_src sample-apiserver k8s.io/sample-apiserver "v0.${KUBERNETES_VERSION#v1.}"
	cd "$MOD_DIR"
	CGO_ENABLED=0 mod_go build -trimpath -ldflags "-s -w $KUBE_LDFLAGS" -o "$BIN/.sample-apiserver.tmp" .
	put sample-apiserver "$BIN/.sample-apiserver.tmp"
}

# The nginx of upstream's e2e-test-images/nginx: Debian's nginx of this host's release (upstream's
# is Alpine's), fetched by apt, which checks the archive's signatures, and unpacked without being
# installed, so that no nginx service starts on the build host. Its shared libraries are the host's,
# added to the image like those of the other host tools.
nginx_candidate() { apt-cache policy nginx 2>/dev/null | awk '$1 == "Candidate:" { print $2 }'; }
build_nginx() {
	local d=$SRC/nginx v
	v=$(nginx_candidate)
	[[ -n $v && $v != "(none)" ]] || die "apt knows no nginx package; fix: apt-get update (as root), then make components"
	rm -rf "$d" && mkdir -p "$d"
	(cd "$d" && apt-get -q -o APT::Sandbox::User=root download "nginx=$v" "nginx-common=$v")
	for f in "$d"/*.deb; do dpkg-deb -x "$f" "$d/root"; done
	"$d/root/usr/sbin/nginx" -v
	install -m 0755 "$d/root/usr/sbin/nginx" "$BIN/.nginx.tmp"
	install -m 0644 "$d/root/etc/nginx/mime.types" "$BIN/.nginx-mime.types.tmp"
	install -m 0644 "$d/root/usr/share/nginx/html/index.html" "$BIN/.nginx-index.html.tmp"
	put nginx-mime.types "$BIN/.nginx-mime.types.tmp"
	put nginx-index.html "$BIN/.nginx-index.html.tmp"
	put nginx "$BIN/.nginx.tmp"
}

# conformance_module: upstream's e2e suite is a test of k8s.io/kubernetes, whose test-only modules
# (ginkgo, gomega, ...) our module does not need. It builds in a module of its own under _output/src
# made from our go.mod and go.sum, so that it takes exactly our Kubernetes pins; -mod=mod adds what
# the suite needs beyond them, through the proxy.
conformance_module() {
	MOD_DIR=$SRC/conformance
	rm -rf "$MOD_DIR" && mkdir -p "$MOD_DIR"
	cp go.mod go.sum "$MOD_DIR/"
	cd "$MOD_DIR"
	$GO mod edit -module u7s.local/conformance -droptool=k8s.io/kubernetes/test/images/agnhost
}
build_e2e_test() {
	conformance_module
	CGO_ENABLED=0 mod_go test -c -trimpath -ldflags "-s -w $KUBE_LDFLAGS" -o "$BIN/.e2e.test.tmp" k8s.io/kubernetes/test/e2e
	put e2e.test "$BIN/.e2e.test.tmp"
}
# The ginkgo CLI of the suite's ginkgo version: it runs the suite's specs in parallel processes.
build_ginkgo() {
	conformance_module
	CGO_ENABLED=0 mod_go build -trimpath -ldflags "-s -w" -o "$BIN/.ginkgo.tmp" github.com/onsi/ginkgo/v2/ginkgo
	put ginkgo "$BIN/.ginkgo.tmp"
}

# The test images' busybox (images.TestBusybox): upstream's e2e-test-images/busybox is busybox's
# official image at BUSYBOX_VERSION, that is busybox's release built with its defconfig, static on
# glibc. This one is built the same way. Debian's busybox-static will not do: Debian patches ash to
# drop environment variables whose names are not shell names (its revert of busybox commit
# 9c143ce), which upstream's passes on and the ConfigMap and Secrets specs look for, and it is
# built to prefer its applets.
# The release tarball comes from this host's Debian mirror as the .orig of Debian's busybox source
# of BUSYBOX_DEBIAN_SUITE (apt checks the archive's signatures) and must have BUSYBOX_SHA256, the
# hash of busybox.net's busybox-$BUSYBOX_VERSION.tar.bz2; Debian's patches are not applied.
build_busybox() {
	local d=$SRC/busybox-$BUSYBOX_VERSION mirror tarball v c
	# The mirror of the host's sources: deb822 (Debian 12's default) or one-line (debootstrap's).
	mirror=
	if [[ -r /etc/apt/sources.list.d/debian.sources ]]; then
		mirror=$(awk '$1 == "URIs:" { print $2; exit }' /etc/apt/sources.list.d/debian.sources)
	fi
	if [[ -z $mirror && -r /etc/apt/sources.list ]]; then
		mirror=$(awk '$1 == "deb" { for (i = 2; i <= NF; i++) if ($i ~ /^(https?|ftp|file):/) { print $i; exit } }' /etc/apt/sources.list)
	fi
	mirror=${mirror:-http://deb.debian.org/debian}
	rm -rf "$d"
	mkdir -p "$d/lists/partial" "$d/cache/archives/partial" "$d/build"
	echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $mirror $BUSYBOX_DEBIAN_SUITE main" >"$d/sources.list"
	local apt=(apt-get -q -o Dir::Etc::SourceList="$d/sources.list" -o Dir::Etc::SourceParts=/nonexistent
		-o Dir::State::Lists="$d/lists" -o Dir::Cache="$d/cache" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
	"${apt[@]}" update
	(cd "$d" && "${apt[@]}" source --download-only "busybox/$BUSYBOX_DEBIAN_SUITE")
	tarball=$d/busybox_$BUSYBOX_VERSION.orig.tar.bz2
	[[ -f $tarball ]] ||
		die "Debian $BUSYBOX_DEBIAN_SUITE's busybox source is not busybox $BUSYBOX_VERSION ($(ls "$d"/*.dsc)); fix BUSYBOX_VERSION/BUSYBOX_DEBIAN_SUITE in internal/version/versions.env"
	echo "$BUSYBOX_SHA256  $tarball" | sha256sum -c --quiet ||
		die "$tarball is not busybox.net's busybox-$BUSYBOX_VERSION.tar.bz2 (sha256 $BUSYBOX_SHA256)"
	tar -xjf "$tarball" -C "$d/build" --strip-components=1
	cd "$d/build"
	# The build date in its banner is the release's, so that a rebuild gives the same binary.
	SOURCE_DATE_EPOCH=$(stat -c %Y Makefile)
	export SOURCE_DATE_EPOCH
	make -s defconfig >/dev/null
	# As busybox's official image sets them: static; no tc (it needs CBQ, which kernel headers since
	# 6.8 lack), utmp, RPC or sync's extra options; no wide characters past ASCII in its line editor.
	for c in CONFIG_STATIC=y CONFIG_LAST_SUPPORTED_WCHAR=0; do
		sed -i -E "s/^(# )?${c%%=*}( is not set|=.*)\$/$c/" .config
	done
	for c in CONFIG_TC CONFIG_FEATURE_UTMP CONFIG_FEATURE_WTMP CONFIG_FEATURE_HAVE_RPC CONFIG_FEATURE_INETD_RPC CONFIG_FEATURE_SYNC_FANCY; do
		sed -i -E "s/^$c=.*\$/# $c is not set/" .config
	done
	make -s oldconfig < <(yes "") >/dev/null
	# sh must find commands on PATH, as upstream's tests expect (agnhost's OpenBSD nc over the applet).
	for c in CONFIG_STATIC=y '# CONFIG_TC is not set' '# CONFIG_FEATURE_SH_STANDALONE is not set' '# CONFIG_FEATURE_PREFER_APPLETS is not set'; do
		grep -qxF "$c" .config || die "busybox's .config lacks '$c' after oldconfig"
	done
	make -s -j"$(nproc)" busybox
	v=$(./busybox 2>&1 || true)
	[[ ${v%%$'\n'*} == *"v$BUSYBOX_VERSION "* ]] || die "the busybox built does not say v$BUSYBOX_VERSION"
	env -i 1-data-1=value-1 ./busybox sh -c env | grep -qx 1-data-1=value-1 ||
		die "the busybox built drops environment variables that are not shell names"
	cd "$ROOT"
	install -m 0755 "$d/build/busybox" "$BIN/.busybox.tmp"
	put busybox "$BIN/.busybox.tmp"
}

# cri-o runs on the host: cgo with libseccomp so RuntimeDefault seccomp is enforced (the pure-Go
# build runs such pods unconfined); no btrfs/devicemapper graph drivers; signatures via Go openpgp
# instead of gpgme.
CRIO_TAGS="seccomp containers_image_openpgp containers_image_ostree_stub exclude_graphdriver_btrfs btrfs_noversion exclude_graphdriver_devicemapper"
build_crio() {
	module_src cri-o github.com/cri-o/cri-o "$CRIO_VERSION"
	cd "$MOD_DIR"
	# The module proxy refuses go-criu v8.1.0 ("not available", 403); v8.2.0 is the next release
	# of the same major version and is served.
	$GO mod edit -require=github.com/checkpoint-restore/go-criu/v8@v8.2.0
	# cri-o v1.36.x pins k8s.io/cri-client v0.36.0-rc.0, which the proxy refuses ("not
	# available", 403): the minor's first release, v0.36.0, is served (a later patch changes
	# cri-api's KeyValue.Value to bytes, which cri-o v1.36.2 does not compile with).
	local rc minor
	rc=$($GO mod edit -json | jq -r '.Require[] | select(.Path == "k8s.io/cri-client" and (.Version | test("-rc"))) | .Version')
	if [[ -n $rc ]]; then
		minor=${rc#v0.}
		minor=${minor%%.*}
		$GO mod edit -require="k8s.io/cri-client@v0.$minor.0"
	fi
	CGO_ENABLED=1 mod_go build -trimpath -tags "$CRIO_TAGS" \
		-ldflags "-s -w -X github.com/cri-o/cri-o/internal/version.buildDate=$MOD_TIME" \
		-o "$BIN/.crio.tmp" ./cmd/crio
	put crio "$BIN/.crio.tmp"
}

# pinns (C, in cri-o's pinns/) pins namespaces for cri-o; its own Makefile links it statically.
build_pinns() {
	module_src cri-o github.com/cri-o/cri-o "$CRIO_VERSION"
	make -C "$MOD_DIR/pinns" clean
	make -C "$MOD_DIR/pinns"
	cp "$MOD_DIR/bin/pinns" "$BIN/.pinns.tmp"
	put pinns "$BIN/.pinns.tmp"
}

# runc as upstream releases it: cgo (libcontainer's nsenter), seccomp, linked static-pie so it
# needs nothing from the host.
build_runc() {
	module_src runc github.com/opencontainers/runc "$RUNC_VERSION"
	cd "$MOD_DIR"
	CGO_ENABLED=1 mod_go build -trimpath -buildmode=pie -tags "seccomp urfave_cli_no_docs netgo osusergo" \
		-ldflags "-s -w -X main.gitCommit=$MOD_HASH -linkmode external -extldflags -static-pie" \
		-o "$BIN/.runc.tmp" .
	put runc "$BIN/.runc.tmp"
}

build_cni_plugins() {
	module_src cni-plugins github.com/containernetworking/plugins "$CNI_PLUGINS_VERSION"
	cd "$MOD_DIR"
	rm -rf .u7s-out && mkdir .u7s-out
	CGO_ENABLED=0 mod_go build -trimpath \
		-ldflags "-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" \
		-o .u7s-out/ ./plugins/main/bridge ./plugins/ipam/host-local ./plugins/main/loopback ./plugins/meta/portmap
	local p
	for p in "${CNI_PLUGINS[@]}"; do put "$p" ".u7s-out/$p"; done
}

# etcd's server module points its sibling modules at ../ with replace directives, which a module
# copy does not have: drop them so the pinned requirements (all $ETCD_VERSION) resolve from the proxy.
build_etcd() {
	module_src etcd go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
	cd "$MOD_DIR"
	local r
	for r in $($GO mod edit -json | jq -r '.Replace[]? | select(.New.Path | startswith("../")) | .Old.Path'); do
		$GO mod edit -dropreplace="$r"
	done
	CGO_ENABLED=0 mod_go build -trimpath \
		-ldflags "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$MOD_HASH" \
		-o "$BIN/.etcd.tmp" .
	put etcd "$BIN/.etcd.tmp"
}

build_coredns() {
	module_src coredns github.com/coredns/coredns "$COREDNS_VERSION"
	cd "$MOD_DIR"
	CGO_ENABLED=0 mod_go build -trimpath \
		-ldflags "-s -w -X github.com/coredns/coredns/coremain.GitCommit=$MOD_HASH" \
		-o "$BIN/.coredns.tmp" .
	put coredns "$BIN/.coredns.tmp"
}

# flannel's udp backend is cgo on amd64; upstream links it statically, as here.
build_flanneld() {
	module_src flannel github.com/flannel-io/flannel "$FLANNEL_VERSION"
	cd "$MOD_DIR"
	CGO_ENABLED=1 mod_go build -trimpath -tags "netgo osusergo" \
		-ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION -extldflags -static" \
		-o "$BIN/.flanneld.tmp" .
	put flanneld "$BIN/.flanneld.tmp"
}

build_pause() {
	CGO_ENABLED=0 $GO build -trimpath -ldflags "-s -w -X main.version=$PAUSE_IMAGE_TAG" -o "$BIN/.pause.tmp" ./images/pause
	put pause "$BIN/.pause.tmp"
}

# kube-bench (u7s check cis) as upstream's makefile builds it; it reads its cfg/ at run time, so the
# module's cfg/ goes beside it, replaced in one rename.
build_kube_bench() {
	module_src kube-bench github.com/aquasecurity/kube-bench "$KUBE_BENCH_VERSION"
	cd "$MOD_DIR"
	CGO_ENABLED=0 mod_go build -trimpath \
		-ldflags "-s -w -X github.com/aquasecurity/kube-bench/cmd.KubeBenchVersion=$KUBE_BENCH_VERSION" \
		-o "$BIN/.kube-bench.tmp" .
	mkdir -p "$SHARE/kube-bench"
	rm -rf "$SHARE/kube-bench/.cfg.tmp" "$SHARE/kube-bench/.cfg.old"
	cp -R cfg "$SHARE/kube-bench/.cfg.tmp"
	[[ ! -e $SHARE/kube-bench/cfg ]] || mv "$SHARE/kube-bench/cfg" "$SHARE/kube-bench/.cfg.old"
	mv "$SHARE/kube-bench/.cfg.tmp" "$SHARE/kube-bench/cfg"
	rm -rf "$SHARE/kube-bench/.cfg.old"
	put kube-bench "$BIN/.kube-bench.tmp"
}

# --- driver ---------------------------------------------------------------------------------------

# inputs NAME: what a component is built from; a change rebuilds it.
inputs() {
	local fn=build_${1//[-.]/_}
	echo "$GOVERSION"
	declare -f "$fn" module_src mod_go put
	case $1 in
	kube-bench) echo "$KUBE_BENCH_VERSION" ;;
	kube* | agnhost | nnp) echo "$KUBERNETES_VERSION $KUBE_LDFLAGS $AGNHOST_IMAGE_TAG"; declare -f kube_build; cat go.mod ;;
	u7s-netpol) echo "$KUBE_ROUTER_VERSION $NETPOL_IMAGE_TAG $KUBE_LDFLAGS"; declare -f kube_build; cat go.mod go.sum cmd/u7s-netpol/*.go internal/netpol/controller/*.go ;;
	u7s-local-path) echo "$STORAGE_LIB_VERSION $LOCAL_PATH_IMAGE_TAG $KUBE_LDFLAGS"; declare -f kube_build; cat go.mod go.sum cmd/u7s-local-path/*.go internal/localpath/provisioner/*.go internal/fsutil/*.go ;;
	metrics-server) echo "$METRICS_SERVER_VERSION" ;;
	sample-apiserver) echo "$KUBERNETES_VERSION $KUBE_LDFLAGS" ;;
	nginx) nginx_candidate; declare -f nginx_candidate ;;
	crio) echo "$CRIO_VERSION $CRIO_TAGS" ;;
	pinns) echo "$CRIO_VERSION" ;;
	runc) echo "$RUNC_VERSION" ;;
	cni-plugins) echo "$CNI_PLUGINS_VERSION ${CNI_PLUGINS[*]}" ;;
	etcd) echo "$ETCD_VERSION" ;;
	coredns) echo "$COREDNS_VERSION" ;;
	flanneld) echo "$FLANNEL_VERSION" ;;
	pause) cat go.mod images/pause/*.go; echo "$PAUSE_IMAGE_TAG" ;;
	busybox) echo "$BUSYBOX_VERSION $BUSYBOX_SHA256 $BUSYBOX_DEBIAN_SUITE"; declare -f build_busybox ;;
	e2e.test | ginkgo) echo "$KUBERNETES_VERSION $KUBE_LDFLAGS"; declare -f conformance_module; cat go.mod ;;
	esac
}

# outputs NAME: the binaries a component puts in _output/bin.
outputs() {
	case $1 in
	cni-plugins) echo "${CNI_PLUGINS[@]}" ;;
	*) echo "$1" ;;
	esac
}

# data_outputs NAME: what else a component leaves under _output (relative to it), besides binaries.
data_outputs() {
	case $1 in
	kube-bench) echo share/kube-bench/cfg ;;
	agnhost) echo bin/agnhost-localhost.crt bin/agnhost-localhost.key bin/kitten.jpg bin/kitten-data.json bin/nautilus.jpg bin/nautilus-data.json ;;
	nginx) echo bin/nginx-mime.types bin/nginx-index.html ;;
	esac
}

version_of() {
	case $1 in
	kube-bench) echo "$KUBE_BENCH_VERSION" ;;
	kube*) echo "$KUBERNETES_VERSION" ;;
	agnhost) echo "$AGNHOST_IMAGE_TAG" ;;
	nnp) echo "$NONEWPRIVS_IMAGE_TAG" ;;
	sample-apiserver) echo "v0.${KUBERNETES_VERSION#v1.}" ;;
	nginx) nginx_candidate ;;
	crio | pinns) echo "$CRIO_VERSION" ;;
	runc) echo "$RUNC_VERSION" ;;
	cni-plugins) echo "$CNI_PLUGINS_VERSION" ;;
	etcd) echo "$ETCD_VERSION" ;;
	coredns) echo "$COREDNS_VERSION" ;;
	flanneld) echo "$FLANNEL_VERSION" ;;
	u7s-netpol) echo "$NETPOL_IMAGE_TAG" ;;
	u7s-local-path) echo "$LOCAL_PATH_IMAGE_TAG" ;;
	metrics-server) echo "$METRICS_SERVER_VERSION" ;;
	pause) echo "$PAUSE_IMAGE_TAG" ;;
	busybox) echo "$BUSYBOX_VERSION" ;;
	e2e.test | ginkgo) echo "$KUBERNETES_VERSION" ;;
	esac
}

# cached_paths NAME: what a component leaves under _output (relative to it), binaries and data.
cached_paths() {
	local f
	for f in $(outputs "$1"); do echo "bin/$f"; done
	data_outputs "$1"
}

# cache_restore NAME KEY: copies the component built from inputs KEY out of the cache, if there.
cache_restore() {
	local c=$CACHE/$1/$2 p dst tmp
	[[ $CACHE != off && -e $c/complete ]] || return 1
	for p in $(cached_paths "$1"); do
		dst=$OUT/$p
		tmp=$(dirname "$dst")/.$(basename "$dst").cache.tmp
		mkdir -p "$(dirname "$dst")"
		rm -rf "$tmp"
		cp -a "$c/$p" "$tmp" || return 1
		rm -rf "$dst"
		mv "$tmp" "$dst"
	done
}

# cache_store NAME KEY: keeps what was just built, in one rename; older builds of it beyond
# CACHE_KEEP go. A failure here only costs a later build.
cache_store() {
	local c=$CACHE/$1/$2 p tmp
	[[ $CACHE != off ]] || return 0
	[[ -e $c/complete ]] && return 0
	mkdir -p "$CACHE/$1" || return 0
	tmp=$(mktemp -d "$CACHE/$1/.new.XXXXXX") || return 0
	for p in $(cached_paths "$1"); do
		if ! { mkdir -p "$tmp/$(dirname "$p")" && cp -a "$OUT/$p" "$tmp/$p"; }; then
			rm -rf "$tmp"
			return 0
		fi
	done
	touch "$tmp/complete"
	rm -rf "$c"
	mv "$tmp" "$c" || rm -rf "$tmp"
	touch "$c"
	# shellcheck disable=SC2012 # the names are the cache's own hex keys
	ls -1dt "$CACHE/$1"/*/ 2>/dev/null | tail -n +$((CACHE_KEEP + 1)) | xargs -r rm -rf
}

size_of() {
	local f total=0
	for f in $(outputs "$1"); do total=$((total + $(stat -c %s "$BIN/$f"))); done
	awk -v b="$total" 'BEGIN { printf "%.1f MiB", b / 1048576 }'
}

build() {
	local name=$1 fn=build_${1//[-.]/_} key stamp=$STAMPS/$1 f fresh=1 start rc
	key=$(inputs "$name" | sha256sum | cut -d' ' -f1)
	for f in $(outputs "$name"); do [[ -x $BIN/$f ]] || fresh=0; done
	for f in $(data_outputs "$name"); do [[ -e $OUT/$f ]] || fresh=0; done
	if ((fresh)) && [[ $(cat "$stamp" 2>/dev/null) == "$key" ]]; then
		printf '[components] %-24s %-9s up to date          %10s\n' "$name" "$(version_of "$name")" "$(size_of "$name")"
		return
	fi
	start=$SECONDS
	rm -f "$stamp"
	if cache_restore "$name" "$key"; then
		touch "$CACHE/$name/$key" 2>/dev/null || true # a cache lent read-only (TestFreshHost)
		echo "$key" >"$stamp"
		printf '[components] %-24s %-9s from the cache in %ds %8s\n' "$name" "$(version_of "$name")" $((SECONDS - start)) "$(size_of "$name")"
		return
	fi
	set +e
	(
		set -e
		"$fn"
	) >"$LOGS/$name.log" 2>&1
	rc=$?
	set -e
	if ((rc != 0)); then
		tail -n 40 "$LOGS/$name.log" >&2
		log "error: building $name failed (exit $rc) after $((SECONDS - start))s; full log: $LOGS/$name.log"
		FAILED+=("$name")
		return
	fi
	echo "$key" >"$stamp"
	cache_store "$name" "$key"
	printf '[components] %-24s %-9s built in %5ds     %10s\n' "$name" "$(version_of "$name")" $((SECONDS - start)) "$(size_of "$name")"
}

main() {
	local want=("$@") c total=$SECONDS
	((${#want[@]})) || want=("${COMPONENTS[@]}")
	for c in "${want[@]}"; do
		[[ " ${COMPONENTS[*]} ${EXTRA_COMPONENTS[*]} " == *" $c "* ]] || die "unknown component $c; known: ${COMPONENTS[*]} ${EXTRA_COMPONENTS[*]}"
	done
	mkdir -p "$BIN" "$SRC" "$STAMPS" "$LOGS"
	FAILED=()
	for c in "${want[@]}"; do build "$c"; done
	((${#FAILED[@]} == 0)) || die "failed: ${FAILED[*]} (after $((SECONDS - total))s)"
	log "done in $((SECONDS - total))s; binaries in ${BIN#"$ROOT"/}"
}

main "$@"
