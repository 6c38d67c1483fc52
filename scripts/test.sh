#!/usr/bin/env bash
# Runs every test: unit tests, then the end-to-end tests with real kubelet, cri-o, etcd, registry
# and kubectl on this host and on test hosts (systemd-nspawn), then a focused part of upstream's
# Conformance suite. The end-to-end tests replace any u7s node on this host and leave a fresh
# working one behind. Prints each suite's time at the end, also when one fails.
#
#   scripts/test.sh [all|unit|e2e]
#
# The end-to-end suites run in three lanes side by side, as they share nothing but this machine:
#   node:  TestNode and TestPorts (this host's node), then the focused Conformance part on the node
#          they leave;
#   hosts: TestCluster (h1-h5 behind haproxy), then TestUpgrade (h6, h7);
#   vm:    TestVM (vm1, a qemu VM with cgroup v2, a worker of vmcp): the slowest single test, from
#          the start; then TestFreshHost and TestPackage (hosts fresh, pkg).
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
[ "$(id -u)" = 0 ] || { echo "the tests need root (they run u7s init)" >&2; exit 1; }

# Each suite's name and seconds, printed at the end however the run ends.
TIMES=()
T0=$SECONDS
# The run's own limit, under CI's 90 minutes: a step still running at it is stopped (go test's
# -timeout names the tests that were running), so that the summary below is printed rather than
# cut off by CI's kill.
BUDGET=${U7S_TEST_BUDGET:-$((87 * 60))}
left() { echo $((BUDGET - (SECONDS - T0))); }
summary() {
	local rc=$? l
	echo "== times (total $((SECONDS - T0)) s, exit $rc)"
	for l in "${TIMES[@]}"; do echo "   $l"; done
	# The machine's load while the lanes ran (one sample a minute): what made a step slow.
	[ -s _output/e2e/load.txt ] && awk '{ s += $1; if ($1 > m) m = $1; c += $2; io += $3 } END { printf "   load average (1 min) during the end-to-end tests: mean %.1f, max %.1f, %d samples; pressure (share of time some task waited): CPU %.0f%%, IO %.0f%%\n", s / NR, m, NR, c / NR, io / NR }' _output/e2e/load.txt
	# Who used the CPUs: each test host's cgroup, this machine's node (u7s) and the rest.
	[ -s _output/e2e/cpu.txt ] && awk '
		# A host made again starts its cgroup from 0: a smaller value than the last is all new.
		# One made after the first sample used all it has in the minute before.
		$1 == "machine" { minutes++ }
		{ if ($1 in last) { d = $3 - last[$1]; if (d < 0) d = $3 } else d = minutes > 1 ? $3 : 0; last[$1] = $3 }
		$1 == "machine" { busy += d; next }
		{ use[$1] += d; all += d }
		END {
			printf "   CPU seconds used during the end-to-end tests: %.0f of the %.0f there were; by cgroup:", busy / 100, (minutes - 1) * 60 * cores
			for (c in use) if (use[c] > 1e9) printf " %s %.0f,", c, use[c] / 1e9
			printf " the rest (tests, builds) %.0f\n", busy / 100 - all / 1e9
		}' cores="$(nproc)" _output/e2e/cpu.txt
	for l in _output/e2e/*.log; do
		[ -e "$l" ] || continue
		grep -hE '^(\[[a-z]+\] )?(--- (PASS|FAIL|SKIP): Test[A-Za-z]+ |== lane )' "$l" | sed -E 's/^(\[[a-z]+\] )?(---|==)/   /' || true
	done
	# Last, as the end of the output is all a CI page may show: why each failed test failed, as
	# the last messages of its own output (go test -v prints a subtest's errors inside its section,
	# between its "=== RUN" and the next test's, and the "--- FAIL" lines only at the end).
	for l in _output/e2e/*.log; do
		[ -e "$l" ] || continue
		awk '{ sub(/^[0-9:]+ /, ""); sub(/^\[[a-z]+\] /, "") }
			/^=== (RUN|CONT|NAME) / { cur = $3; next }
			/^ *--- FAIL: / { failed[++nf] = $3; next }
			/^ *--- (PASS|SKIP): |^(PASS|FAIL|ok) / { next }
			# The first line of each message of the test (t.Error, t.Fatal, t.Log: FILE_test.go:N:),
			# not the lines of a long message after it, which can bury the error.
			cur != "" && /^ +[A-Za-z0-9_]+_test\.go:[0-9]+: / { n[cur]++; buf[cur, n[cur] % 6] = substr($0, 1, 240) }
			# A test that ran out of its time prints no "--- FAIL", only the tests still running.
			/^panic: test timed out after / { timedout = $0; running = 1; next }
			running && /^\t+Test[^ ]+ \(/ { lastrun = $0; next }
			running && /^$/ { running = 0 }
			END {
				if (timedout != "") {
					sub(/^\t+/, "", lastrun)
					print "== " lastrun " (" FILENAME "): " timedout
				}
				for (i = 1; i <= nf; i++) {
					t = failed[i]; leaf = 1
					for (j = 1; j <= nf; j++) if (index(failed[j], t "/") == 1) leaf = 0
					if (!leaf || !n[t]) continue
					print "== " t " failed (" FILENAME "), its last messages:"
					for (k = n[t] - 5; k <= n[t]; k++) if (k > 0) print buf[t, k % 6]
				}
			}' "$l"
	done
}
trap summary EXIT
# suite NAME CMD...: runs CMD as one timed suite.
suite() {
	local name=$1 start=$SECONDS rc=0
	shift
	echo "== $name"
	"$@" || rc=$?
	TIMES+=("$(printf '%-28s %5d s%s' "$name" $((SECONDS - start)) "$( ((rc == 0)) || echo "  FAILED (exit $rc)")")")
	return "$rc"
}

suite "host packages" make host-deps
# The build tags of u7s's packages, from the one place that sets them (U7S_TAGS in the Makefile).
tags=$(make -s --no-print-directory print-u7s-tags)
# The unit-test packages, from the one place that lists them (the Makefile's unit target).
unit_pkgs=$(make -s --no-print-directory print-unit-packages)
if [ "$what" = all ] || [ "$what" = unit ]; then
	# shellcheck disable=SC2086 # one package pattern a word
	suite "unit tests" go test -tags "$tags" $unit_pkgs
fi
[ "$what" = all ] || [ "$what" = e2e ] || exit 0

suite "build: u7s, components" make u7s components
# Upstream's e2e suite, for the lanes' runs of scripts/conformance.sh (two may run at once: built
# here once, they do not build it again).
suite "build: upstream's e2e suite" make components COMPONENTS="e2e.test ginkgo"
export CONFORMANCE_PREBUILT=1
# The unit tests that need the built components, skipped by the unit suite until they exist:
# the chroot tests of upstream's busybox behaviour, and crio.conf read by cri-o's own loader.
suite "unit: with the components" env U7S_COMPONENTS_BUILT=1 \
	go test -tags "$tags" -count=1 -run 'TestChroot|TestCrioLoadsConfig' ./internal/imagebuild/ ./internal/crio/
suite "install" make install
suite "images" make images
suite "previous releases" make previous-release
# Last of the builds, the .deb last of all: the test hosts install it, and scripts/hosts.sh makes it
# again when the u7s binary is newer (every make that depends on u7s touches it).
suite "packages: rpm archive deb" make rpm images-archive deb
# The test hosts' tool, built once here rather than by each lane at once.
suite "test hosts tool" go build -o _output/bin/u7s-hosts ./test/hosts/cmd/u7s-hosts
# The kernel limits the hosts share, raised before the lanes: TestNode checks that its own init
# and reset leave this machine's sysctls as it found them, and a lane's first host raising them
# in between failed it on a fresh machine. A node left on this machine by an earlier run goes
# first: its reset puts back the values it found, which may be lower.
suite "test hosts: this machine's kernel limits" sh -c '_output/bin/u7s reset && _output/bin/u7s-hosts prepare'

# On the node TestNode leaves behind: the specs that use the test images' tools (dig, curl, nc,
# porter's TLS, agnhost-2), each of the other test images and the specs that failed on u7s
# before (test/conformance/focus.txt). `make conformance` runs every Conformance spec.
# A second attempt for a spec that fails beside the other lanes (the Sample API Server spec's
# aggregated API answered 503 while its pod, on the loaded node, timed out readiness probes);
# ginkgo's summary counts the specs that needed it.
conformance_focused() {
	CONFORMANCE_FLAKE_ATTEMPTS=2 CONFORMANCE_FOCUS=$(grep -v '^#' test/conformance/focus.txt | paste -sd'|') timeout "$(left)" scripts/conformance.sh
}
# lane NAME STEP...: runs the steps one after another, each a go test -run pattern or a function,
# its lines prefixed with the lane's name and kept in _output/e2e/NAME.log. A failed step does
# not stop the lane (the next steps' results are worth as much), the budget does. Prints each
# step's time.
lane() {
	local name=$1 step start rc failed=0
	shift
	for step in "$@"; do
		start=$SECONDS
		rc=0
		if (($(left) < 60)); then
			echo "== lane $name: $step: not started, the run's $((BUDGET / 60)) minutes are up (U7S_TEST_BUDGET)"
			return 1
		fi
		if declare -F "$step" >/dev/null; then
			"$step" || rc=$?
		else
			# An hour at most: TestVM, the longest step, took 40 to 47 minutes on a loaded machine.
			go test -tags "e2e $tags" -count=1 -v -timeout "$(($(left) < 3600 ? $(left) : 3600))s" -run "^($step)\$" ./test/e2e/ || rc=$?
		fi
		echo "== lane $name: $step: $((SECONDS - start)) s, exit $rc"
		((rc == 0)) || failed=$rc
	done
	return "$failed"
}
# sample_load: once a minute, the load average and the pressure on CPU and IO (PSI's avg60 of
# "some") into load.txt, and the CPU time so far of the machine (jiffies) and of each cgroup one
# level down in cpuacct (each test host has its own, this machine's node is "u7s") into cpu.txt.
sample_load() {
	local c
	while sleep 60; do
		echo "$(cut -d' ' -f1 /proc/loadavg) $(sed -nE 's/^some avg10=[0-9.]+ avg60=([0-9.]+).*/\1/p' /proc/pressure/cpu 2>/dev/null || echo 0) $(sed -nE 's/^some avg10=[0-9.]+ avg60=([0-9.]+).*/\1/p' /proc/pressure/io 2>/dev/null || echo 0)" >>_output/e2e/load.txt
		awk '/^cpu /{ print "machine", "-", $2 + $3 + $4 + $7 + $8 }' /proc/stat >>_output/e2e/cpu.txt
		for c in /sys/fs/cgroup/cpuacct/*/cpuacct.usage; do
			[ -e "$c" ] && echo "$(basename "$(dirname "$c")") - $(cat "$c" 2>/dev/null || echo 0)"
		done >>_output/e2e/cpu.txt
	done
}
e2e() {
	mkdir -p _output/e2e
	rm -f _output/e2e/load.txt _output/e2e/cpu.txt
	rm -f _output/e2e/*.log
	echo "== end-to-end tests in three lanes (replaces any u7s node on this host); logs in _output/e2e"
	# The test hosts need forwarding (test/hosts turns it on when it makes their network): on from
	# the start, so that this host's node never sees it change under it.
	sysctl -qw net.ipv4.ip_forward=1
	rm -f _output/e2e/*.rc
	sample_load &
	local sampler=$!
	local rc
	{
		rc=0
		# The focused specs on the node TestNode and TestPorts leave; then the fresh and package
		# hosts, hosts of their own: this lane ended first (17 minutes) where the VM's took 31
		# for TestVM alone.
		lane node 'TestNode|TestPorts' conformance_focused 'TestFreshHost|TestPackage' || rc=$?
		echo "$rc" >_output/e2e/node.rc
	} 2>&1 | sed -u 's/^/[node] /' | tee _output/e2e/node.log &
	local lanes=($!)
	{
		rc=0
		lane hosts 'TestCluster' 'TestUpgrade' || rc=$?
		echo "$rc" >_output/e2e/hosts.rc
	} 2>&1 | sed -u 's/^/[hosts] /' | tee _output/e2e/hosts.log &
	lanes+=($!)
	{
		rc=0
		lane vm 'TestVM' || rc=$?
		echo "$rc" >_output/e2e/vm.rc
	} 2>&1 | sed -u 's/^/[vm] /' | tee _output/e2e/vm.log &
	lanes+=($!)
	wait "${lanes[@]}"
	kill "$sampler"
	local l
	rc=0
	for l in node hosts vm; do
		[[ $(cat "_output/e2e/$l.rc" 2>/dev/null) == 0 ]] || { echo "== lane $l failed: _output/e2e/$l.log"; rc=1; }
	done
	return "$rc"
}
suite "end-to-end (three lanes)" e2e
