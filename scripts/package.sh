#!/usr/bin/env bash
# Builds u7s's packages under _output from the one install layout (scripts/install.sh):
#   scripts/package.sh deb      _output/u7s_<version>_<arch>.deb (nfpm, pinned)
#   scripts/package.sh rpm      _output/u7s-<version>-<release>.<arch>.rpm and the .src.rpm (rpmbuild, rpm/u7s.spec)
#   scripts/package.sh images   _output/u7s-images-<version>.tar: every node image, an OCI layout (u7s images load)
# U7S_VERSION comes from the Makefile (make deb / make rpm / make images-archive).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=$ROOT/_output
VERSION=${U7S_VERSION:?run through make (make deb, make rpm)}
ARCH=$(dpkg --print-architecture 2>/dev/null || echo amd64)
NFPM_VERSION=v2.45.2
log() { printf '[package] %s\n' "$*" >&2; }

stage() {
	rm -rf "$OUT/pkgroot"
	DESTDIR=$OUT/pkgroot scripts/install.sh >/dev/null
}

# debian_extras adds what Debian's policy asks of a package: its changelog and lintian's
# overrides, each explained in rpm/README.md.
debian_extras() {
	local doc=$OUT/pkgroot/usr/share/doc/u7s ov=$OUT/pkgroot/usr/share/lintian/overrides
	mkdir -p "$doc" "$ov"
	printf 'u7s (%s-1) unstable; urgency=medium\n\n  * Built from the u7s source tree at %s.\n\n -- u7s developers <dev@u7s.dev>  %s\n' \
		"$VERSION" "$VERSION" "$(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")" |
		gzip -9n >"$doc/changelog.Debian.gz"
	cat >"$ov/u7s" <<'OVERRIDES'
# Go programs are linked statically, as upstream releases them (rpm/README.md).
u7s: statically-linked-binary [usr/bin/kubectl]
u7s: statically-linked-binary [usr/libexec/u7s/bin/kubelet]
u7s: statically-linked-binary [usr/libexec/u7s/bin/kube-bench]
u7s: statically-linked-binary [usr/libexec/u7s/bin/pinns]
u7s: statically-linked-binary [usr/libexec/u7s/cni/*]
OVERRIDES
}

deb() {
	local nfpm=$OUT/tools/nfpm deps
	if [[ ! -x $nfpm ]] || ! "$nfpm" --version 2>/dev/null | grep -q "${NFPM_VERSION#v}"; then
		log "building nfpm $NFPM_VERSION"
		GOBIN=$OUT/tools go install "github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION"
	fi
	stage
	debian_extras
	# The runtime dependencies are host-deps' runtime group, by Debian's names; util-linux is
	# essential (always installed) and is not named; u7s and crio link glibc.
	deps=$( (echo libc6; scripts/host-deps.sh --list runtime | grep -vx util-linux) | sed 's/^/  - /')
	cat >"$OUT/nfpm.yaml" <<YAML
name: u7s
arch: $ARCH
platform: linux
version: $VERSION
version_schema: none
release: "1"
section: admin
priority: optional
maintainer: u7s developers <dev@u7s.dev>
homepage: https://github.com/u7s/u7s
license: Apache-2.0
description: |-
  Rootless Kubernetes nodes
  u7s turns a Linux host into a Kubernetes node whose every part runs
  without root, in the user namespace of the system user u7s-admin
  (rootlesskit, slirp4netns): u7s init, u7s join. It carries kubeadm
  (linked), the kubelet, cri-o, runc, kubectl and the CNI plugins.
depends:
$deps
recommends:
  - systemd
contents:
  - src: $OUT/pkgroot/usr
    dst: /usr
    type: tree
scripts:
  postinstall: $ROOT/rpm/deb/postinst
  preremove: $ROOT/rpm/deb/prerm
  postremove: $ROOT/rpm/deb/postrm
deb:
  compression: gzip
YAML
	rm -f "$OUT"/u7s_*.deb
	"$nfpm" pkg --packager deb --config "$OUT/nfpm.yaml" --target "$OUT/" >&2
	ls "$OUT"/u7s_*.deb
}

rpm() {
	local top=$OUT/rpmbuild src
	rm -rf "$top"
	mkdir -p "$top"/{SOURCES,SPECS,BUILD,RPMS,SRPMS}
	src=u7s-$VERSION
	git ls-files -z --cached --others --exclude-standard | tar --null -T - --transform "s,^,$src/," -czf "$top/SOURCES/$src.tar.gz"
	# --nodeps: on Debian rpm's own database is empty; host-deps installed the build dependencies.
	rpmbuild -ba --nodeps --define "_topdir $top" --define "u7s_version $VERSION" rpm/u7s.spec >&2
	rm -f "$OUT"/u7s-*.rpm
	find "$top/RPMS" "$top/SRPMS" -name '*.rpm' -exec cp {} "$OUT/" \;
	ls "$OUT"/u7s-*.rpm
}

images() {
	local dir=$OUT/images-oci archive=$OUT/u7s-images-$VERSION.tar
	rm -rf "$dir" "$OUT"/u7s-images-*.tar
	"$OUT/bin/u7s" images build --bin-dir "$OUT/bin" --registry registry.local/k8s-p10 --oci-dir "$dir" >&2
	tar -C "$dir" -cf "$archive.tmp" .
	mv "$archive.tmp" "$archive"
	rm -rf "$dir"
	echo "$archive"
}

case ${1:-} in
deb | rpm | images) "$1" ;;
*) echo "usage: $0 deb|rpm|images" >&2; exit 2 ;;
esac
