#!/usr/bin/env bash
# make conformance: runs upstream's [Conformance] tests (the e2e suite of the pinned Kubernetes,
# built from source) against the node of this host (make cluster), with the test images of
# registry.local, and prints a report: passed, failed, skipped, and each failure's cause.
#
#   make conformance                                  every Conformance spec that fits one node
#   make conformance CONFORMANCE_FOCUS='DNS|Service'  only specs whose names match
#   CONFORMANCE_LABELS='Feature:NetworkPolicy' ...     another label filter than Conformance's
#   KUBECONFIG=F U7S_REGISTRY=R scripts/conformance.sh    against another cluster than this host's
#                                                     node (TestCluster's hosts), its images from R
#
# CONFORMANCE_FLAKE_ATTEMPTS=N runs a failed spec up to N times in all (ginkgo's --flake-attempts;
# default 1): for the test suites' runs beside other suites on a loaded machine, where a spec's
# first attempt can die of an etcd timeout; the specs that needed a second attempt are counted
# in ginkgo's summary line, printed after the report.
# CONFORMANCE_PREBUILT=1: e2e.test, ginkgo and kubectl are already in _output/bin (scripts/test.sh
# builds them once before its lanes, which may run this script at the same time).
#
# Skipped, as on any cluster of this shape: specs labelled Serial, Disruptive or Flaky, and those
# upstream marks Environment:NotInUserNS (they cannot pass in a user namespace).
# test/conformance/rootless-limits.txt lists the failures that are true limits of a rootless node;
# any other failure fails the run. The reports stay in _output/conformance/<time>.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "make conformance runs as root (it reads the node's admin.conf)" >&2; exit 1; }
FOCUS=${CONFORMANCE_FOCUS:-}
NODES=${CONFORMANCE_NODES:-4}
ATTEMPTS=${CONFORMANCE_FLAKE_ATTEMPTS:-1}
[[ $ATTEMPTS =~ ^[1-9]$ ]] || { echo "conformance: CONFORMANCE_FLAKE_ATTEMPTS=$ATTEMPTS: want 1 to 9" >&2; exit 1; }
LABELS="${CONFORMANCE_LABELS:-Conformance} && !Serial && !Disruptive && !Flaky && !Environment:NotInUserNS"
KUBECONFIG=${KUBECONFIG:-/etc/kubernetes/admin.conf}
# The images' registry: the cluster's (U7S_REGISTRY), else this host's node's.
registry=${U7S_REGISTRY:-}
if [ -z "$registry" ]; then
	if [ ! -r /etc/u7s/node.json ]; then
		echo "conformance: no u7s node on this host (no /etc/u7s/node.json); make cluster first, or name the cluster's KUBECONFIG and U7S_REGISTRY" >&2
		exit 1
	fi
	registry=$(jq -r .registry /etc/u7s/node.json)
fi
[ -r "$KUBECONFIG" ] || { echo "conformance: cannot read $KUBECONFIG (KUBECONFIG); make cluster first" >&2; exit 1; }
KUBECONFIG=$KUBECONFIG kubectl get --raw /readyz >/dev/null ||
	{ echo "conformance: the API server of $KUBECONFIG does not answer; u7s status, or u7s start" >&2; exit 1; }

if [ "${CONFORMANCE_PREBUILT:-}" != 1 ]; then
	echo "== building upstream's e2e suite, ginkgo and kubectl (Kubernetes of versions.env)"
	make -s components COMPONENTS="e2e.test ginkgo kubectl"
fi
bin=$PWD/_output/bin

# Upstream's test images come from the cluster's registry, where u7s images build puts them: u7s
# says where (u7s images repo-list, the one place of that rule).
out=$PWD/_output/conformance/$(date -u +%Y%m%dT%H%M%SZ)-$$
mkdir -p "$out"
u7s=$bin/u7s
[ -x "$u7s" ] || u7s=u7s
U7S_REGISTRY=$registry "$u7s" images repo-list >"$out/repo-list.yaml"

# One spec asks for a cluster of two nodes or more; on a one-node cluster (make cluster) it is
# skipped, and said so, rather than counted as a failure of the node.
SKIP=
untainted=$(KUBECONFIG=$KUBECONFIG kubectl get nodes -o json | jq '[.items[] | select(.spec.unschedulable != true)
	| select([.spec.taints[]? | select(.effect == "NoSchedule" or .effect == "NoExecute")] | length == 0)] | length')
if ((untainted < 2)); then
	SKIP='should have at least two untainted nodes'
	echo "   skipping \"$SKIP\": the cluster has $untainted untainted node(s); it runs on a cluster of two or more"
fi

echo "== running: label filter \"$LABELS\"${FOCUS:+, focus \"$FOCUS\"}, $NODES parallel processes; log: $out/e2e.log"
start=$SECONDS
set +e
KUBE_TEST_REPO_LIST=$out/repo-list.yaml PATH=$bin:$PATH "$bin/ginkgo" --procs="$NODES" --timeout=24h --flake-attempts="$ATTEMPTS" \
	--label-filter="$LABELS" ${FOCUS:+--focus="$FOCUS"} ${SKIP:+--skip="$SKIP"} --output-dir="$out" --junit-report=junit.xml --no-color \
	"$bin/e2e.test" -- --kubeconfig="$KUBECONFIG" --provider=skeleton --report-dir="$out" \
	--kubectl-path="$bin/kubectl" >"$out/e2e.log" 2>&1
rc=$?
set -e
echo "   the suite ran $((SECONDS - start)) s (exit $rc)"
[ -s "$out/junit.xml" ] || { tail -n 40 "$out/e2e.log" >&2; echo "conformance: the suite wrote no report" >&2; exit 1; }
# Ginkgo's own count, with the specs that passed only on a later attempt ("Flaked").
grep -E '[0-9]+ Passed \| [0-9]+ Failed' "$out/e2e.log" | tail -n 1 | sed 's/^/   ginkgo: /' || true
go run ./test/conformance/report -limits test/conformance/rootless-limits.txt "$out/junit.xml" | tee "$out/report.txt"
