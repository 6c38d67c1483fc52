#!/usr/bin/env bash
# Installs the node's binaries from _output/bin into the FHS tree of internal/paths:
#   u7s, kubectl                            -> $BINDIR      (/usr/bin)
#   kubelet crio pinns runc                 -> $U7S_LIBEXEC/bin  (/usr/libexec/u7s/bin)
#   bridge host-local loopback portmap      -> $U7S_LIBEXEC/cni  (/usr/libexec/u7s/cni)
#   $U7S_LIBEXEC/cni/flannel -> u7s         (u7s acts as the flannel CNI plugin by argv[0])
#   $U7S_LIBEXEC/bin/u7s-runc -> u7s       (the OCI runtime cri-o calls: runc behind an oom_score_adj clamp)
# DESTDIR, PREFIX, BINDIR and LIBEXECDIR work as in autotools, so an rpm %install can reuse this.
# Each file is written to a temporary name and renamed over the old one, so a running binary is
# never overwritten in place; unchanged files are left alone.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRCBIN=${SRCBIN:-$ROOT/_output/bin}
DESTDIR=${DESTDIR:-}
PREFIX=${PREFIX:-/usr}
BINDIR=${BINDIR:-$PREFIX/bin}
LIBEXECDIR=${LIBEXECDIR:-$PREFIX/libexec}
U7S_LIBEXEC=$LIBEXECDIR/u7s

NODE_BINS=(kubelet crio pinns runc)
CNI_BINS=(bridge host-local loopback portmap)

die() {
	echo "install: error: $*" >&2
	exit 1
}

for f in u7s kubectl "${NODE_BINS[@]}" "${CNI_BINS[@]}"; do
	[[ -x $SRCBIN/$f ]] || die "$SRCBIN/$f is missing; build it first with: make u7s components"
done

# put SRC DIR: installs SRC as DIR/basename, mode 0755, by rename.
put() {
	local src=$1 dir=$DESTDIR$2 name tmp
	name=$(basename "$src")
	mkdir -p "$dir"
	if [[ -f $dir/$name && ! -L $dir/$name ]] && cmp -s "$src" "$dir/$name"; then
		return
	fi
	tmp=$(mktemp "$dir/.$name.XXXXXX")
	install -m 0755 "$src" "$tmp"
	mv -f "$tmp" "$dir/$name"
	echo "install: $dir/$name"
}

# link TARGET DIR NAME: DIR/NAME -> TARGET, replaced by rename.
link() {
	local target=$1 dir=$DESTDIR$2 name=$3 tmp
	mkdir -p "$dir"
	[[ -L $dir/$name && $(readlink "$dir/$name") == "$target" ]] && return
	tmp=$dir/.$name.$$
	ln -sfn "$target" "$tmp"
	mv -fT "$tmp" "$dir/$name"
	echo "install: $dir/$name -> $target"
}

put "$SRCBIN/u7s" "$BINDIR"
put "$SRCBIN/kubectl" "$BINDIR"
for f in "${NODE_BINS[@]}"; do put "$SRCBIN/$f" "$U7S_LIBEXEC/bin"; done
for f in "${CNI_BINS[@]}"; do put "$SRCBIN/$f" "$U7S_LIBEXEC/cni"; done
# Relative, so the link is right under DESTDIR and on the installed system alike.
link "$(realpath -m --relative-to="$U7S_LIBEXEC/cni" "$BINDIR/u7s")" "$U7S_LIBEXEC/cni" flannel
link "$(realpath -m --relative-to="$U7S_LIBEXEC/bin" "$BINDIR/u7s")" "$U7S_LIBEXEC/bin" u7s-runc
