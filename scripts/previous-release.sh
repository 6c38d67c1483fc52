#!/usr/bin/env bash
# Builds the previous release the upgrade test starts from: this source tree with Kubernetes
# pinned to UPGRADE_FROM_KUBERNETES (internal/version/versions.env) in go.mod and versions.env,
# in a copy under _output/previous/src. It leaves
#   _output/previous/u7s_<version>_<arch>.deb      the package (its version sorts before this tree's)
# and pushes that release's control-plane images (kube-apiserver, kube-controller-manager,
# kube-scheduler, kube-proxy at its tag), signed with the key `make images` uses.
# The components that do not depend on Kubernetes' version are this tree's own (_output/bin);
# the Kubernetes ones are built by the copy's `make components` (warm after the first time).
#   REGISTRY=registry.local/k8s-p10 scripts/previous-release.sh
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
# shellcheck source-path=SCRIPTDIR source=../internal/version/versions.env
. internal/version/versions.env
FROM=${UPGRADE_FROM_KUBERNETES:?versions.env sets no UPGRADE_FROM_KUBERNETES}
REGISTRY=${REGISTRY:-registry.local/k8s-p10}
PREV=$ROOT/_output/previous
SRC=$PREV/src
KUBE_COMPONENTS="kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl"
log() { printf '[previous] %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}
[[ -x _output/bin/u7s && -x _output/bin/crio ]] || die "build this tree first: make u7s components"
[[ -e _output/signing/u7s-signing.key ]] || die "no signing key: make images first"
start=$SECONDS

# The copy: every file git knows, as it is in the working tree, with Kubernetes moved back.
log "copying the source tree into $SRC with Kubernetes $FROM"
rm -rf "$SRC.new" && mkdir -p "$SRC.new"
git ls-files -z | xargs -0 cp --parents -t "$SRC.new"
cur=${KUBERNETES_VERSION#v}
cur_minor=${cur#*.}
old=${FROM#v}
old_minor=${old#*.}
sed -i -E "s#^(\s+k8s\.io/[a-z0-9-]+( => k8s\.io/[a-z0-9-]+)? )v0\.${cur_minor//./\\.}\$#\1v0.${old_minor}#; s#^(\s+k8s\.io/kubernetes )v${cur//./\\.}\$#\1v${old}#" "$SRC.new/go.mod"
grep -q "k8s.io/kubernetes v$old\$" "$SRC.new/go.mod" || die "could not pin k8s.io/kubernetes $FROM in the copy's go.mod"
sed -i "s/^KUBERNETES_VERSION=.*/KUBERNETES_VERSION=$FROM/" "$SRC.new/internal/version/versions.env"
(cd "$SRC.new" && GOFLAGS=-mod=mod go mod tidy) || die "go mod tidy with Kubernetes $FROM failed"
sum=$( (cd "$SRC.new" && find . -type f ! -path './_output/*' -print0 | sort -z | xargs -0 sha256sum) | sha256sum | cut -d' ' -f1)

if [[ $(cat "$PREV/stamp" 2>/dev/null) == "$sum" ]] && compgen -G "$PREV/u7s_*.deb" >/dev/null; then
	log "the previous release of this tree is built already"
	rm -rf "$SRC.new"
else
	# Its _output starts as this tree's (hard links): only what Kubernetes' version changes is built.
	rm -rf "$SRC"
	mv "$SRC.new" "$SRC"
	mkdir -p "$SRC/_output"
	for d in bin stamps src share tools signing; do
		[[ -e _output/$d ]] && cp -al "_output/$d" "$SRC/_output/$d"
	done
	version="$U7S_RELEASE~k8s${old}"
	log "building u7s $version and Kubernetes $FROM's components"
	make -C "$SRC" --no-print-directory U7S_VERSION="$version" COMPONENTS="$KUBE_COMPONENTS" u7s components deb
	rm -f "$PREV"/u7s_*.deb
	mv "$SRC"/_output/u7s_*.deb "$PREV/"
	echo "$sum" >"$PREV/stamp"
fi

log "pushing and signing the control-plane images of $FROM to $REGISTRY"
"$SRC/_output/bin/u7s" images build --bin-dir "$SRC/_output/bin" --registry "$REGISTRY" --push \
	--only kube-apiserver,kube-controller-manager,kube-scheduler,kube-proxy --sign-key _output/signing/u7s-signing.key
log "done in $((SECONDS - start))s: $(ls "$PREV"/u7s_*.deb)"
