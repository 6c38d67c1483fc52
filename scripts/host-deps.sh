#!/usr/bin/env bash
# Installs the Debian packages a u7s node runs on and builds with, and checks that every command they
# bring is there. Idempotent and quiet: installs only what is missing, and refreshes the package lists
# only when they are missing or older than a day (or when an install fails on a stale list).
#
#   scripts/host-deps.sh           install what is missing, then check
#   scripts/host-deps.sh --check   check only: exit 1 naming each missing package and command
#   scripts/host-deps.sh --list [runtime]   print the packages (or those a node runs on), one a line
#
# This file is the one list of the host's packages; the fresh-host test checks against it.
set -euo pipefail

# package:command[,command...]  (the commands each package must bring; "-" for a library), by group.
# shellcheck disable=SC2054 # the commas separate the commands of one package
RUNTIME=(
	# the node: user namespace and its network, cri-o's monitor, iptables userland (also copied into
	# the kube-proxy and flannel images), process tools
	slirp4netns:slirp4netns conmon:conmon uidmap:newuidmap,newgidmap iptables:iptables,xtables-nft-multi
	conntrack:conntrack nftables:nft util-linux:nsenter,unshare,mount iproute2:ip psmisc:fuser procps:ps,pgrep
	ca-certificates:-
)
# shellcheck disable=SC2054
TOOLS=(
	# local image registry and image tools, tests and benchmarks
	docker-registry:docker-registry skopeo:skopeo busybox-static:busybox bc:bc curl:curl
	# building runc, cri-o and pinns (cgo with libseccomp), the test images' busybox (its release is a
	# .tar.bz2) and the rest
	libseccomp-dev:- pkg-config:pkg-config gcc:gcc libc6-dev:- make:make binutils:ld,strip jq:jq git:git bzip2:bzip2
	# test machines (systemd-nspawn + debootstrap), packaging, load balancing and benchmarks
	systemd-container:systemd-nspawn debootstrap:debootstrap rpm:rpmbuild rpmlint:rpmlint lintian:lintian haproxy:haproxy
	keepalived:keepalived
	# test machines with a kernel of their own (qemu VMs, reached through ssh)
	qemu-system-x86:qemu-system-x86_64 qemu-utils:qemu-img openssh-client:ssh,ssh-keygen
	# the NetworkPolicy controller's image (images: u7s-netpol) carries Debian's ipset
	ipset:ipset
	# the tools of upstream's agnhost test image (images.agnhost), copied into it
	iperf3:iperf3 iperf:iperf bind9-dnsutils:dig,nslookup bind9-host:host netcat-openbsd:nc.openbsd bash:bash
	# the libraries of Debian's nginx, which the nginx test image carries (fetched, not installed)
	libpcre2-8-0:- libssl3:- zlib1g:- libcrypt1:-
)
DEPS=("${RUNTIME[@]}" "${TOOLS[@]}")

packages() { local d; for d in "${DEPS[@]}"; do echo "${d%%:*}"; done; }
runtime_packages() { local d; for d in "${RUNTIME[@]}"; do echo "${d%%:*}"; done; }

# Package names that are not fully installed. dpkg-query exits 1 when any name is unknown to it,
# so its status is ignored and only its output counts.
missing_packages() {
	local have p
	mapfile -t pkgs < <(packages)
	have=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "${pkgs[@]}" 2>/dev/null || true)
	for p in "${pkgs[@]}"; do
		grep -qxF "$p installed" <<<"$have" || echo "$p"
	done
}

# "command (package)" for each command that is not on PATH (sbin included: root's tools live there).
missing_commands() {
	local d cmds c
	for d in "${DEPS[@]}"; do
		cmds=${d#*:}
		[[ $cmds == - ]] && continue
		for c in ${cmds//,/ }; do
			PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin command -v "$c" >/dev/null 2>&1 || echo "$c (${d%%:*})"
		done
	done
}

check() {
	local bad=0
	mapfile -t mp < <(missing_packages)
	mapfile -t mc < <(missing_commands)
	if ((${#mp[@]})); then
		echo "host-deps: missing packages: ${mp[*]}" >&2
		bad=1
	fi
	if ((${#mc[@]})); then
		echo "host-deps: missing commands: ${mc[*]}" >&2
		bad=1
	fi
	((bad == 0)) || { echo "host-deps: fix: make host-deps (as root)" >&2; return 1; }
}

case ${1:-} in
--list) if [[ ${2:-} == runtime ]]; then runtime_packages; else packages; fi; exit 0 ;;
--check)
	check
	echo "host-deps: all $(packages | wc -l) packages and their commands present"
	exit 0
	;;
"") ;;
*) echo "usage: $0 [--check|--list]" >&2; exit 2 ;;
esac

[[ $(id -u) == 0 ]] || {
	echo "host-deps: must run as root (apt-get install)" >&2
	exit 1
}
export DEBIAN_FRONTEND=noninteractive

lists_fresh() {
	# Any list newer than a day.
	[[ -n $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -mtime -1 -print -quit 2>/dev/null) ]]
}

update() {
	echo "host-deps: apt-get update"
	apt-get update -qq >/dev/null || { echo "host-deps: apt-get update failed; check /etc/apt/sources.list and the network" >&2; return 1; }
}

mapfile -t todo < <(missing_packages)
if ((${#todo[@]})); then
	echo "host-deps: installing ${#todo[@]} package(s): ${todo[*]}"
	lists_fresh || update
	apt_install() { apt-get install -y -qq --no-install-recommends -o Dpkg::Options::=--force-confold "${todo[@]}" >/dev/null; }
	if ! apt_install; then
		update
		apt_install || { echo "host-deps: apt-get install ${todo[*]} failed (output above)" >&2; exit 1; }
	fi
fi
check
echo "host-deps: all ${#DEPS[@]} packages and their commands present"
