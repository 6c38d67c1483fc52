//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/u7s/u7s/internal/version"
)

// upgradeHosts: a control plane and a worker, made with the previous release.
var upgradeHosts = []string{"h6", "h7"}

// TestUpgrade installs the previous release (scripts/previous-release.sh: this tree with
// Kubernetes pinned to UPGRADE_FROM_KUBERNETES) on a control plane and a worker, then this
// tree's package over it, and upgrades the cluster with u7s upgrade while a Service is asked
// all along.
func TestUpgrade(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("the end-to-end test needs root")
	}
	vals, err := version.Parse(mustRead(t, filepath.Join(repoRoot(t), "internal/version/versions.env")))
	if err != nil {
		t.Fatal(err)
	}
	from, to := vals["UPGRADE_FROM_KUBERNETES"], version.Pinned.Kubernetes
	prev, _ := filepath.Glob(filepath.Join(repoRoot(t), "_output/previous/u7s_*.deb"))
	if len(prev) != 1 {
		t.Fatalf("no previous release in _output/previous (make previous-release): %v", prev)
	}
	cur, _ := filepath.Glob(filepath.Join(repoRoot(t), "_output/u7s_*.deb"))
	if len(cur) == 0 {
		t.Fatal("no package of this tree in _output (make deb)")
	}
	if out, err := hostsCmd(t, "", append([]string{"down"}, upgradeHosts...)...); err != nil {
		t.Fatalf("removing old hosts: %v\n%s", err, out)
	}
	if out, err := hostsCmd(t, "", append([]string{"up", "--deb", prev[0]}, upgradeHosts...)...); err != nil {
		t.Fatalf("hosts.sh up: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if t.Failed() && os.Getenv("U7S_E2E_KEEP") != "" {
			return
		}
		hostsCmd(t, "", append([]string{"down"}, upgradeHosts...)...)
	})
	ip := map[string]string{}
	pub, err := os.ReadFile(signingKey(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range upgradeHosts {
		out, err := hostsCmd(t, "", "ip", h)
		if err != nil {
			t.Fatal(out)
		}
		ip[h] = strings.TrimSpace(out)
		if out, err := hostsCmd(t, string(pub), "exec", h, "--", "sh", "-c", "mkdir -p /etc/u7s && cat > "+hostSigningKey); err != nil {
			t.Fatalf("copying the signing key to %s: %v\n%s", h, err, out)
		}
	}
	// kubeletOf is the node's kubelet version as the API server has it.
	kubeletOf := func(n string) string {
		return mustKc(t, "h6", "get", "node", n, "-o", "jsonpath={.status.nodeInfo.kubeletVersion}")
	}
	// running is the version of the kubelet process that runs on host h.
	running := func(h string) string {
		return strings.TrimSpace(mustOnHost(t, h, `"$(readlink -f /proc/$(pgrep -xo kubelet)/exe)" --version | cut -d' ' -f2`))
	}

	t.Run("the previous release: a control plane and a worker", func(t *testing.T) {
		if out := mustOnHost(t, "h6", "u7s version"); !strings.Contains(out, "Kubernetes "+from) {
			t.Fatalf("the previous package's u7s says %q, want Kubernetes %s", out, from)
		}
		// Ordinary pods may run on the control plane, so that a drain of either node leaves
		// somewhere to go.
		out, err := onHost(t, "h6", "u7s init --schedule-workloads --image-signing-key "+hostSigningKey)
		if err != nil {
			t.Fatalf("u7s init on h6: %v\n%s", err, tail(out, 30))
		}
		if out, err := onHost(t, "h7", joinLine(t, out, false)+" --image-signing-key "+hostSigningKey); err != nil {
			t.Fatalf("u7s join on h7: %v\n%s", err, tail(out, 30))
		}
		nodesReady(t, "h6", 3*time.Minute, upgradeHosts...)
		for _, n := range upgradeHosts {
			if v := kubeletOf(n); v != from {
				t.Errorf("node %s runs kubelet %s, want %s", n, v, from)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	applyOn(t, "h6", `apiVersion: apps/v1
kind: Deployment
metadata: {name: steady}
spec:
  replicas: 2
  selector: {matchLabels: {app: steady}}
  template:
    metadata: {labels: {app: steady}}
    spec:
      affinity:
        podAntiAffinity:
          preferredDuringSchedulingIgnoredDuringExecution:
          - weight: 100
            podAffinityTerm: {labelSelector: {matchLabels: {app: steady}}, topologyKey: kubernetes.io/hostname}
      containers:
      - {name: c, image: `+agnhost+`, args: [netexec, --http-port=8080]}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: steady}
spec:
  minAvailable: 1
  selector: {matchLabels: {app: steady}}
---
apiVersion: v1
kind: Service
metadata: {name: steady}
spec:
  type: NodePort
  selector: {app: steady}
  ports: [{port: 80, targetPort: 8080, nodePort: 30082}]
`)
	mustKc(t, "h6", "rollout", "status", "deployment/steady", "--timeout=180s")

	t.Run("a newer package changes nothing the node runs", func(t *testing.T) {
		deb := mustRead(t, cur[len(cur)-1])
		for _, h := range upgradeHosts {
			if out, err := hostsCmd(t, deb, "exec", h, "--", "sh", "-c", "cat > /root/u7s.deb"); err != nil {
				t.Fatalf("copying the package to %s: %v\n%s", h, err, out)
			}
		}
		for _, h := range upgradeHosts {
			if out, err := onHost(t, h, "DEBIAN_FRONTEND=noninteractive apt-get install -y -qq /root/u7s.deb 2>&1 | tail -3; u7s version"); err != nil || !strings.Contains(out, "Kubernetes "+to) {
				t.Fatalf("installing this tree's package on %s: %v\n%s", h, err, out)
			}
		}
		// Even restarted, the worker runs the kubelet it was made with.
		mustOnHost(t, "h7", "systemctl restart u7s")
		nodesReady(t, "h6", 3*time.Minute, upgradeHosts...)
		for _, h := range upgradeHosts {
			if v := running(h); v != from {
				t.Errorf("after the package upgrade %s runs kubelet %s, want %s until u7s upgrade", h, v, from)
			}
			if v := kubeletOf(h); v != from {
				t.Errorf("after the package upgrade node %s reports kubelet %s, want %s", h, v, from)
			}
		}
	})

	// unchanged: a refused upgrade left the cluster as it was.
	unchanged := func(t *testing.T) {
		t.Helper()
		out := mustKc(t, "h6", "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.nodeInfo.kubeletVersion} {.spec.unschedulable} {.metadata.annotations.u7s\.io/maintenance-request}{"\n"}{end}`)
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) != 2 || f[1] != from {
				t.Errorf("after a refused upgrade: %q (want the name and %s only: not cordoned, not asking)", l, from)
			}
		}
		for _, h := range upgradeHosts {
			if got := strings.TrimSpace(mustOnHost(t, h, "readlink /var/lib/u7s/releases/current")); got != from {
				t.Errorf("%s's release is %s after a refused upgrade, want %s", h, got, from)
			}
		}
	}
	t.Run("refused: a worker before its control plane, a skipped minor, a downgrade, another release", func(t *testing.T) {
		for _, c := range []struct{ host, cmd, want string }{
			{"h7", "u7s upgrade node --yes", "upgrade it first with u7s upgrade apply " + to},
			{"h6", "u7s upgrade apply v1.37.2 --yes", "skips a minor"},
			{"h6", "u7s upgrade apply v1.35.0 --yes", "does not downgrade"},
			{"h6", "u7s upgrade apply v1.35.7 --yes", "this u7s carries Kubernetes " + to + ", not v1.35.7"},
			{"h7", "u7s upgrade apply --yes", "is a worker"},
			{"h6", "u7s upgrade apply </dev/null", "not confirmed"},
		} {
			out, err := onHost(t, c.host, c.cmd)
			if err == nil || !strings.Contains(out, c.want) || !strings.Contains(out, "nothing was changed") && !strings.Contains(out, "worker") {
				t.Errorf("%s on %s: %v, want refused saying %q and that nothing was changed:\n%s", c.cmd, c.host, err, c.want, tail(out, 15))
			}
		}
		unchanged(t)
	})

	t.Run("u7s upgrade plan", func(t *testing.T) {
		out := mustOnHost(t, "h6", "u7s upgrade plan")
		t.Logf("u7s upgrade plan:\n%s", out)
		for _, want := range []string{"1. u7s upgrade apply " + to, "node h7: kubelet", "kubeadm upgrade plan", "u7s upgrade apply " + to} {
			if !strings.Contains(out, want) {
				t.Errorf("the plan lacks %q", want)
			}
		}
	})

	// Requests to the Service through both nodes' NodePorts, all along; and never two nodes
	// cordoned at once.
	var mu sync.Mutex
	var rounds, bothFailed, failed, maxCordoned int
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(time.Second):
			}
			fails := 0
			for _, h := range upgradeHosts {
				if _, err := run(t, "curl", "-fsS", "--max-time", "3", fmt.Sprintf("http://%s:30082/hostname", ip[h])); err != nil {
					fails++
				}
			}
			cordoned := -1
			if out, err := kc(t, "h7", "get", "nodes", "-o", "jsonpath={.items[*].spec.unschedulable}"); err == nil {
				cordoned = strings.Count(out, "true")
			}
			mu.Lock()
			rounds++
			failed += fails
			if fails == len(upgradeHosts) {
				bothFailed++
			}
			maxCordoned = max(maxCordoned, cordoned)
			mu.Unlock()
		}
	}()
	stopLoad := func() {
		select {
		case <-stop:
		default:
			close(stop)
			<-done
		}
	}
	defer stopLoad()

	start := time.Now()
	t.Run("u7s upgrade apply on the control plane", func(t *testing.T) {
		s := time.Now()
		out, err := onHost(t, "h6", "u7s upgrade apply --yes")
		t.Logf("FIGURE u7s upgrade apply on h6: %.0f s\n%s", time.Since(s).Seconds(), tail(out, 40))
		if err != nil {
			t.Fatalf("u7s upgrade apply: %v", err)
		}
		if v := kubeletOf("h6"); v != to {
			t.Errorf("h6 reports kubelet %s after the upgrade, want %s", v, to)
		}
		if v := running("h6"); v != to {
			t.Errorf("h6 runs kubelet %s after the upgrade, want %s", v, to)
		}
		if v := mustKc(t, "h6", "version", "-o", "json"); !strings.Contains(v, `"gitVersion": "`+to+`"`) {
			t.Errorf("the API server is not at %s:\n%s", to, v)
		}
		if img := mustKc(t, "h6", "-n", "kube-system", "get", "ds", "kube-proxy", "-o", "jsonpath={.spec.template.spec.containers[0].image}"); !strings.HasSuffix(img, ":"+to) {
			t.Errorf("kube-proxy's image is %s after the upgrade, want tag %s", img, to)
		}
		// The worker has not moved.
		if v := running("h7"); v != from {
			t.Errorf("h7 runs kubelet %s before its own upgrade, want %s", v, from)
		}
		if out := mustOnHost(t, "h6", "ls /var/backups/u7s/etcd"); !strings.Contains(out, "pre-upgrade-"+to) {
			t.Errorf("no etcd snapshot before the upgrade in /var/backups/u7s/etcd:\n%s", out)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Run("u7s upgrade node on the worker", func(t *testing.T) {
		s := time.Now()
		out, err := onHost(t, "h7", "u7s upgrade node --yes")
		t.Logf("FIGURE u7s upgrade node on h7: %.0f s\n%s", time.Since(s).Seconds(), tail(out, 30))
		if err != nil {
			t.Fatalf("u7s upgrade node: %v", err)
		}
		if v := running("h7"); v != to {
			t.Errorf("h7 runs kubelet %s after the upgrade, want %s", v, to)
		}
	})
	stopLoad()
	t.Logf("FIGURE whole cluster upgraded %s -> %s in %.0f s", from, to, time.Since(start).Seconds())
	t.Logf("FIGURE requests during the upgrade: %d rounds of 2 (one per node), %d requests failed, %d rounds with no node answering; at most %d node(s) cordoned at once",
		rounds, failed, bothFailed, maxCordoned)
	if maxCordoned > 1 {
		t.Errorf("%d nodes were cordoned at once", maxCordoned)
	}

	t.Run("both nodes at the new version, kube-system healthy, serving, lock free", func(t *testing.T) {
		nodesReady(t, "h6", 3*time.Minute, upgradeHosts...)
		out := mustKc(t, "h6", "get", "nodes", "-o", `jsonpath={range .items[*]}{.metadata.name} {.status.nodeInfo.kubeletVersion} {.spec.unschedulable} {.metadata.annotations.u7s\.io/maintenance-request} {.metadata.annotations.u7s\.io/maintenance-approved}{"\n"}{end}`)
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if f := strings.Fields(l); len(f) != 2 || f[1] != to {
				t.Errorf("after the upgrade: %q (want the name and %s only)", l, to)
			}
		}
		eventually(t, "kube-system running", 3*time.Minute, func() error {
			out, err := kc(t, "h6", "get", "pods", "-n", "kube-system", "--no-headers")
			if err != nil {
				return err
			}
			for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
				if f := strings.Fields(l); len(f) < 3 || f[2] != "Running" || strings.HasPrefix(f[1], "0/") {
					return fmt.Errorf("not running: %s", l)
				}
			}
			return nil
		})
		if holder := mustKc(t, "h6", "-n", "kube-system", "get", "lease", "u7s-maintenance", "-o", "jsonpath={.spec.holderIdentity}"); holder != "" {
			t.Errorf("the maintenance lock is still held by %s", holder)
		}
		for _, h := range upgradeHosts {
			if _, err := run(t, "curl", "-fsS", "--max-time", "5", fmt.Sprintf("http://%s:30082/hostname", ip[h])); err != nil {
				t.Errorf("the Service does not answer on %s after the upgrade: %v", h, err)
			}
			rel := mustOnHost(t, h, "readlink /var/lib/u7s/releases/current; ls /var/lib/u7s/releases")
			if !strings.HasPrefix(rel, to+"\n") || !strings.Contains(rel, from) {
				t.Errorf("%s's releases: %q, want current %s and %s kept", h, rel, to, from)
			}
		}
		// Run again: nothing to do.
		if out := mustOnHost(t, "h6", "u7s upgrade apply --yes"); !strings.Contains(out, "nothing to do") {
			t.Errorf("a second u7s upgrade apply did something:\n%s", out)
		}
		if out := mustOnHost(t, "h6", "u7s upgrade plan"); !strings.Contains(out, "nothing to upgrade") {
			t.Errorf("the plan after the upgrade:\n%s", out)
		}
	})
}

func mustRead(t *testing.T, f string) string {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
