#!/usr/bin/env bash
# Measures and prints (never asserts) the figures of the issues:
#   - seconds from `u7s init` to node Ready with every kube-system pod running, images already in
#     the registry;
#   - resident memory of the idle node: every process of u7s-admin and its subordinate ids, summed;
#   - size of the u7s binary.
# It replaces any u7s node on this host and leaves a fresh one running.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "make bench needs root (it runs u7s init)" >&2; exit 1; }
make u7s components install images >/dev/null
u7s reset >/dev/null
start=$(date +%s.%N)
u7s init >/tmp/u7s-bench-init.log 2>&1 || { cat /tmp/u7s-bench-init.log; exit 1; }
end=$(date +%s.%N)
printf 'init-to-ready-seconds: %.1f\n' "$(echo "$end - $start" | bc)"
echo "(waiting 60 s for the node to settle before measuring memory)"
sleep 60
uid=$(id -u u7s-admin)
read -r substart subcount < <(awk -F: '$1=="u7s-admin"{print $2, $3; exit}' /etc/subuid)
ps -eo uid=,rss=,comm= | awk -v u="$uid" -v s="$substart" -v c="$subcount" '
	$1==u || ($1>=s && $1<s+c) { rss+=$2; n++; by[$3]+=$2 }
	END {
		printf "idle-node-rss-mib: %.0f (%d processes)\n", rss/1024, n
		for (k in by) printf "  %-28s %6.0f MiB\n", k, by[k]/1024 | "sort -k2 -n -r"
	}'
printf 'u7s-binary-mib: %.1f\n' "$(echo "$(stat -c %s /usr/bin/u7s) / 1048576" | bc -l)"
