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
kubectl create deployment bench-np --image=registry.local/e2e-test-images/agnhost:2.59 -- /agnhost netexec --http-port=8080 >/dev/null
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
