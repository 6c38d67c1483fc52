#!/usr/bin/env bash
# Runs every test: unit tests, then the end-to-end test on this host with real kubelet, cri-o,
# etcd, registry and kubectl. The end-to-end test replaces any u7s node on this host and leaves
# a fresh working one behind.
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-all}
[ "$(id -u)" = 0 ] || { echo "the tests need root (they run u7s init)" >&2; exit 1; }
make host-deps
# The build tags of u7s's packages, from the one place that sets them (U7S_TAGS in the Makefile).
tags=$(make -s --no-print-directory print-u7s-tags)
if [ "$what" = all ] || [ "$what" = unit ]; then
	echo "== unit tests"
	go test -tags "$tags" ./cmd/... ./internal/... ./images/... ./manifests/... ./test/conformance/...
fi
if [ "$what" = all ] || [ "$what" = e2e ]; then
	echo "== building and installing the node components"
	make u7s components
	# The chroot tests of upstream's busybox behaviour skip until its busybox is built: now it is.
	go test -tags "$tags" -count=1 -run TestChroot ./internal/imagebuild/
	make install
	make images
	echo "== packages (the test hosts install the .deb)"
	make deb rpm images-archive
	echo "== the releases the upgrade test starts from (UPGRADE_PATH in versions.env)"
	make previous-release
	echo "== end-to-end test (replaces any u7s node on this host)"
	go test -tags "e2e $tags" -count=1 -v -timeout 60m ./test/e2e/
	# On the node TestNode leaves behind: the specs that use the test images' tools (dig, curl, nc,
	# porter's TLS, agnhost-2), each of the other test images (sample-apiserver, kitten's image
	# volume, nautilus, nonewprivs, agnhost 2.55) and the specs that failed on u7s before (hostPorts
	# on the node's address, environment variables that are not shell names, busybox sh's words for a
	# read-only root). `make conformance` runs every Conformance spec.
	echo "== conformance: a focused part of upstream's suite"
	CONFORMANCE_FOCUS='DNS should provide DNS for (the cluster|services) |Services should (serve a basic endpoint from pods|be able to create a functioning NodePort service|be able to change the type from ExternalName to ClusterIP) |intra-pod communication: http |proxy through a service and a pod |override the image.s default command \(container entrypoint\)|HostPort validates that there is no conflict|Secrets should be consumable as environment variable names|ImageVolume should succeed|should not allow privilege escalation when false|Sample API Server using the current Aggregator|Update Demo should create and stop|Deployment should run the lifecycle of a Deployment|read only busybox container should not write to root filesystem' \
		scripts/conformance.sh
fi
