#!/usr/bin/env bash
# Test hosts on this machine: fresh Debian 12 systems with systemd in systemd-nspawn containers on
# one bridge (package test/hosts). `scripts/hosts.sh` alone prints the commands.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/_output/bin/u7s-hosts
export U7S_ROOT=$ROOT
# Rebuilt when its sources changed (go build is a no-op then, from the build cache).
(cd "$ROOT" && go build -o "$BIN" ./test/hosts/cmd/u7s-hosts)
exec "$BIN" "$@"
