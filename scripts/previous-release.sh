#!/usr/bin/env bash
# Builds the releases the upgrade test goes through before this one (UPGRADE_PATH in
# internal/version/versions.env): each is this source tree, in a copy under
# _output/previous/VERSION/src, with versions.env's values replaced by those of
# internal/version/previous/VERSION.env and go.mod moved to that Kubernetes (for another minor,
# the go.mod and go.sum of internal/version/previous/VERSION.go.mod and .go.sum). Each leaves
#   _output/previous/VERSION/u7s_<u7s version>~k8s<VERSION>-1_<arch>.deb  (sorts before this tree's)
# and pushes its node images to $REGISTRY, signed with the key `make images` uses.
# The copy's _output starts as this tree's (hard links), so only what the versions change is
# built: the Kubernetes binaries always, cri-o, etcd or coredns where their versions differ.
# A previous release is built once per machine: its package and u7s binary are kept in a cache
# keyed by its version and what defines it (U7S_BUILD_CACHE's sibling, ~/.cache/u7s/previous), as
# an older u7s would be an older package a user already has. A later run takes them from there and,
# when the registry still holds its images, only signs them again with this tree's key. Bump
# PREVIOUS_EPOCH (or U7S_RELEASE) to build them again.
#   REGISTRY=registry.local/k8s-p10 scripts/previous-release.sh   (PREVIOUS_NO_PUSH=1: build only)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../internal/version/versions.env
. internal/version/versions.env
REGISTRY=${REGISTRY:-registry.local/k8s-p10}
# 2: the cached releases of epoch 1 had been built from a tree whose port driver refused every
# forward after a restart (reverted since), so the first release's init never reached its API
# server and TestUpgrade failed on every run.
# 3: this tree gained the default StorageClass and the Metrics API, whose volumes and images
# the upgrade test carries through the upgrades.
# 4: this tree runs upgrade apply's workload check with the node's deadline (kubeadm's fixed
# minute failed the first hop on a loaded machine) and gives the controller manager and the
# scheduler a leader lease a slow API server does not lose.
PREVIOUS_EPOCH=4
CACHE=${U7S_BUILD_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/u7s/components}
[[ $CACHE == off ]] || CACHE=$(dirname "$CACHE")/previous
# Every component but agnhost, a test image whose tag follows this tree's Kubernetes.
COMPONENTS="kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl crio pinns runc cni-plugins etcd coredns flanneld pause kube-bench"
log() { printf '[previous] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
[[ -x _output/bin/u7s && -x _output/bin/crio ]] || die "build this tree first: make u7s components"
[[ -e _output/signing/u7s-signing.key ]] || die "no signing key: make images first"

# build VERSION: one previous release.
build() {
	local from=$1 prev=$ROOT/_output/previous/$1 src overrides cur old sum version k
	src=$prev/src
	overrides=internal/version/previous/$from.env
	[[ -f $overrides ]] || die "UPGRADE_PATH names $from but $overrides does not exist"
	local start=$SECONDS cached key f
	key=$( {
		echo "$PREVIOUS_EPOCH $U7S_RELEASE $from $(go env GOVERSION)"
		cat "$overrides"
		for f in "internal/version/previous/$from.go.mod" "internal/version/previous/$from.go.sum"; do
			[[ ! -f $f ]] || cat "$f"
		done
	} | sha256sum | cut -d' ' -f1)
	cached=$CACHE/$from/$key
	if [[ $CACHE != off && -e $cached/complete ]] && from_cache "$from" "$cached"; then
		touch "$cached"
		log "$from: done in $((SECONDS - start))s, from the cache $cached"
		return
	fi
	log "$from: copying the source tree into $src"
	rm -rf "$src.new" && mkdir -p "$src.new"
	git ls-files -z | xargs -0 cp --parents -t "$src.new"
	local line
	while IFS= read -r line; do
		[[ -z $line || $line == \#* ]] && continue
		k=${line%%=*}
		grep -q "^$k=" "$src.new/internal/version/versions.env" || die "$overrides: $k is not a key of versions.env"
		sed -i "s|^$k=.*|$line|" "$src.new/internal/version/versions.env"
	done <"$overrides"
	cur=${KUBERNETES_VERSION#v}
	old=${from#v}
	if [[ -f internal/version/previous/$from.go.mod ]]; then
		# Another minor: its Kubernetes builds only with the dependencies it was released with,
		# so the release keeps the go.mod and go.sum this tree had when it pinned it.
		cp "internal/version/previous/$from.go.mod" "$src.new/go.mod"
		cp "internal/version/previous/$from.go.sum" "$src.new/go.sum"
	fi
	sed -i -E "s#^(\s+k8s\.io/[a-z0-9-]+( => k8s\.io/[a-z0-9-]+)? )v0\.${cur#*.}\$#\1v0.${old#*.}#; s#^(\s+k8s\.io/kubernetes )v$cur\$#\1v$old#" "$src.new/go.mod"
	grep -q "k8s.io/kubernetes v$old\$" "$src.new/go.mod" || die "could not pin k8s.io/kubernetes $from in the copy's go.mod"
	# Staging modules that release does not have yet (k8s.io/kubernetes's own replaces name
	# them all) are dropped: nothing of it imports them, and their version is not served.
	local gomod staged r
	gomod=$(go mod download -json "k8s.io/kubernetes@$from" | jq -r .GoMod) || die "cannot download k8s.io/kubernetes@$from"
	staged=$(awk '$2 == "=>" && $3 ~ /^\.\/staging\// {print $1}' "$gomod")
	for r in $(cd "$src.new" && go mod edit -json | jq -r '.Replace[]?.Old.Path | select(startswith("k8s.io/"))'); do
		grep -qxF "$r" <<<"$staged" || (cd "$src.new" && go mod edit -dropreplace="$r" -droprequire="$r")
	done
	(cd "$src.new" && GOFLAGS=-mod=mod go mod tidy) || die "go mod tidy with Kubernetes $from failed"
	sum=$( (cd "$src.new" && find . -type f -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)
	if [[ $(cat "$prev/stamp" 2>/dev/null) == "$sum" ]] && compgen -G "$prev/u7s_*.deb" >/dev/null; then
		log "$from: built already"
		rm -rf "$src.new"
	else
		rm -rf "$src"
		mv "$src.new" "$src"
		mkdir -p "$src/_output"
		for k in bin stamps src share tools signing; do
			[[ -e _output/$k ]] && cp -al "_output/$k" "$src/_output/$k"
		done
		version="$U7S_RELEASE~k8s$old"
		log "$from: building u7s $version and the components its versions change"
		make -C "$src" --no-print-directory U7S_VERSION="$version" COMPONENTS="$COMPONENTS" u7s components deb
		rm -f "$prev"/u7s_*.deb
		mv "$src"/_output/u7s_*.deb "$prev/"
		echo "$sum" >"$prev/stamp"
	fi
	if [[ -n ${PREVIOUS_NO_PUSH:-} ]]; then
		log "$from: built; not pushed (PREVIOUS_NO_PUSH)"
		return
	fi
	log "$from: pushing and signing its node images to $REGISTRY"
	"$src/_output/bin/u7s" images build --bin-dir "$src/_output/bin" --registry "$REGISTRY" --push \
		--sign-key _output/signing/u7s-signing.key
	[[ $CACHE == off ]] || to_cache "$prev" "$src/_output/bin/u7s" "$cached"
	log "$from: done in $((SECONDS - start))s: $(ls "$prev"/u7s_*.deb)"
}

# from_cache VERSION DIR: the release's package from the cache into _output/previous/VERSION, and
# its images, which the registry must still hold, signed with this tree's key. Fails (changing
# nothing the test reads) when the registry lacks them, so that the release is built again.
from_cache() {
	local from=$1 dir=$2 prev=$ROOT/_output/previous/$1 refs
	if [[ -z ${PREVIOUS_NO_PUSH:-} ]]; then
		if ! U7S_REGISTRY=$REGISTRY "$dir/u7s" images check >/dev/null 2>&1; then
			log "$from: in the cache, but $REGISTRY lacks its images: building it again"
			return 1
		fi
		refs=$(U7S_REGISTRY=$REGISTRY "$dir/u7s" images list) || return 1
		# shellcheck disable=SC2086 # one reference a word
		_output/bin/u7s images sign --sign-key _output/signing/u7s-signing.key $refs >/dev/null || return 1
	fi
	mkdir -p "$prev"
	rm -f "$prev"/u7s_*.deb
	cp "$dir"/u7s_*.deb "$prev/"
}

# to_cache PREVDIR U7S DIR: keeps the release's package and u7s binary; older keys of it go.
to_cache() {
	local tmp
	mkdir -p "$(dirname "$3")" || return 0
	tmp=$(mktemp -d "$(dirname "$3")/.new.XXXXXX") || return 0
	if cp "$1"/u7s_*.deb "$2" "$tmp/"; then
		touch "$tmp/complete"
		rm -rf "$3"
		mv "$tmp" "$3" || rm -rf "$tmp"
	else
		rm -rf "$tmp"
	fi
	find "$(dirname "$3")" -mindepth 1 -maxdepth 1 -type d ! -path "$3" -exec rm -rf {} +
}

IFS=, read -ra path <<<"${UPGRADE_PATH:?versions.env sets no UPGRADE_PATH}"
for v in "${path[@]}"; do
	build "$v"
done
