//go:build e2e

package e2e

import (
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testSnapshots is the etcd round trip on TestNode's node: what existed at the snapshot is
// there after the restore, what came after is gone, and a corrupt file changes nothing.
func testSnapshots(t *testing.T) {
	t.Run("etcd snapshot save, a corrupt file refused, restore", func(t *testing.T) {
		dir := t.TempDir()
		snap := filepath.Join(dir, "before.db")
		apply(t, `apiVersion: apps/v1
kind: Deployment
metadata: {name: keep}
spec:
  replicas: 1
  selector: {matchLabels: {app: keep}}
  template:
    metadata: {labels: {app: keep}}
    spec:
      containers:
      - {name: c, image: `+agnhost+`, args: [netexec, --http-port=8080]}
`)
		kubectl(t, "create", "configmap", "before-snapshot", "--from-literal=k=v")
		kubectl(t, "rollout", "status", "deployment/keep", "--timeout=120s")
		start := time.Now()
		out := must(t, u7s, "etcd", "snapshot", "save", snap)
		t.Logf("FIGURE etcd snapshot save seconds %.1f (%s)", time.Since(start).Seconds(), strings.TrimSpace(out))
		if st, err := os.Stat(snap); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("snapshot %s: %v, mode %v, want 0600", snap, err, st.Mode().Perm())
		}
		kubectl(t, "create", "configmap", "after-snapshot", "--from-literal=k=v")

		b, _ := os.ReadFile(snap)
		b[len(b)/2] ^= 0xff
		corrupt := filepath.Join(dir, "corrupt.db")
		if err := os.WriteFile(corrupt, b, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := run(t, u7s, "etcd", "snapshot", "restore", corrupt, "--yes")
		if err == nil || !strings.Contains(out, "nothing was changed") {
			t.Errorf("restore of a corrupt snapshot: want a refusal that changes nothing, got %v:\n%s", err, out)
		}
		kubectl(t, "get", "configmap", "after-snapshot") // the node kept running, unchanged

		out, err = run(t, u7s, "etcd", "snapshot", "restore", snap)
		if err == nil || !strings.Contains(out, "not confirmed") {
			t.Errorf("restore without --yes and no answer: want 'not confirmed', got %v:\n%s", err, out)
		}

		// A flow of phases: interrupted after the restore, it goes on with --skip-phases.
		if out := must(t, u7s, "etcd", "snapshot", "restore", "phase", "--help"); !strings.Contains(out, "forget") {
			t.Errorf("u7s etcd snapshot restore phase --help lists no phase forget:\n%s", out)
		}
		start = time.Now()
		out, err = run(t, u7s, "etcd", "snapshot", "restore", snap, "--yes", "--skip-phases", "start,forget")
		t.Logf("u7s etcd snapshot restore, up to its phase restore:\n%s", tail(out, 15))
		if err != nil {
			t.Fatalf("restore: %v", err)
		}
		if st, _ := run(t, u7s, "status"); !strings.Contains(st, "not running") {
			t.Errorf("after the phases check, stop and restore the node runs:\n%s", st)
		}
		out, err = run(t, u7s, "etcd", "snapshot", "restore", snap, "--yes", "--skip-phases", "check,stop,restore")
		t.Logf("u7s etcd snapshot restore, its phases start and forget:\n%s", tail(out, 15))
		if err != nil {
			t.Fatalf("restore, the phases left: %v", err)
		}
		t.Logf("FIGURE etcd snapshot restore to node Ready seconds %.1f", time.Since(start).Seconds())
		kubectl(t, "get", "configmap", "before-snapshot")
		if out, err := run(t, "kubectl", "get", "configmap", "after-snapshot"); err == nil {
			t.Errorf("after the restore, what was made after the snapshot is still there: %s", out)
		}
		eventually(t, "kube-system running and the Deployment serving after the restore", 5*time.Minute, func() error {
			pods, err := run(t, "kubectl", "get", "pods", "-A", "--no-headers")
			if err != nil {
				return err
			}
			for _, l := range strings.Split(strings.TrimSpace(pods), "\n") {
				// Completed: a pod that ran to its end before the snapshot is restored as it was.
				if f := strings.Fields(l); len(f) > 3 && f[3] != "Running" && f[3] != "Completed" {
					return fmt.Errorf("not running: %s", l)
				}
			}
			ip := kubectl(t, "get", "pods", "-l", "app=keep", "-o", "jsonpath={.items[0].status.podIP}")
			if ip == "" {
				return fmt.Errorf("no pod IP")
			}
			// From inside the node, where pod IPs route.
			_, err = run(t, u7s, "enter", "--", "curl", "-fsS", "--max-time", "5", "http://"+ip+":8080/hostname")
			return err
		})
		kubectl(t, "delete", "deployment/keep", "configmap/before-snapshot")
	})
}

// testCertRenewal: after u7s certs renew all the API server serves a new certificate and
// kubectl (admin.conf, renewed too) works.
func testCertRenewal(t *testing.T, nodeIP string) {
	t.Run("certs check-expiration and renew all", func(t *testing.T) {
		out := must(t, u7s, "certs", "check-expiration")
		if !strings.Contains(out, "apiserver") || !strings.Contains(out, "admin.conf") {
			t.Errorf("check-expiration lists no apiserver or admin.conf:\n%s", out)
		}
		serial := func() string {
			c, err := tls.Dial("tcp", nodeIP+":6443", &tls.Config{InsecureSkipVerify: true})
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
		}
		before := serial()
		adminBefore, _ := os.ReadFile("/etc/kubernetes/admin.conf")
		// A flow of phases: interrupted before its restart, it goes on with --skip-phases.
		out, err := run(t, u7s, "certs", "renew", "all", "--skip-phases", "restart")
		t.Logf("u7s certs renew all --skip-phases restart:\n%s", tail(out, 10))
		if err != nil {
			t.Fatalf("renew: %v", err)
		}
		out, err = run(t, u7s, "certs", "renew", "all", "--skip-phases", "renew")
		t.Logf("u7s certs renew all --skip-phases renew:\n%s", tail(out, 10))
		if err != nil {
			t.Fatalf("renew, the phase restart: %v", err)
		}
		if after := serial(); after == before {
			t.Errorf("the API server serves the same certificate (serial %s) after renewal", after)
		}
		if adminAfter, _ := os.ReadFile("/etc/kubernetes/admin.conf"); string(adminAfter) == string(adminBefore) {
			t.Errorf("admin.conf was not renewed")
		}
		kubectl(t, "get", "nodes")
	})
}
