#!/usr/bin/env bash
# Brings up a single-node rootless cluster on this machine from nothing: host packages, the
# pinned components built from source, the images in a local registry.local, then u7s init.
set -euo pipefail
cd "$(dirname "$0")/.."
[ "$(id -u)" = 0 ] || { echo "make cluster must run as root (it installs packages and runs u7s init)" >&2; exit 1; }
make host-deps
make u7s components
make install
make images
if [ -e /etc/u7s/node.json ]; then
	echo "a u7s node already exists on this host: u7s status, or u7s reset first" >&2
	u7s status || true
	exit 0
fi
# A single node runs ordinary pods too: no control-plane taint. It runs only the images
# `make images` signed (its key pair is _output/signing; the private key stays off other nodes).
u7s init --schedule-workloads --image-signing-key "$PWD/_output/signing/u7s-signing.pub" "$@"
echo "export KUBECONFIG=/etc/kubernetes/admin.conf   # then: kubectl get nodes"
