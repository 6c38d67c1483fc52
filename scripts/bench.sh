#!/usr/bin/env bash
# Measures and prints (never asserts) the figures of the issues:
#   - seconds from `u7s init` to node Ready with every kube-system pod running, images already in
#     the registry;
#   - resident memory of the idle node: every process of u7s-admin and its subordinate ids, summed;
#   - size of the u7s binary.
# It replaces any u7s node on this host and leaves a fresh one running.
#
#   scripts/bench.sh [all|node|hosts|day2]    (make bench BENCH=hosts): all, or one part:
#     node   this host's node: init, memory, port forwarding, restart
#     hosts  two test hosts: a worker's join, pod-to-pod across hosts, NetworkPolicy
#     day2   the figures of the day-2 end-to-end tests (upgrades, etcd, reboots)
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck source-path=SCRIPTDIR source=../internal/version/versions.env
. internal/version/versions.env
[ "$(id -u)" = 0 ] || { echo "make bench needs root (it runs u7s init)" >&2; exit 1; }
what=${1:-all}
case $what in all | node | hosts | day2) ;; *) echo "usage: scripts/bench.sh [all|node|hosts|day2]" >&2; exit 2 ;; esac
make u7s components install images >/dev/null

node_figures() {
	u7s reset >/dev/null
	start=$(date +%s.%N)
	u7s init --schedule-workloads >/tmp/u7s-bench-init.log 2>&1 || { cat /tmp/u7s-bench-init.log; exit 1; }
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

	# Port forwarding (issue 4): a NodePort's delay from Service creation to answering on the host,
	# and throughput through the forward against the same server on the host's loopback.
	export KUBECONFIG=/etc/kubernetes/admin.conf
	node_ip=$(kubectl get nodes -o jsonpath='{.items[0].status.addresses[?(@.type=="InternalIP")].address}')
	kubectl create deployment bench-np --image=registry.local/e2e-test-images/agnhost:"$AGNHOST_IMAGE_TAG" -- /agnhost netexec --http-port=8080 >/dev/null
	kubectl rollout status deployment/bench-np --timeout=120s >/dev/null
	delays=()
	for i in 1 2 3 4 5; do
		port=$((30100 + i))
		kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: bench-np-$i}
spec:
  type: NodePort
  selector: {app: bench-np}
  ports: [{port: 80, targetPort: 8080, nodePort: $port}]
YAML
		t0=$(date +%s.%N) # the Service exists once kubectl returns
		until curl -s -m 0.5 "http://$node_ip:$port/hostname" >/dev/null; do sleep 0.02; done
		delays+=("$(echo "$(date +%s.%N) - $t0" | bc)")
		kubectl delete service "bench-np-$i" >/dev/null
	done
	printf 'nodeport-ready-seconds (after the Service is created, 5 services): %s\n' "${delays[*]}"
	printf 'nodeport-ready-seconds-median: %s\n' "$(printf '%s\n' "${delays[@]}" | sort -n | sed -n 3p)"
	kubectl delete deployment bench-np >/dev/null

	# iperf3 inside the namespace behind a forward, against iperf3 on the host's loopback.
	u7s enter -- iperf3 -s -1 -p 5201 >/dev/null 2>&1 &
	u7s ports add 0.0.0.0:15201:5201/tcp >/dev/null
	sleep 1
	fwd=$(iperf3 -c 127.0.0.1 -p 15201 -t 5 -J | jq '.end.sum_received.bits_per_second / 1e9')
	u7s ports remove 0.0.0.0:15201:5201/tcp >/dev/null
	iperf3 -s -1 -p 15202 >/dev/null 2>&1 &
	sleep 0.5
	direct=$(iperf3 -c 127.0.0.1 -p 15202 -t 5 -J | jq '.end.sum_received.bits_per_second / 1e9')
	awk -v f="$fwd" -v d="$direct" 'BEGIN { printf "forward-gbps: %.2f  loopback-gbps: %.2f  ratio: %.2f\n", f, d, f / d }'

	# Restart (issue 8): the supervisor killed, the node started again: seconds until the node is
	# Ready with every kube-system and kube-flannel pod running again.
	kill -9 "$(cat /run/u7s/supervisor.pid)"
	sleep 2
	t0=$(date +%s.%N)
	u7s start >/dev/null 2>&1 || systemctl start u7s
	all_running() {
		kubectl get nodes --no-headers 2>/dev/null | grep -q ' Ready ' || return 1
		local out
		out=$(kubectl get pods -n kube-system -o 'jsonpath={range .items[*]}{.status.containerStatuses[*].ready}{"\n"}{end}' 2>/dev/null) || return 1
		out+=$'\n'$(kubectl get pods -n kube-flannel -o 'jsonpath={range .items[*]}{.status.containerStatuses[*].ready}{"\n"}{end}' 2>/dev/null) || return 1
		! grep -q false <<<"$out"
	}
	# The kubelet reports the old pods' state until it syncs: wait until it has seen the restart.
	sleep 5
	until all_running; do sleep 1; done
	printf 'restart-to-all-pods-running-seconds: %.1f\n' "$(echo "$(date +%s.%N) - $t0" | bc)"
}

hosts_figures() {
	# Two hosts (issue 8): a control plane and a worker in systemd-nspawn on this machine: seconds of
	# the worker's join, and pod-to-pod iperf3 across hosts over flannel against iperf3 between the
	# two hosts' network namespaces directly.
	scripts/hosts.sh down b1 b2 >/dev/null
	scripts/hosts.sh up b1 b2 >/dev/null
	trap 'scripts/hosts.sh down b1 b2 >/dev/null' EXIT
	on() { local h=$1; shift; scripts/hosts.sh exec "$h" -- "$@"; }
	on b1 u7s init --schedule-workloads >/tmp/u7s-bench-b1.log 2>&1 || { tail -30 /tmp/u7s-bench-b1.log; exit 1; }
	join=$(grep -m1 '^ *u7s join ' /tmp/u7s-bench-b1.log)
	t0=$(date +%s.%N)
	# shellcheck disable=SC2086 # the join command's words
	on b2 $join >/tmp/u7s-bench-b2.log 2>&1 || { tail -30 /tmp/u7s-bench-b2.log; exit 1; }
	printf 'worker-join-to-ready-seconds: %.1f\n' "$(echo "$(date +%s.%N) - $t0" | bc)"
	on b1 bash -c 'KUBECONFIG=/etc/kubernetes/admin.conf kubectl apply -f - >/dev/null' <<YAML
apiVersion: v1
kind: Pod
metadata: {name: iperf-server}
spec:
  nodeName: b2
  containers: [{name: c, image: registry.local/e2e-test-images/agnhost:$AGNHOST_IMAGE_TAG, command: [iperf3, -s]}]
---
apiVersion: v1
kind: Pod
metadata: {name: iperf-client}
spec:
  nodeName: b1
  containers: [{name: c, image: registry.local/e2e-test-images/agnhost:$AGNHOST_IMAGE_TAG, args: [pause]}]
YAML
	kb() { on b1 env KUBECONFIG=/etc/kubernetes/admin.conf kubectl "$@"; }
	kb wait --for=condition=Ready pod/iperf-server pod/iperf-client --timeout=180s >/dev/null
	server_ip=$(kb get pod iperf-server -o 'jsonpath={.status.podIP}')
	pod=$(kb exec iperf-client -- iperf3 -c "$server_ip" -t 5 -J | jq '.end.sum_received.bits_per_second / 1e9')
	# The same between the two hosts, this machine's iperf3 run in each host's network namespace.
	b1_ip=$(scripts/hosts.sh ip b1)
	nsrun() { nsenter -t "$(scripts/hosts.sh leader "$1")" -n "${@:2}"; }
	nsrun b1 iperf3 -s -1 -p 15301 >/dev/null 2>&1 &
	sleep 0.5
	hosts=$(nsrun b2 iperf3 -c "$b1_ip" -p 15301 -t 5 -J | jq '.end.sum_received.bits_per_second / 1e9')
	awk -v p="$pod" -v h="$hosts" 'BEGIN { printf "pod-to-pod-across-hosts-gbps: %.2f  host-to-host-gbps: %.2f  ratio: %.2f\n", p, h, p / h }'

	# NetworkPolicy (issue 20): the controller's memory on each node, seconds from a default deny's
	# creation until the client is refused, and the same pod-to-pod throughput with 100 policies on
	# the server (99 admitting other clients, one admitting this one) against none above.
	for h in b1 b2; do
		# shellcheck disable=SC2016 # expanded on the host
		on "$h" bash -c 'for p in $(pgrep -x u7s-netpol); do cat "/proc/$p/smaps_rollup"; done' |
			awk -v h="$h" '$1 == "Rss:" { r += $2 } $1 == "Pss:" { p += $2 } END { printf "netpol-controller-mib-%s: rss %.0f pss %.0f\n", h, r / 1024, p / 1024 }'
	done
	kb label pod iperf-server app=iperf-server >/dev/null
	kb label pod iperf-client app=iperf-client >/dev/null
	kb apply -f - >/dev/null <<YAML
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: bench-deny}
spec:
  podSelector: {matchLabels: {app: iperf-server}}
  policyTypes: [Ingress]
YAML
	t0=$(date +%s.%N)
	while kb exec iperf-client -- nc -z -w 1 "$server_ip" 5201 >/dev/null 2>&1; do sleep 0.2; done
	printf 'netpol-deny-enforced-seconds: %.1f\n' "$(echo "$(date +%s.%N) - $t0" | bc)"
	for i in $(seq 1 100); do
		client=other-$i
		((i < 100)) || client=iperf-client
		printf -- '---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: bench-allow-%d}\nspec:\n  podSelector: {matchLabels: {app: iperf-server}}\n  ingress:\n  - from: [{podSelector: {matchLabels: {app: %s}}}]\n    ports: [{protocol: TCP, port: 5201}]\n' "$i" "$client"
	done | kb apply -f - >/dev/null
	until kb exec iperf-client -- nc -z -w 1 "$server_ip" 5201 >/dev/null 2>&1; do sleep 0.5; done
	policed=$(kb exec iperf-client -- iperf3 -c "$server_ip" -t 5 -J | jq '.end.sum_received.bits_per_second / 1e9')
	awk -v p="$pod" -v q="$policed" 'BEGIN { printf "pod-to-pod-gbps-with-100-policies: %.2f  without: %.2f  ratio: %.2f\n", q, p, q / p }'
	scripts/hosts.sh down b1 b2 >/dev/null
	trap - EXIT
}

day2_figures() {
	# Day-2 (issue 11): the end-to-end tests that do them measure them; their FIGURE lines. The
	# upgrade of a control plane and a worker from the previous release (make previous-release),
	# an etcd snapshot save and restore (TestNode: the etcd's size is printed with it), a restore of
	# three control planes, and coordinated reboots of two workers (from the sentinel to back in
	# service). The node of this host is made again by TestNode.
	echo "== day-2 figures (end-to-end tests; about 25 minutes)"
	make deb previous-release >/dev/null
	go test -tags "e2e $(make -s --no-print-directory print-u7s-tags)" -count=1 -v -timeout 60m \
		-run 'TestUpgrade|TestNode/etcd_snapshot|TestCluster/(init|coordinated|etcd_restore)' ./test/e2e/ 2>&1 |
		grep -E 'FIGURE|^(--- |FAIL|ok)' | sed 's/^ *//'
}

for part in node hosts day2; do
	if [ "$what" = all ] || [ "$what" = "$part" ]; then
		"${part}_figures"
	fi
done
