#!/usr/bin/env bash
# Installs the Debian packages a u7s node runs on and builds with. Idempotent and quiet: installs only
# what is missing, and refreshes the package lists only when they are missing or older than a day
# (or when an install fails on a stale list).
set -euo pipefail

PACKAGES=(
	# runtime: user namespace and its network, cri-o's monitor, iptables userland (also copied into
	# the kube-proxy and flannel images), process tools
	slirp4netns conmon uidmap iptables conntrack nftables util-linux iproute2 psmisc procps bc curl
	# local image registry and image tools
	docker-registry skopeo busybox-static
	# building runc, cri-o and pinns (cgo with libseccomp) and the rest
	libseccomp-dev pkg-config gcc libc6-dev make binutils jq
	# test machines (systemd-nspawn + debootstrap), packaging, load balancing and benchmarks
	systemd-container debootstrap rpm rpmlint haproxy iperf3
)

[[ $(id -u) == 0 ]] || {
	echo "host-deps: must run as root (apt-get install)" >&2
	exit 1
}
export DEBIAN_FRONTEND=noninteractive

missing() {
	local have
	have=$(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null |
		awk '$2 == "install" && $4 == "installed" { print $1 }')
	local p
	for p in "${PACKAGES[@]}"; do
		grep -qxF "$p" <<<"$have" || echo "$p"
	done
}

lists_fresh() {
	# Any list newer than a day.
	[[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mtime -1 -print -quit 2>/dev/null) ]]
}

update() { apt-get update -qq >/dev/null; }

mapfile -t todo < <(missing)
if ((${#todo[@]} == 0)); then
	echo "host-deps: all ${#PACKAGES[@]} packages present"
	exit 0
fi
echo "host-deps: installing ${todo[*]}"
lists_fresh || update
apt_install() { apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "${todo[@]}" >/dev/null; }
if ! apt_install; then
	update
	apt_install
fi
mapfile -t still < <(missing)
if ((${#still[@]})); then
	echo "host-deps: still missing after install: ${still[*]}" >&2
	exit 1
fi
echo "host-deps: done"
