#!/usr/bin/env bash
# Test hosts on this machine: fresh Debian 12 systems with systemd in systemd-nspawn containers or
# qemu VMs on one bridge (package test/hosts). `scripts/hosts.sh` alone prints the commands.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/_output/bin/u7s-hosts
export U7S_ROOT=$ROOT
# Rebuilt when its sources changed (go build is a no-op then, from the build cache).
(cd "$ROOT" && go build -o "$BIN" ./test/hosts/cmd/u7s-hosts)
# Hosts get u7s as users do, from the .deb: made again when the u7s binary is newer (unless
# --deb names another). Under a lock: end-to-end suites run side by side, and one rebuild serves them all.
if [[ ${1:-} == up && " $* " != *" --fresh "* && " $* " != *" --deb "* ]]; then
	exec 9>"$ROOT/_output/.deb.lock"
	flock 9
	deb=$(find "$ROOT/_output" -maxdepth 1 -name 'u7s_*.deb' 2>/dev/null | sort | tail -1)
	if [[ -z $deb || $ROOT/_output/bin/u7s -nt $deb ]]; then
		make -s -C "$ROOT" deb >/dev/null
	fi
	exec 9>&-
fi
exec "$BIN" "$@"
